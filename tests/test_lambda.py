"""AWS Lambda's handler contract, with the real runtime client: records are stored before the environment freezes.

What runs: ``python -m awslambdaric fn.<function>`` (awslambdaric, the AWS Lambda Runtime Interface Client) with
AWS_LAMBDA_RUNTIME_API pointing at a small fake of the Lambda Runtime API served by this test on 127.0.0.1, and the
function's handler shipping to moto's server.  The function module configures the handler at import (the init
phase, as users do) and is decorated with ``@cwlhandler.flush_on_return``.

Lambda freezes the execution environment as soon as it has the invocation's response (or error): the fake does
the same, SIGSTOPping the runtime's process group when that POST arrives, before answering it.  While the process
is frozen (every thread stopped) the test reads the group back: every record of the invocation must already be
stored, exactly once.  Then SIGCONT and the next invocation.  A function that raises must have delivered its
records before the error is posted.  With ``JsonFormatter``, every record carries its invocation's request id and
the trace id the runtime was given (``Lambda-Runtime-Trace-Id``, which awslambdaric puts in ``_X_AMZN_TRACE_ID``).
"""
from __future__ import annotations

import contextlib
import glob
import http.server
import json
import os
import queue
import signal
import sys
import textwrap
import threading
import time
import uuid
from typing import Dict, Iterator, Optional, Tuple

import pytest

from helpers import read_group, running, subprocess_env, wait_until

FUNCTION_MODULE = r'''
import logging, os

import cwlhandler

# Init phase: configured once per execution environment, at import.
cloudwatch = cwlhandler.CloudWatchLogsHandler(
    log_group=os.environ["CWL_GROUP"], log_stream="fn", endpoint_url=os.environ["CWL_ENDPOINT_URL"],
    flush_interval=60, shutdown_timeout=5)
log = logging.getLogger("fn")
log.setLevel(logging.INFO)
log.propagate = False  # the runtime's own root handler writes to stdout; keep the pipe quiet
log.addHandler(cloudwatch)
if os.environ.get("CWL_JSON"):
    cloudwatch.setFormatter(cwlhandler.JsonFormatter(fields=["message"]))


def work(event):
    for i in range(event["records"]):
        log.info("%s record %d", event["name"], i)
    if event.get("fail"):
        raise RuntimeError("failed " + event["name"])
    return {"done": event["name"]}


@cwlhandler.flush_on_return
def handler(event, context):
    return work(event)


@cwlhandler.flush_on_return(timeout=5.0)
def handler_with_timeout(event, context):
    return work(event)


def undecorated(event, context):
    return work(event)
'''

API = "/2018-06-01/runtime"
M = 500  # records per invocation


class FakeRuntimeAPI:
    """The Lambda Runtime API endpoints awslambdaric uses; freezes the runtime when a result arrives.

    ``invoke(event)`` queues an event for GET .../invocation/next (a long poll); ``result()`` waits for what the
    runtime posted next: ("response" | "error", request id, body) or ("init_error", None, body).
    ``trace_headers[request id]`` is the X-Ray header the invocation was given, as Lambda gives it.
    """

    def __init__(self) -> None:
        self.pgid: Optional[int] = None
        self.trace_headers: Dict[str, str] = {}
        self._events: "queue.Queue[Tuple[str, bytes]]" = queue.Queue()
        self._results: "queue.Queue[Tuple[str, Optional[str], str]]" = queue.Queue()
        self._stopping = threading.Event()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: bytes = b"{}", headers: Optional[Dict[str, str]] = None) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{API}/invocation/next":
                    return self.reply(404)
                while not api._stopping.is_set():
                    try:
                        request_id, body = api._events.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    deadline_ms = int(time.time() * 1000) + 60_000
                    return self.reply(200, body, {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
                        "Lambda-Runtime-Trace-Id": api.trace_headers[request_id],
                    })

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                parts = self.path[len(API) + 1:].split("/")
                if parts == ["init", "error"]:
                    api._results.put(("init_error", None, body))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    # Lambda freezes the environment once it has the result: stop every thread of the runtime.
                    if api.pgid is not None:
                        os.killpg(api.pgid, signal.SIGSTOP)
                    api._results.put((parts[2], parts[1], body))
                else:
                    return self.reply(404)
                self.reply(202, b'{"status":"OK"}')

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self._server.server_address[1]

    def __enter__(self) -> "FakeRuntimeAPI":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: dict) -> str:
        request_id = str(uuid.uuid4())
        self.trace_headers[request_id] = (f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};"
                                          f"Parent={uuid.uuid4().hex[:16]};Sampled=0;Lineage=1:a7b2c3d4:0")
        self._events.put((request_id, json.dumps(event).encode()))
        return request_id

    def result(self, timeout: float) -> Optional[Tuple[str, Optional[str], str]]:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None


