"""A fast, counting CloudWatch Logs endpoint for the benchmarks (127.0.0.1 only).

Speaks the JSON 1.1 protocol botocore uses (``X-Amz-Target: Logs_20140328.<Op>``)
over HTTP/1.1 keep-alive.  It stores nothing: PutLogEvents bodies are parsed,
checked against the service's batch rules (count, bytes, order, 24 h span) and
counted.  A request breaking a rule gets the service's 400
``InvalidParameterException`` so a contender that sends invalid batches loses
those events visibly.

Control requests (not AWS operations):
  GET  /stats           -> counters since the last reset, as JSON
  POST /reset?track=1   -> zero the counters; with track=1, every event whose
                           message holds ``t=<monotonic_ns>`` adds an
                           emit-to-acknowledge latency sample (the clock is
                           CLOCK_MONOTONIC, shared by all processes on Linux)
The stats also hold ``first_put_time``: the wall-clock time (``time.time()``) at which
the first valid PutLogEvents since the reset was answered, for a client's start-up time.

Run: ``python benchmarks/endpoint.py [--port 0]``; prints ``PORT <n>`` once listening.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

EVENT_OVERHEAD = 26
MAX_BATCH_COUNT = 10_000
MAX_BATCH_BYTES = 1_048_576
MAX_SPAN_MS = 24 * 3600 * 1000
_T = re.compile(r"\bt=(\d+)")


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset(False)

    def reset(self, track: bool) -> None:
        self.track = track
        self.calls: dict = {}
        self.events = 0
        self.event_bytes = 0
        self.invalid_requests = 0
        self.invalid_reasons: dict = {}
        self.streams: dict = {}
        self.latencies_ns: list = []
        self.max_batch_events = 0
        self.max_batch_bytes = 0
        self.first_put_time = None
        self.cpu0 = time.process_time()
        self.reset_at = time.monotonic()

    def snapshot(self) -> dict:
        lat = sorted(self.latencies_ns)

        def pct(p: float):
            if not lat:
                return None
            return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e9

        return {
            "calls": dict(self.calls),
            "put_log_events_calls": self.calls.get("PutLogEvents", 0),
            "events": self.events,
            "event_bytes": self.event_bytes,
            "invalid_requests": self.invalid_requests,
            "invalid_reasons": dict(self.invalid_reasons),
            "streams": dict(self.streams),
            "max_batch_events": self.max_batch_events,
            "max_batch_bytes": self.max_batch_bytes,
            "first_put_time": self.first_put_time,
            "endpoint_cpu_s": time.process_time() - self.cpu0,
            "ack_latency_samples": len(lat),
            "ack_latency_p50_s": pct(0.50),
            "ack_latency_p99_s": pct(0.99),
            "ack_latency_max_s": lat[-1] / 1e9 if lat else None,
        }


STATE = State()
JSON_TYPE = "application/x-amz-json-1.1"


def check_batch(events: list) -> str:
    if not events:
        return "empty logEvents"
    if len(events) > MAX_BATCH_COUNT:
        return "more than 10,000 events"
    size = 0
    prev = None
    first = events[0]["timestamp"]
    for e in events:
        m = e["message"]
        if not m:
            return "empty message"
        size += (len(m) if m.isascii() else len(m.encode("utf-8"))) + EVENT_OVERHEAD
        ts = e["timestamp"]
        if prev is not None and ts < prev:
            return "not in chronological order"
        prev = ts
    if size > MAX_BATCH_BYTES:
        return "more than 1,048,576 bytes"
    if prev - first > MAX_SPAN_MS:
        return "spans more than 24 hours"
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # silence
        pass

    def _reply(self, status: int, body: bytes, ctype: str = JSON_TYPE) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._reply(status, json.dumps({"__type": code, "message": message}).encode())

    def do_GET(self) -> None:
        if urlparse(self.path).path == "/stats":
            with STATE.lock:
                body = json.dumps(STATE.snapshot()).encode()
            self._reply(200, body, "application/json")
        else:
            self._error(404, "NotFound", self.path)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        if url.path == "/reset":
            track = parse_qs(url.query).get("track", ["0"])[0] == "1"
            with STATE.lock:
                STATE.reset(track)
            self._reply(200, b"{}", "application/json")
            return
        target = self.headers.get("X-Amz-Target", "")
        op = target.rsplit(".", 1)[-1]
        with STATE.lock:
            STATE.calls[op] = STATE.calls.get(op, 0) + 1
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._error(400, "SerializationException", "bad JSON")
            return
        if op == "PutLogEvents":
            events = body.get("logEvents") or []
            problem = check_batch(events)
            if problem:
                with STATE.lock:
                    STATE.invalid_requests += 1
                    STATE.invalid_reasons[problem] = STATE.invalid_reasons.get(problem, 0) + 1
                self._error(400, "InvalidParameterException", problem)
                return
            nbytes = sum(len(e["message"]) for e in events)
            key = f'{body.get("logGroupName")}/{body.get("logStreamName")}'
            samples = None
            if STATE.track:
                samples = [int(m.group(1)) for m in (_T.search(e["message"]) for e in events) if m]
            ack = time.monotonic_ns()
            with STATE.lock:
                STATE.events += len(events)
                STATE.event_bytes += nbytes
                STATE.streams[key] = STATE.streams.get(key, 0) + len(events)
                STATE.max_batch_events = max(STATE.max_batch_events, len(events))
                STATE.max_batch_bytes = max(STATE.max_batch_bytes, nbytes + EVENT_OVERHEAD * len(events))
                if samples:
                    STATE.latencies_ns.extend(ack - t for t in samples)
                if STATE.first_put_time is None:
                    STATE.first_put_time = time.time()
            self._reply(200, b'{"nextSequenceToken": "1"}')
        elif op == "DescribeLogGroups":
            self._reply(200, b'{"logGroups": []}')
        elif op == "DescribeLogStreams":
            self._reply(200, b'{"logStreams": []}')
        elif op in ("CreateLogGroup", "CreateLogStream", "PutRetentionPolicy", "TagLogGroup", "TagResource"):
            self._reply(200, b"{}")
        else:
            self._reply(200, b"{}")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.timeout = 0.5
    deadline = time.monotonic() + args.max_seconds
    try:
        while time.monotonic() < deadline:  # stops by itself after --max-seconds
            server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.exit(0)


if __name__ == "__main__":
    main()
