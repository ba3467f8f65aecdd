"""The command line, run as a real subprocess (``python -m cwlhandler``) against real HTTP endpoints."""
from __future__ import annotations

import contextlib
import datetime
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional

import pytest

from cwlhandler.planner import EMPTY_MESSAGE
from helpers import ROOT, free_port, logs_client, read_events, subprocess_env
from strict_fake import error

ENV = subprocess_env(PYTHONUTF8="1")
TIMEOUT = 60
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
posix_only = pytest.mark.skipif(os.name != "posix", reason="signals and pipes as on POSIX")


def cli(*args: str, input: Optional[bytes] = None, env: Optional[Dict[str, str]] = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cwlhandler", *args], input=input, capture_output=True,
                          env=env or ENV, cwd=ROOT, timeout=timeout)


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    """The command as a child process, killed and reaped when the block ends, however it ends."""
    proc = subprocess.Popen([sys.executable, "-m", "cwlhandler", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.kill()
        proc.stdin.close()
        proc.wait()


def text(data: bytes) -> str:
    return data.decode("utf-8")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    err = text(result.stderr)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Lines:
    """Lines of a child's pipe as they arrive, read by a thread, so waiting has a timeout."""

    def __init__(self, pipe) -> None:
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in iter(pipe.readline, b""):
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = 20) -> Optional[bytes]:
        return self._queue.get(timeout=timeout)

    def rest(self, timeout: float = 20) -> List[bytes]:
        """Every remaining line, once the pipe is closed."""
        lines = []
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return lines
            lines.append(line)


def put(endpoint: str, group: str, stream: str, *events: tuple) -> None:
    client = logs_client(endpoint)
    for call, kwargs in (("create_log_group", {}), ("create_log_stream", {"logStreamName": stream})):
        try:
            getattr(client, call)(logGroupName=group, **kwargs)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
    client.put_log_events(logGroupName=group, logStreamName=stream,
                          logEvents=[{"timestamp": ts, "message": msg} for ts, msg in events])


def iso(ms: int) -> str:
    when = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- help, arguments and errors that need no state: run side by side ------------------------------------------------
HELP = {
    (): ["demo", "ship", "tail"],
    ("demo",): ["--records", "--endpoint-url", "--region", "--profile", "--progress"],
    ("ship",): ["--group", "--stream", "--tee", "--shutdown-timeout", "--endpoint-url", "--region", "--profile"],
    ("tail",): ["--group", "--stream", "--follow", "--since", "--limit", "--endpoint-url", "--region", "--profile"],
}
BAD_ARGUMENTS = {
    (): "required",
    ("ship", "--group", "g"): "--stream",
    ("ship", "--group", "g", "--stream", "s", "/nonexistent/input.log"): "/nonexistent/input.log: no such file",
    ("ship", "--group", "bad group", "--stream", "s"): "log_group",
    ("tail", "--group", "g", "--since", "5 parsecs"): "--since",
    ("tail", "--group", "g", "--limit", "0"): "--limit",
    ("tail", "--group", "g", "--endpoint-url", "not-a-url"): "--endpoint-url",
    ("demo", "--records", "-3"): "--records",
}
UNREACHABLE = [("tail", "--group", "g"), ("ship", "--group", "g", "--stream", "s"), ("demo", "--records", "10")]
UNKNOWN_GROUP = "cli-no-such-group"


@pytest.fixture(scope="module")
def quick(moto_url, tmp_path_factory):
    """Results of the commands that need no prepared state, run a few at a time (each is mostly start-up)."""
    url = f"http://127.0.0.1:{free_port()}"
    empty = tmp_path_factory.mktemp("aws-config")
    no_credentials = {k: v for k, v in ENV.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    no_credentials.update(AWS_CONFIG_FILE=str(empty / "config"), AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials"))
    runs = {("help",) + command: (command + ("--help",), None) for command in HELP}
    runs.update({("bad",) + args: (args, None) for args in BAD_ARGUMENTS})
    runs.update({("unreachable",) + command: (command + ("--endpoint-url", url), None) for command in UNREACHABLE})
    runs[("unknown-group",)] = (("tail", "--group", UNKNOWN_GROUP, "--endpoint-url", moto_url), None)
    runs[("unknown-group", "stream")] = (("tail", "--group", UNKNOWN_GROUP, "--stream", "s", "--endpoint-url",
                                          moto_url), None)
    runs[("no-credentials",)] = (("tail", "--group", "g", "--endpoint-url", moto_url), no_credentials)
    runs[("no-profile",)] = (("ship", "--group", "g", "--stream", "s", "--endpoint-url", moto_url, "--profile",
                              "nosuch"), no_credentials)

    def run(key):
        args, env = runs[key]
        started = time.monotonic()
        result = cli(*args, input=b"line\n", env=env, timeout=30)
        result.elapsed = time.monotonic() - started
        return key, result

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, runs))


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "cwlhandler")
def test_help(quick, command):
    result = quick[("help",) + command]
    assert result.returncode == 0, result.stderr
    out = text(result.stdout)
    assert out.startswith(f"usage: cwlhandler {' '.join(command)}".rstrip()), out
    for option in HELP[command]:
        assert option in out