def frozen(pid: int) -> bool:
    """Every thread of the process is stopped (state T in /proc)."""
    states = []
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        with contextlib.suppress(OSError):
            with open(stat) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


@contextlib.contextmanager
def lambda_runtime(tmp_path, moto_url: str, group: str, function: str, **env: str) -> Iterator[tuple]:
    (tmp_path / "fn.py").write_text(textwrap.dedent(FUNCTION_MODULE))
    with FakeRuntimeAPI() as api:
        env = subprocess_env(AWS_LAMBDA_RUNTIME_API=api.address, CWL_GROUP=group, CWL_ENDPOINT_URL=moto_url,
                             AWS_LAMBDA_FUNCTION_NAME="fn", **env)
        # python -m puts the cwd (the function's directory, like Lambda's task root) first on sys.path.
        with running([sys.executable, "-m", "awslambdaric", f"fn.{function}"], cwd=str(tmp_path), env=env) as proc:
            api.pgid = proc.pid  # running() makes the runtime the leader of its own process group
            yield api, proc


def stderr_of(proc) -> str:
    """Kill the runtime and return the tail of its output, for a failure message."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    return f"stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"


def frozen_after(api: FakeRuntimeAPI, proc, request_id: str) -> Tuple[str, str]:
    """Wait until the runtime posted the invocation's result and is frozen: ("response" | "error", body)."""
    result = api.result(timeout=30)
    if result is None or result[0] == "init_error":
        pytest.fail(f"invocation {request_id}: the runtime posted {result!r}\n{stderr_of(proc)}")
    kind, posted_id, body = result
    assert posted_id == request_id, body
    assert wait_until(lambda: frozen(proc.pid), timeout=10), "the runtime was not frozen"
    return kind, body


@pytest.mark.parametrize("function, failing", [
    ("handler", []),                    # @flush_on_return: three invocations that return
    ("handler_with_timeout", [0, 2]),   # @flush_on_return(timeout=...): raising invocations too
])
def test_records_are_stored_before_lambda_freezes_the_environment(tmp_path, moto_url, function, failing):
    group = f"lambda-{function}"
    with lambda_runtime(tmp_path, moto_url, group, function) as (api, proc):
        expected = []
        for i in range(3):
            name = f"invocation{i}"
            request_id = api.invoke({"name": name, "records": M, "fail": i in failing})
            kind, body = frozen_after(api, proc, request_id)
            assert kind == ("error" if i in failing else "response"), body
            if kind == "error":
                assert json.loads(body)["errorMessage"] == f"failed {name}", body
            # Frozen: no thread of the runtime can send anything now; what is stored is what was delivered in time.
            expected += [f"{name} record {n}" for n in range(M)]
            stored = {stream: sorted(messages) for stream, messages in read_group(moto_url, group).items()}
            assert stored == {"fn": sorted(expected)}, f"invocation {i}: stored {sum(map(len, stored.values()))} " \
                                                       f"of {len(expected)} records when frozen"
            os.killpg(proc.pid, signal.SIGCONT)


def test_records_carry_the_invocations_request_id_and_trace_id(tmp_path, moto_url):
    group = "lambda-json"
    with lambda_runtime(tmp_path, moto_url, group, "handler", CWL_JSON="1") as (api, proc):
        expected = []
        for i in range(2):  # the second invocation's ids replace the first's
            request_id = api.invoke({"name": f"invocation{i}", "records": 3})
            assert frozen_after(api, proc, request_id)[0] == "response"
            fields = dict(item.split("=", 1) for item in api.trace_headers[request_id].split(";"))
            _, epoch, unique = fields["Root"].split("-")
            expected += [{"message": f"invocation{i} record {n}", "traceId": epoch + unique,
                          "spanId": fields["Parent"], "requestId": request_id} for n in range(3)]
            stored = [json.loads(m) for m in read_group(moto_url, group).get("fn", [])]
            assert stored == expected
            os.killpg(proc.pid, signal.SIGCONT)
