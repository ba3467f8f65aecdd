"""Helpers for tests that run a real web server (gunicorn, uvicorn) and check what its processes logged.

The servers log through a console handler and the CloudWatch handler with the same format, ``FORMAT``; the
console lines on stderr are what each process logged, the stored events are what it delivered.
"""
from __future__ import annotations

import collections
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from helpers import stop, wait_until

FORMAT = "%(levelname)s %(name)s [%(process)d]: %(message)s"


def get(port: int, path: str) -> Optional[str]:
    """The body of ``GET path``; None while nothing listens on the port (so nothing was logged)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.read().decode()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise
    except ConnectionRefusedError:
        return None


def serve(proc: subprocess.Popen, port: int, paths: Sequence[str], timeout: float = 30) -> Dict[str, str]:
    """Wait until the server answers ``paths[0]``, then send the others 4 at a time: {path: body}.

    Stops early (fewer answers) if the server exits first.
    """
    answers: Dict[str, str] = {}

    def first() -> bool:
        body = get(port, paths[0])
        if body is not None:
            answers[paths[0]] = body
        return body is not None or proc.poll() is not None

    wait_until(first, timeout)
    if answers:
        with ThreadPoolExecutor(4) as pool:
            answers.update(zip(paths[1:], pool.map(lambda path: get(port, path), paths[1:])))
    return answers


def terminate(proc: subprocess.Popen, timeout: float = 30) -> Tuple[int, str, float]:
    """SIGTERM the server, wait for it: (returncode, stderr, seconds it took to exit)."""
    started = time.monotonic()
    returncode, _, err = stop(proc, signal.SIGTERM, timeout=timeout)
    return returncode, err, time.monotonic() - started


def printed(stderr: str, loggers: Iterable[str]) -> Dict[int, List[str]]:
    """The records of ``loggers`` the console handler printed (``FORMAT``), by the pid that logged them, sorted."""
    record = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (?:%s) \[(\d+)\]: .*"
                        % "|".join(re.escape(name) for name in loggers))
    found: Dict[int, List[str]] = collections.defaultdict(list)
    for line in stderr.splitlines():
        match = record.fullmatch(line)
        if match:
            found[int(match.group(1))].append(line)
    return {pid: sorted(lines) for pid, lines in found.items()}


def once(lines: List[str], text: str) -> bool:
    """``text`` occurs in exactly one of ``lines``."""
    return sum(text in line for line in lines) == 1


def compare(stored: Dict[str, List[str]], expected: Dict[str, List[str]]) -> str:
    """'' when every stream holds exactly the expected messages (in any order); else what differs."""
    got = {stream: sorted(messages) for stream, messages in stored.items()}
    expected = {stream: sorted(messages) for stream, messages in expected.items()}
    if got == expected:
        return ""
    lines = []
    for stream in sorted(set(got) | set(expected)):
        have, want = collections.Counter(got.get(stream, [])), collections.Counter(expected.get(stream, []))
        lines.append(f"{stream}: stored {sum(have.values())}, expected {sum(want.values())}; "
                     f"missing {sorted((want - have).elements())[:8]}, extra {sorted((have - want).elements())[:8]}")
    return "\n".join(lines)