@pytest.mark.parametrize("args", list(BAD_ARGUMENTS), ids=lambda a: " ".join(a) or "nothing")
def test_bad_arguments_exit_2(quick, args):
    result = quick[("bad",) + args]
    assert result.returncode == 2, (result.stdout, result.stderr)
    err = text(result.stderr)
    assert "Traceback" not in err
    assert BAD_ARGUMENTS[args] in err.strip().splitlines()[-1], err


@pytest.mark.parametrize("command", UNREACHABLE, ids=lambda c: c[0])
def test_unreachable_endpoint(quick, command):
    result = quick[("unreachable",) + command]
    assert result.elapsed < 20
    assert result.returncode == 1
    assert re.fullmatch(rf"cwlhandler {command[0]}: error: cannot connect to the endpoint http://127\.0\.0\.1:\d+/",
                        one_error_line(result))


@pytest.mark.parametrize("stream", [False, True], ids=["group", "stream"])
def test_tail_unknown_group(quick, stream):
    result = quick[("unknown-group",) + (("stream",) if stream else ())]
    assert result.returncode == 1
    assert one_error_line(result) == f"cwlhandler tail: error: log group {UNKNOWN_GROUP!r} does not exist"


def test_missing_credentials(quick):
    result = quick[("no-credentials",)]
    assert result.returncode == 1
    assert one_error_line(result).startswith("cwlhandler tail: error: no usable AWS credentials found")


def test_unknown_profile(quick):
    result = quick[("no-profile",)]
    assert result.returncode == 1
    assert one_error_line(result) == "cwlhandler ship: error: AWS profile 'nosuch' not found in the AWS config files"


# -- demo -----------------------------------------------------------------------------------------------------------
def test_demo_embedded_emulator_2000_records():
    result = cli("demo", "--records", "2000", "--progress")
    out, err = text(result.stdout), text(result.stderr)
    assert result.returncode == 0, (out, err)
    assert "Traceback" not in err
    summary = dict(re.findall(r"^  (logged|delivered|dropped|PutLogEvents calls)\s+(\d+)", out, re.M))
    assert summary == {"logged": "2000", "delivered": "2000", "dropped": "0",
                       "PutLogEvents calls": summary.get("PutLogEvents calls")}, out
    assert int(summary["PutLogEvents calls"]) >= 1
    assert re.search(r"^  batch fill\s+[\d.]+ events and [\d.]+ KiB per acknowledged call", out, re.M), out
    assert re.search(r"^  throughput\s+\d+ records/s", out, re.M), out
    assert "(embedded emulator)" in out
    samples = re.findall(rf"^    {ISO}  (.*)$", out, re.M)
    assert len(samples) == 3 and all(s.startswith("{") for s in samples), out
    assert out.rstrip().endswith("OK: delivered == logged - dropped")
    # The progress bar: carriage returns on stderr, ending at 100%.
    assert "\r[" in err and "100% 2000/2000" in err, err


