"""Real uWSGI: ``uwsgi --master --processes 2 --http-socket ... --module app`` with the handler set up in the master.

uWSGI forks its workers from the master without Python's fork hooks (no ``os.register_at_fork`` callbacks run
unless ``--py-call-uwsgi-fork-hooks``), and with its default settings Python threads get no time while a process
waits in uWSGI's C loop.  The app module configures a CloudWatch handler with stream ``{pid}`` at import, in the
master; each request logs one record.  After ~10 requests (each answered within a deadline) uWSGI is stopped
with SIGINT, the signal of ``uwsgi --stop`` and Ctrl-C; in uWSGI 2.0 SIGQUIT (systemd's KillSignal in uWSGI's
docs) and SIGTERM with ``--die-on-term`` (Docker) take the same path, ``kill_them_all``: SIGINT to each worker,
which ends with ``exit()`` and so Python's finalisation, then the master exits the same way.  The test requires
a prompt exit and reads the group back from moto: the import-time record once in the master's stream, every
request record exactly once in the stream of the worker that served it.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Dict, List

import pytest

from realprog import free_port, program, read_group, running, subprocess_env, wait_until

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


def stop_uwsgi(proc, how: str, fifo: str) -> None:
    if how == "SIGINT":
        proc.send_signal(signal.SIGINT)
    else:  # the master FIFO's "q": graceful shutdown (workers get SIGHUP, finish their request, exit)
        with open(fifo, "w") as pipe:
            pipe.write("q")


def serve_and_stop(tmp_path, moto_url: str, group: str, log_at_import: bool, how: str):
    """Run uWSGI, send the requests, stop it; (master pid, {worker pid: [messages]}, stderr)."""
    (tmp_path / "cwl_uwsgi_app.py").write_text(APP)
    port, fifo = free_port(), str(tmp_path / "master.fifo")
    env = subprocess_env(CWL_GROUP=group, CWL_ENDPOINT=moto_url, CWL_LOG_AT_IMPORT="1" if log_at_import else "")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    args = [program("uwsgi"), "--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}",
            "--module", "cwl_uwsgi_app", "--need-app"] + (["--master-fifo", fifo] if how == "fifo-q" else [])
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
        stop_uwsgi(proc, how, fifo)
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
