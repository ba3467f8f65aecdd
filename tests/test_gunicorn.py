"""Real gunicorn (sync, gthread and gevent workers) with ``examples/gunicorn_conf.py``: every process's records arrive.

The test starts ``gunicorn -c examples/gunicorn_conf.py -w 2 -k <class>`` serving a tiny WSGI app (it logs one
record at import and one per request, and answers with its pid), sends requests over both workers, SIGTERMs
the master and reads the log group back from the moto server.  It proves that

* the master ("Starting gunicorn", "Using worker: ..." logged right before it forks, "Shutting down: Master")
  and each worker ("Booting worker with pid: ...", the app's import record, every request record and
  gunicorn.access line, "Worker exiting ...") deliver every record exactly once, each in the stream of the pid
  that logged it (``{pid}`` is per process);
* a worker forked while the master's handler is busy does not hang, with sync and gthread workers and with
  gevent ones (which monkey-patch ssl after the master imported it);
* the whole server stops promptly on SIGTERM, well before the handler's shutdown_timeout.

The console handler of the same config prints every record to gunicorn's stderr, so the test compares the
stored events with those lines, stream by stream.  gunicorn's graceful_timeout is small (a worker that hangs
is SIGKILLed by the master after it, which shows as a slow exit and missing records) and the exit is required
well under it and under the handler's shutdown_timeout.
"""
from __future__ import annotations

import os
import re
import socket
import textwrap
import uuid
from importlib.metadata import version
from typing import Tuple

import pytest

from helpers import ROOT, free_port, program, read_group, running, subprocess_env, wait_until
from webserver import compare, once, printed, serve, terminate

CONF = os.path.join(ROOT, "examples", "gunicorn_conf.py")
HOST = socket.gethostname()
REQUESTS = 20
GRACEFUL_TIMEOUT = 6  # gunicorn SIGKILLs a worker still running after this
SHUTDOWN_TIMEOUT = 10  # the handler's bound on delivering at exit
PROMPT = 4.0  # SIGTERM -> master gone, well under both
LOGGERS = ["gunicorn.error", "gunicorn.access", "app.requests"]  # botocore's own records are not shipped


def release(package: str) -> Tuple[int, int]:
    """The installed (major, minor) version of ``package``."""
    major, minor = version(package).split(".")[:2]
    return int(major), int(minor)


# gunicorn 25.1+ opens a control socket in the home directory unless told not to; older ones (the last for
# Python 3.9 is 23) have no such option and refuse it.
NO_CONTROL_SOCKET = ["--no-control-socket"] if release("gunicorn") >= (25, 1) else []
# Before gevent 26.8 (the last for Python 3.9 is 26.7) the handler's threads, which wait on locks gevent has
# patched, miss each other's wake-ups in a gevent worker: every record still arrives, but the worker's exit
# waits out shutdown_timeout, past graceful_timeout here (gunicorn then SIGKILLs it).
GEVENT_WORKER = pytest.param("gevent", marks=pytest.mark.skipif(
    release("gevent") < (26, 8), reason=f"gevent {version('gevent')}: a gevent worker's exit waits out "
    "shutdown_timeout before gevent 26.8 (Python 3.10+)"))
APP = textwrap.dedent('''\
    import logging
    import os

    log = logging.getLogger("app.requests")
    log.info("app imported")
    # The worker has its signal handlers from now on: a SIGTERM before this is lost (gunicorn's own race).
    open(os.path.join(os.path.dirname(__file__), "imported.%d" % os.getpid()), "w").close()


    def app(environ, start_response):
        log.info("request %s handled", environ["PATH_INFO"])
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    ''')


@pytest.mark.parametrize("worker_class", ["sync", "gthread", GEVENT_WORKER])
def test_gunicorn_delivers_every_process_records(tmp_path, moto_url, worker_class):
    group = f"/tests/gunicorn/{worker_class}/{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    env = subprocess_env(CWL_ENDPOINT_URL=moto_url, CWL_LOG_GROUP=group, CWL_FLUSH_INTERVAL="0.2",
                         CWL_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    args = [program("gunicorn"), "-c", CONF, "-w", "2", "-k", worker_class, "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", str(GRACEFUL_TIMEOUT), *NO_CONTROL_SOCKET, "--pythonpath", str(tmp_path),
            "app:app"]
    with running(args, cwd=str(tmp_path), env=env) as proc:
        answers = serve(proc, port, [f"/r/{i}" for i in range(REQUESTS)])
        wait_until(lambda: len(list(tmp_path.glob("imported.*"))) >= 2 or proc.poll() is not None, 30)
        returncode, err, elapsed = terminate(proc)
    tail = err[-6000:]
    assert len(answers) == REQUESTS and None not in answers.values(), f"gunicorn did not answer\n{tail}"
    assert returncode == 0 and elapsed < PROMPT, f"exit {returncode} after {elapsed:.1f}s\n{tail}"

    lines = printed(err, LOGGERS)
    master = proc.pid
    workers = sorted(int(pid) for pid in re.findall(r"\]: Booting worker with pid: (\d+)$", err, re.M))
    assert len(workers) == 2 and set(lines) == {master, *workers}, f"{sorted(lines)}\n{tail}"
    assert {int(pid) for pid in answers.values()} <= set(workers), answers
    # What the test relies on was logged (printed) once, by the process that should log it.
    expected = {master: ["Starting gunicorn", f"Using worker: {worker_class}", "Shutting down: Master"]}
    for pid in workers:
        expected[pid] = [f"Booting worker with pid: {pid}", "app imported", f"Worker exiting (pid: {pid})"]
    for path, pid in answers.items():
        expected[int(pid)] += [f"request {path} handled", f'"GET {path} HTTP/1.1" 200']
    for pid, texts in expected.items():
        for text in texts:
            assert once(lines[pid], text), f"{pid}: {text!r}\n{tail}"

    # Every printed record was delivered exactly once, in the stream of the process that logged it.
    differences = compare(read_group(moto_url, group), {f"{HOST}/gunicorn/{pid}": got for pid, got in lines.items()})
    assert not differences, f"master {master}, workers {workers}:\n{differences}\n{tail}"
