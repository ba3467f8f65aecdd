"""Helpers for tests that run real programs (gunicorn, uWSGI, Celery, uvicorn, plain Python) as subprocesses.

Each program talks to an emulator on 127.0.0.1 (moto's server, the strict fake) with dummy credentials; the
test then reads the stored events back.  Every helper has a deadline: a program that hangs fails its test.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import boto3
import botocore.config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # console scripts (gunicorn, uwsgi, celery, uvicorn) of this venv


def program(name: str) -> str:
    """The path of a console script installed beside this interpreter."""
    return os.path.join(BIN, name)


def subprocess_env(**extra: str) -> Dict[str, str]:
    """The environment of a child: dummy credentials, no profile, the checkout on the path."""
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds passed; True if it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


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


def logs_client(endpoint_url: str):
    return boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint_url,
                        config=botocore.config.Config(retries={"total_max_attempts": 1}))


def read_group(endpoint_url: str, group: str) -> Dict[str, List[str]]:
    """Every stream of ``group`` with its messages, oldest first ({} when the group does not exist)."""
    from cwlhandler.cli import read_stream

    client = logs_client(endpoint_url)
    try:
        streams = [s["logStreamName"] for page in client.get_paginator("describe_log_streams").paginate(
            logGroupName=group) for s in page["logStreams"]]
    except client.exceptions.ResourceNotFoundException:
        return {}
    return {name: [e["message"] for e in read_stream(client, group, name)[0]] for name in streams}
