"""SIGTERM and multiprocessing exits of real Python processes: every buffered record is delivered exactly once.

What runs: ``python app.py`` (a script written to a temp dir) against moto's server on 127.0.0.1.

* SIGTERM: the script makes the handler, logs 5,000 records that stay buffered (flush_interval=60), prints "ready"
  and waits (signal.pause, time.sleep, or a tight Python loop).  The test sends SIGTERM: the process must deliver
  everything and still die "killed by SIGTERM" (returncode -15), as orchestrators expect.  Variants prove the
  handler's SIGTERM handler is installed only when it should be: not with handle_sigterm=False, not over a user's
  handler installed first (theirs runs), not from a non-main thread; and a user's handler installed later that
  chains to ours still delivers.
* multiprocessing: fork, spawn and forkserver pools (children configured by inheritance or by
  ``Pool(initializer=logging.config.dictConfig, initargs=(LOGGING,))``), closed with close()+join() and with the
  context manager (terminate() = SIGTERM to the workers), plus a plain spawn Process that configures logging
  itself: every record is in the stream of the pid that logged it ("{pid}"), exactly once.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from typing import Dict, List, Optional, Tuple

import pytest

from helpers import read_group, running, subprocess_env

N = 5000

SIGTERM_APP = r'''
import logging, signal, sys, threading, time
from cwlhandler import CloudWatchLogsHandler

SETUP, WAIT, URL, GROUP, N = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])


def make(stream, **options):
    return CloudWatchLogsHandler(log_group=GROUP, log_stream=stream, endpoint_url=URL, region_name="us-east-1",
                                 flush_interval=60, shutdown_timeout=5, **options)


def name(action):
    return "SIG_DFL" if action == signal.SIG_DFL else getattr(action, "__qualname__", repr(action))


def user_exit(signum, frame):
    print("user handler: exit", flush=True)
    sys.exit(0)


log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
if SETUP == "before":
    signal.signal(signal.SIGTERM, user_exit)
if SETUP == "thread":
    made = []
    maker = threading.Thread(target=lambda: made.append(make("thread", handle_sigterm=True)))
    maker.start()
    maker.join()
    log.addHandler(made[0])
    print("after thread handler:", name(signal.getsignal(signal.SIGTERM)))
options = {"off": {"handle_sigterm": False}, "before": {"handle_sigterm": True}}.get(SETUP, {})
log.addHandler(make("main", **options))
if SETUP == "after":
    previous = signal.getsignal(signal.SIGTERM)

    def chained(signum, frame):
        print("user handler: chained", flush=True)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, chained)
print("SIGTERM:", name(signal.getsignal(signal.SIGTERM)))
for i in range(N):
    log.info("record %d", i)
print("ready", flush=True)
if WAIT == "pause":
    while True:
        signal.pause()
elif WAIT == "sleep":
    time.sleep(3600)
else:
    n = 0
    while True:
        n += 1
'''

MP_APP = r'''
import collections, json, logging, logging.config, multiprocessing, os, sys

N = 40


def work(item):
    label, i = item
    logging.getLogger("work").info("%s %d", label, i)
    return os.getpid(), "%s %d" % (label, i)


def configured_process(config, n):
    logging.config.dictConfig(config)
    for i in range(n):
        logging.getLogger("process").info("process %d", i)


if __name__ == "__main__":
    method, url, group = sys.argv[1:4]
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"cloudwatch": {
            "class": "cwlhandler.CloudWatchLogsHandler", "log_group": group, "log_stream": "{pid}",
            "endpoint_url": url, "region_name": "us-east-1", "flush_interval": 60, "shutdown_timeout": 5}},
        "root": {"handlers": ["cloudwatch"], "level": "INFO"},
    }
    logging.config.dictConfig(LOGGING)
    expected = collections.defaultdict(list)
    logging.getLogger("parent").info("parent start")
    expected[os.getpid()].append("parent start")
    ctx = multiprocessing.get_context(method)
    # A forked child inherits the parent's handler; spawn/forkserver children are configured like the parent.
    init = {} if method == "fork" else {"initializer": logging.config.dictConfig, "initargs": (LOGGING,)}
    pool = ctx.Pool(2, **init)
    for pid, message in pool.map(work, [("closed", i) for i in range(N)]):
        expected[pid].append(message)
    pool.close()
    pool.join()
    with ctx.Pool(2, **init) as pool:  # __exit__ is terminate(): SIGTERM to each worker
        for pid, message in pool.map(work, [("terminated", i) for i in range(N)]):
            expected[pid].append(message)
    if method == "spawn":
        process = ctx.Process(target=configured_process, args=(LOGGING, N))
        process.start()
        process.join()
        expected[process.pid] += ["process %d" % i for i in range(N)]
        print("process exitcode", process.exitcode)
    print(json.dumps(expected))
'''


def write_app(tmp_path, source: str) -> str:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read the program's stdout (raw, so communicate() later gets the rest) up to a line ``marker``."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    data = b""
    deadline = time.monotonic() + timeout
    while f"\n{marker}\n" not in "\n" + data.decode(errors="replace"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"no {marker!r} line on stdout (got {data!r}); stderr:\n{err[-3000:]}")
        data += chunk
    return data.decode()


def ended(proc: subprocess.Popen, timeout: float, sig: Optional[int] = None) -> Tuple[int, str, str]:
    """Send ``sig`` (if any) and wait for the program to end: (returncode, stdout, stderr); fails on a hang."""
    if sig is not None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the program did not end within {timeout} s; stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}")


def by_stream(endpoint_url: str, group: str) -> Dict[str, List[str]]:
    return {stream: sorted(messages) for stream, messages in read_group(endpoint_url, group).items()}


# -- SIGTERM on a plain python process ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "setup, wait",
    [("default", "pause"), ("default", "sleep"), ("default", "loop"),
     ("off", "pause"), ("before", "pause"), ("after", "pause"), ("thread", "pause")],
)
def test_sigterm_delivers_buffered_records_and_dies_by_sigterm(tmp_path, moto_url, setup, wait):
    group = f"exits-sigterm-{setup}-{wait}"
    app = write_app(tmp_path, SIGTERM_APP)
    with running([sys.executable, app, setup, wait, moto_url, group, str(N)], cwd=str(tmp_path),
                 env=subprocess_env()) as proc:
        head = read_until(proc, "ready", timeout=30)
        started = time.monotonic()
        code, out, err = ended(proc, 20, signal.SIGTERM)
        took = time.monotonic() - started
    out = head + out
    why = f"stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
    records = sorted(f"record {i}" for i in range(N))
    streams = by_stream(moto_url, group)
    assert took < 10, why
    if setup == "off":
        # Ours is not installed: SIGTERM's default action kills the process at once, nothing is sent.
        assert "SIGTERM: SIG_DFL" in out, why
        assert code == -signal.SIGTERM and streams == {}, why
        return
    if setup == "before":
        # The user's handler stands and runs; their sys.exit(0) takes the normal exit path, which delivers.
        assert "SIGTERM: user_exit" in out and "user handler: exit" in out, why
        assert code == 0, why
    else:
        assert "SIGTERM: SIG_DFL" not in out, why
        assert code == -signal.SIGTERM, why
    if setup == "after":
        assert "SIGTERM: chained" in out and "user handler: chained" in out, why
    expected = {"main": records}
    if setup == "thread":
        # Made on a non-main thread, the first handler installed nothing; the main thread's handler delivers both.
        assert "after thread handler: SIG_DFL" in out, why
        expected["thread"] = records
    assert streams == expected, why


# -- multiprocessing ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_pools_deliver_every_record_in_per_pid_streams(tmp_path, moto_url, method):
    group = f"exits-mp-{method}"
    app = write_app(tmp_path, MP_APP)
    with running([sys.executable, app, method, moto_url, group], cwd=str(tmp_path), env=subprocess_env()) as proc:
        code, out, err = ended(proc, 60)
    why = f"stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
    assert code == 0, why
    expected = {str(pid): sorted(messages) for pid, messages in json.loads(out.splitlines()[-1]).items()}
    if method == "spawn":
        assert "process exitcode 0" in out, why
    assert len(expected) >= 3, why  # the parent and at least one worker of each pool
    assert by_stream(moto_url, group) == expected, why
