"""Real uWSGI 2.0: ``uwsgi --master --processes 2 --http-socket ... --module app``, the handler made in the master.

uWSGI forks its workers from the master without Python's fork hooks (no ``os.register_at_fork`` callback runs
unless ``--py-call-uwsgi-fork-hooks``), and its master runs no Python exit hook at all (core/uwsgi.c,
``uwsgi_plugins_atexit``: "the master cannot run atexit handlers").  The app module configures a CloudWatch
handler with stream ``{pid}`` at import, in the master (logging one record there, or nothing); each request logs
one record and answers the worker's pid.  Since uWSGI 2.0.27 Python threads are on by default
(``--enable-threads`` is a stub), so the master's threads run while it forks.

The master's record must be delivered while uWSGI runs (nothing can at its exit); then ~10 requests, each answered
within a deadline, then a stop: SIGINT, the signal of ``uwsgi --stop`` and Ctrl-C (SIGQUIT, systemd's KillSignal
in uWSGI's docs, and SIGTERM with ``--die-on-term``, Docker's, take the same path, ``kill_them_all``: SIGINT to
each worker, which ends with ``exit()`` and Python's finalisation), or the master FIFO's ``q``, uWSGI's graceful
shutdown.  The test requires a prompt exit and reads the group back from moto: the import-time record once in
the master's stream, every request record exactly once in the stream of the worker that served it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Dict, List

import pytest

from helpers import free_port, program, read_group, running, subprocess_env, wait_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uWSGI needs a POSIX system")

REQUESTS = 10
APP = '''
import logging
import os

from cwlhandler import CloudWatchLogsHandler

handler = CloudWatchLogsHandler(
    log_group=os.environ["CWL_GROUP"], log_stream="{pid}", endpoint_url=os.environ["CWL_ENDPOINT"],
    region_name="us-east-1", flush_interval=0.5, shutdown_timeout=10)
log = logging.getLogger("uwsgi_app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
if os.environ.get("CWL_LOG_AT_IMPORT"):
    log.info("import in %d", os.getpid())


def application(environ, start_response):
    log.info("request %s in %d", environ["QUERY_STRING"], os.getpid())
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def group_name(request: pytest.FixtureRequest) -> str:
    return "uwsgi-" + re.sub(r"[^A-Za-z0-9_\-]", "-", request.node.name)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def workers_idle(stats_port: int) -> bool:
    """Every worker idle, by uWSGI's stats server (the status uwsgitop shows)."""
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as sock:
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    return all(worker["status"] == "idle" for worker in json.loads(data)["workers"])


def stop_uwsgi(proc, how: str, fifo: str, stats_port: int) -> bool:
    if how == "SIGINT":
        # SIGINT is uWSGI's brutal stop: a worker still closing a request (core/uwsgi.c end_me, then
        # uwsgi_python_atexit: "if busy do not run atexit hooks") ends without Python's exit hooks, whatever
        # it logged.  That loss is uWSGI's by design; the test stops an idle instance.
        if not wait_until(lambda: workers_idle(stats_port), 10):
            return False
        proc.send_signal(signal.SIGINT)
    else:  # the master FIFO's "q": graceful shutdown (workers get SIGHUP, finish their request, exit)
        with open(fifo, "w") as pipe:
            pipe.write("q")
    return True


def serve_and_stop(tmp_path, moto_url: str, group: str, log_at_import: bool, how: str):
    """Run uWSGI, send the requests, stop it; (master pid, {worker pid: [messages]}, stderr)."""
    (tmp_path / "cwl_uwsgi_app.py").write_text(APP)
    port, stats_port, fifo = free_port(), free_port(), str(tmp_path / "master.fifo")
    env = subprocess_env(CWL_GROUP=group, CWL_ENDPOINT=moto_url, CWL_LOG_AT_IMPORT="1" if log_at_import else "")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    args = [program("uwsgi"), "--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}",
            "--module", "cwl_uwsgi_app", "--need-app", "--stats", f"127.0.0.1:{stats_port}"]
    if how == "fifo-q":
        args += ["--master-fifo", fifo]
    served: Dict[str, List[str]] = {}
    with running(args, cwd=str(tmp_path), env=env) as proc:
        def fail(why: str) -> None:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too: they hold stderr open
            _out, err = proc.communicate(timeout=30)
            pytest.fail(f"{why}; uWSGI stderr:\n{err[-3000:]}")

        if not wait_until(lambda: listening(port) or proc.poll() is not None, 30) or proc.poll() is not None:
            fail("uWSGI did not start listening")
        if log_at_import and not wait_until(lambda: read_group(moto_url, group).get(str(proc.pid)), 4, 0.1):
            # uWSGI's master runs no Python exit hook (core/uwsgi.c, uwsgi_plugins_atexit: "the master cannot run
            # atexit handlers"), so what it logs must leave while it runs: within flush_interval (0.5 s).
            fail("the master's import-time record was not delivered within 4 s while uWSGI ran")
        for n in range(REQUESTS):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?{n}", timeout=10) as response:
                    served.setdefault(response.read().decode(), []).append(f"request {n}")
            except OSError as exc:
                fail(f"request {n} was not answered within 10 s ({exc!r})")
        started = time.monotonic()
        if not stop_uwsgi(proc, how, fifo, stats_port):
            fail("uWSGI's workers did not become idle within 10 s of the last answer")
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            fail(f"uWSGI did not exit within 20 s of {how}")
        elapsed = time.monotonic() - started
    # uWSGI alone stops in 1-2 s (the master reaps once a second); the app's shutdown_timeout is 10 s.
    assert proc.returncode == 0 and elapsed < 8, (
        f"uWSGI exited with {proc.returncode} {elapsed:.1f} s after {how}; stderr:\n{err[-3000:]}")
    return proc.pid, served, err


@pytest.mark.parametrize("log_at_import, how", [
    (True, "SIGINT"),
    (False, "SIGINT"),  # the master configures the handler but logs nothing before the fork
    (True, "fifo-q"),
], ids=["import-record", "silent-master", "graceful-fifo"])
def test_uwsgi_master_and_workers_deliver_every_record_once_in_their_pid_stream(
        request, tmp_path, moto_url, log_at_import, how):
    group = group_name(request)
    master, served, err = serve_and_stop(tmp_path, moto_url, group, log_at_import, how)
    expected = {pid: sorted(f"{message} in {pid}" for message in messages) for pid, messages in served.items()}
    if log_at_import:
        expected[str(master)] = [f"import in {master}"]
    stored = {stream: sorted(messages) for stream, messages in read_group(moto_url, group).items()}
    assert stored == expected, f"stored events (left) differ from the records logged; uWSGI stderr:\n{err[-3000:]}"
