"""Every helper two or more test modules share, in one place.

The layout of tests/: ``conftest.py`` holds only fixtures (and the dummy AWS settings of this process);
this module holds the shared functions and constants; ``webserver.py`` what only the web-server tests
(gunicorn, uvicorn) share; ``strict_fake.py``, ``faults.py`` and ``tls.py`` the emulator, the fault proxy
and the test certificates.  No ``test_*.py`` imports another, nor anything from ``conftest.py``; a helper
only one test module uses stays in that module.

* Reading back: ``logs_client``, ``read_events`` (one stream), ``read_group`` (every stream of a group), all
  through ``cwlhandler.cli.read_stream``, the project's one reader of a stream.
* Waiting: ``wait_until`` (poll state, never a fixed sleep).
* Programs as subprocesses (gunicorn, uWSGI, Celery, uvicorn, plain Python), talking to an emulator on
  127.0.0.1 with dummy credentials: ``subprocess_env``, ``program``, ``running``, ``stop``, ``free_port``.
  Every helper has a deadline: a program that hangs fails its test.
* Records and handlers: ``log_at``, ``FAST_RETRY``, the ``needs_fork`` mark.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import boto3
import botocore.config
import pytest

from cwlhandler.cli import read_stream
from cwlhandler.transport import RetryPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # console scripts (gunicorn, uwsgi, celery, uvicorn) of this venv
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05, slow=0.1)  # what the make_handler fixture sets on its handlers
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


# -- waiting --------------------------------------------------------------------------------------------------------
def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` seconds passed (False).

    It returns rather than raises so that a caller can fail with what explains the timeout: assert it
    (``assert wait_until(...), handler.stats()``: the message is evaluated only on failure, at the deadline),
    or clean up a program and fail with its stderr.  The condition is checked once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- reading back ---------------------------------------------------------------------------------------------------
def logs_client(endpoint_url: str):
    """A plain boto3 client for the test's own calls: no retries, so a refused call shows at once."""
    return boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint_url,
                        config=botocore.config.Config(retries={"total_max_attempts": 1}))


def read_events(endpoint_url: str, group: str, stream: str) -> List[Tuple[int, str]]:
    """Every (timestamp, message) of a stream, oldest first, through GetLogEvents paging."""
    events, _ = read_stream(logs_client(endpoint_url), group, stream)
    return [(e["timestamp"], e["message"]) for e in events]


def read_group(endpoint_url: str, group: str) -> Dict[str, List[str]]:
    """Every stream of ``group`` with its messages, oldest first ({} when the group does not exist)."""
    client = logs_client(endpoint_url)
    try:
        streams = [s["logStreamName"] for page in client.get_paginator("describe_log_streams").paginate(
            logGroupName=group) for s in page["logStreams"]]
    except client.exceptions.ResourceNotFoundException:
        return {}
    return {name: [e["message"] for e in read_stream(client, group, name)[0]] for name in streams}


# -- records --------------------------------------------------------------------------------------------------------
def log_at(logger: logging.Logger, ts_ms: int, msg: str, *args: object,
           level: int = logging.INFO) -> Tuple[int, str]:
    """Log a record stamped exactly ``ts_ms`` (otherwise ordinary); returns (ts_ms, message) as it should be stored.

    The time is set half a millisecond in, so float rounding cannot move it to the millisecond before.
    """
    record = logger.makeRecord(logger.name, level, __file__, 1, msg, args, None)
    record.created = (ts_ms + 0.5) / 1000
    logger.handle(record)
    return ts_ms, record.getMessage()


# -- programs as subprocesses ---------------------------------------------------------------------------------------
def program(name: str) -> str:
    """The path of a console script installed beside this interpreter."""
    return os.path.join(BIN, name)


def subprocess_env(**extra: str) -> Dict[str, str]:
    """The environment of a child: dummy credentials, no profile or configured endpoint, the checkout on the path.

    The instance metadata service is off too: a child without credentials fails at once instead of asking
    the network for some.
    """
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound, read, released): nothing listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(args: Sequence[str], cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            **popen: object) -> Iterator[subprocess.Popen]:
    """Start a program in its own process group; on the way out, kill the whole group and reap it."""
    proc = subprocess.Popen(list(args), cwd=cwd, env=env or subprocess_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple:
    """Send ``sig`` and wait for the program to end; returns (returncode, stdout, stderr)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# -- child processes ------------------------------------------------------------------------------------------
def fork_running(work: Callable[[], bool]) -> int:
    """Fork a child that runs ``work`` and never returns into pytest (exit 0: True, 1: False, 2: raised)."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 0 if work() else 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    return pid


def wait_child(pid: int, timeout: float) -> int:
    """waitpid with a deadline; a child still running at the deadline is killed and the test fails."""
    statuses: List[int] = []

    def reaped() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            statuses.append(status)
        return bool(statuses)

    if not wait_until(reaped, timeout):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"child {pid} did not exit within {timeout} s")
    return os.waitstatus_to_exitcode(statuses[0])


def run_script(body: str, **values: object) -> subprocess.CompletedProcess:
    script = textwrap.dedent(body).format(**values)
    return subprocess.run([sys.executable, "-c", script], timeout=60, env=subprocess_env(),
                          capture_output=True, text=True)


def assert_clean_exit(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit code {result.returncode}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    assert "Fatal Python error" not in result.stderr, result.stderr