# -- ship -----------------------------------------------------------------------------------------------------------
def test_ship_stdin_lines_arrive_exactly(moto_url):
    group, stream = name("cli-ship"), "stdin {literal}"
    lines = ["first line", "", "  indented, trailing space ", "percent %s %(x)s and braces {0}", "naïve café ☕ 東京",
             "windows line ending", "x" * 5000, "last line without newline"]
    data = ("\n".join(lines[:5]) + "\n" + lines[5] + "\r\n" + lines[6] + "\n" + lines[7]).encode("utf-8")
    result = cli("ship", "--group", group, "--stream", stream, "--endpoint-url", moto_url, input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""  # no --tee
    assert one_error_line(result) == f"cwlhandler ship: shipped {len(lines)} lines, dropped 0"
    expected = [EMPTY_MESSAGE if line == "" else line for line in lines]
    assert [message for _, message in read_events(moto_url, group, stream)] == expected


def test_ship_tee_and_files(moto_url, tmp_path):
    group, stream = name("cli-tee"), "files"
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes("a1\na2 ünïcode\n".encode("utf-8"))
    second.write_bytes(b"b1\nb2")
    stdin = b"s1\ns2\n"
    result = cli("ship", "--group", group, "--stream", stream, "--endpoint-url", moto_url, "--tee",
                 str(first), "-", str(second), input=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout == first.read_bytes() + stdin + second.read_bytes()
    assert [m for _, m in read_events(moto_url, group, stream)] == ["a1", "a2 ünïcode", "s1", "s2", "b1", "b2"]
    assert one_error_line(result) == "cwlhandler ship: shipped 6 lines, dropped 0"


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_ship_signal_while_the_pipe_stays_open(moto_url, signum):
    group, stream = name("cli-signal"), "open-pipe"
    # A long flush interval: the lines can only arrive through the shutdown path.
    with running("ship", "--group", group, "--stream", stream, "--endpoint-url", moto_url, "--tee",
                 "--flush-interval", "600", "--shutdown-timeout", "10") as proc:
        out = Lines(proc.stdout)
        proc.stdin.write(b"one\ntwo\nthree\n")
        proc.stdin.flush()
        assert [out.next() for _ in range(3)] == [b"one\n", b"two\n", b"three\n"]  # read and echoed
        started = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=10 + 5)
        elapsed = time.monotonic() - started
        err = text(proc.stderr.read())
    assert proc.returncode == 0, err
    assert elapsed < 10, elapsed
    assert err.strip().splitlines() == [
        f"cwlhandler ship: shipped 3 lines, dropped 0; stopped by {signal.Signals(signum).name}"]
    assert [m for _, m in read_events(moto_url, group, stream)] == ["one", "two", "three"]


@posix_only
def test_ship_shutdown_is_bounded_when_the_endpoint_fails(fake):
    with running("ship", "--group", "cli-outage", "--stream", "s", "--endpoint-url", fake.endpoint_url, "--tee",
                 "--flush-interval", "600", "--shutdown-timeout", "1") as proc:
        try:
            out = Lines(proc.stdout)
            proc.stdin.write(b"kept\nin\nbuffer\n")
            proc.stdin.flush()
            assert [out.next() for _ in range(3)] == [b"kept\n", b"in\n", b"buffer\n"]
            fake.set_outage(error("ServiceUnavailableException", 503))
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            elapsed = time.monotonic() - started
            err = text(proc.stderr.read())
        finally:
            fake.set_outage(None)
    assert proc.returncode == 1, err
    assert elapsed < 1 + 5, elapsed
    assert "Traceback" not in err
    assert "cwlhandler ship: shipped 0 lines, dropped 3 (shutdown: 3); stopped by SIGTERM" in err.splitlines(), err
    assert fake.events("cli-outage", "s") == []


def test_ship_no_create_unknown_group(moto_url):
    result = cli("ship", "--group", name("cli-missing"), "--stream", "s", "--endpoint-url", moto_url, "--no-create",
                 input=b"never shipped\n")
    assert result.returncode == 1
    assert one_error_line(result).endswith("does not exist")


# -- tail -----------------------------------------------------------------------------------------------------------
def test_tail_prints_what_ship_shipped(moto_url):
    group = name("cli-tail")
    for stream, data in (("web", b"GET /\nGET /cart\n"), ("worker", "job 1 done ✓\n".encode("utf-8"))):
        assert cli("ship", "--group", group, "--stream", stream, "--endpoint-url", moto_url, input=data).returncode == 0
    shipped = sorted([(ts, "web", m) for ts, m in read_events(moto_url, group, "web")]
                     + [(ts, "worker", m) for ts, m in read_events(moto_url, group, "worker")],
                     key=lambda e: e[0])

    result = cli("tail", "--group", group, "--endpoint-url", moto_url)
    assert result.returncode == 0, result.stderr
    lines = text(result.stdout).splitlines()
    assert len(lines) == 3, lines
    # Oldest first, with the stream names as the group has several.
    assert lines == [f"{iso(ts)}  {stream}  {message}" for ts, stream, message in shipped]

    result = cli("tail", "--group", group, "--stream", "web", "--endpoint-url", moto_url)
    assert result.returncode == 0, result.stderr
    assert [line.split("  ", 1)[1] for line in text(result.stdout).splitlines()] == ["GET /", "GET /cart"]


def test_tail_since_and_limit(moto_url):
    group, stream = name("cli-since"), "s"
    now = now_ms()
    put(moto_url, group, stream, (now - 3 * 3_600_000, "three hours ago"), (now - 30 * 60_000, "half an hour ago"),
        (now - 60_000, "a minute ago"), (now - 10_000, "ten seconds ago"))
    by_group, by_stream = (), ("--stream", stream)  # FilterLogEvents, GetLogEvents
    for since, extra, expected in (
        (None, by_group, ["a minute ago", "ten seconds ago"]),  # the default: 10m
        ("30s", by_stream, ["ten seconds ago"]),
        ("1h", by_group, ["half an hour ago", "a minute ago", "ten seconds ago"]),
        ("1d", by_stream, ["three hours ago", "half an hour ago", "a minute ago", "ten seconds ago"]),
    ):
        since_args = ("--since", since) if since else ()
        result = cli("tail", "--group", group, *extra, *since_args, "--endpoint-url", moto_url)
        assert result.returncode == 0, result.stderr
        assert [line.split("  ")[-1] for line in text(result.stdout).splitlines()] == expected, (since, extra)
    result = cli("tail", "--group", group, "--since", "1d", "--limit", "2", "--endpoint-url", moto_url)
    assert [line.split("  ")[-1] for line in text(result.stdout).splitlines()] == ["a minute ago", "ten seconds ago"]


@posix_only
@pytest.mark.parametrize("by_stream", [True, False], ids=["stream", "group"])
def test_tail_follow_prints_new_events_once(moto_url, by_stream):
    group, stream = name("cli-follow"), "s"
    put(moto_url, group, stream, (now_ms(), "before"))
    with running("tail", "--group", group, *(("--stream", stream) if by_stream else ()), "--follow",
                 "--endpoint-url", moto_url) as proc:
        out = Lines(proc.stdout)
        assert out.next().decode().endswith("  before\n")
        put(moto_url, group, stream, (now_ms(), "during 1"))
        assert out.next().decode().endswith("  during 1\n")  # and "before" was not printed again
        put(moto_url, group, stream, (now_ms(), "during 2"))
        assert out.next().decode().endswith("  during 2\n")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert out.rest() == []
        err = text(proc.stderr.read())
    assert proc.returncode == 0, err
    assert "Traceback" not in err
