"""``cwlhandler demo``: log a realistic workload through ``dictConfig``, the handler and ``JsonFormatter``.

The records go to an embedded emulator (or ``--endpoint-url``); the demo closes the
handler, reads the events back and prints what arrived.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
from typing import Any, Callable, List

from ..planner import API_MAX_BATCH_BYTES as BATCH_BYTES_LIMIT
from ..planner import API_MAX_BATCH_COUNT as BATCH_COUNT_LIMIT
from ..planner import EVENT_OVERHEAD
from .aws import ensure_destination, iso_utc, make_client, make_session, read_stream, template_literal
from .parser import EXIT_FAILURE, EXIT_OK, CliError

PATHS = [
    ("GET", "/"), ("GET", "/api/products"), ("GET", "/api/products/{id}"), ("GET", "/api/search"),
    ("POST", "/api/cart"), ("GET", "/api/cart"), ("POST", "/api/checkout"), ("GET", "/api/orders/{id}"),
    ("POST", "/api/login"), ("GET", "/static/app.js"),
]
USERS = ["alice", "bob", "chloé", "d.müller", "eve", "山田太郎", "søren", "zoë", "ivan.petrov", "مريم", "guest"]
SEARCHES = ["café crème ☕", "naïve résumé", "Grüße aus Köln", "東京 ラーメン", "pão de queijo", "smørrebrød",
            "running shoes", "ñandú 🐦", "usb-c cable", "crème brûlée 🍮"]


class PaymentDeclined(Exception):
    pass


def _charge(order_id: int, amount: float) -> None:
    raise PaymentDeclined(f"card declined for order {order_id} ({amount:.2f} EUR): insufficient funds")


def _checkout(order_id: int, amount: float) -> None:
    try:
        _charge(order_id, amount)
    except PaymentDeclined as exc:
        raise RuntimeError(f"checkout of order {order_id} failed") from exc


def _workload(index: int, count: int, seed: int, progress: List[int], stop: threading.Event) -> None:
    """An imaginary shop's web workers: one log call per request (every call is one record)."""
    rng = random.Random(seed * 1009 + index)
    http = logging.getLogger("shop.http")
    search = logging.getLogger("shop.search")
    payments = logging.getLogger("shop.payments")
    for i in range(count):
        if stop.is_set():
            return
        method, path = PATHS[rng.randrange(len(PATHS))]
        path = path.replace("{id}", str(rng.randrange(1, 100_000)))
        user = USERS[rng.randrange(len(USERS))]
        latency = round(rng.lognormvariate(3.0, 0.8), 1)
        request_id = f"{index:02d}-{i:07d}"
        roll = rng.random()
        extra = {"path": path, "method": method, "user": user, "latency_ms": latency, "request_id": request_id}
        if roll < 0.004:
            order = rng.randrange(1, 10**6)
            extra.update(status=502, path="/api/checkout", method="POST")
            try:
                _checkout(order, rng.uniform(5, 500))
            except RuntimeError:
                payments.exception("payment failed for %s on order %d", user, order, extra=extra)
        elif roll < 0.03:
            extra["status"] = 429 if roll < 0.015 else 404
            http.warning("%s %s -> %d for %s", method, path, extra["status"], user, extra=extra)
        elif roll < 0.06:
            extra["latency_ms"] = latency = round(latency * 40, 1)
            extra["status"] = 200
            http.warning("slow request: %s %s took %.1f ms", method, path, latency, extra=extra)
        elif roll < 0.16:
            query = SEARCHES[rng.randrange(len(SEARCHES))]
            extra.update(status=200, path="/api/search", method="GET", query=query)
            search.info("search %r by %s: %d results", query, user, rng.randrange(0, 300), extra=extra)
        else:
            extra["status"] = 201 if method == "POST" else 200
            http.info("%s %s -> %d in %.1f ms", method, path, extra["status"], latency, extra=extra)
        progress[index] = i + 1


class PutCounter:
    """Counts PutLogEvents requests (every attempt) and the events/bytes of acknowledged ones.

    Hooks on the session's botocore events, so it sees the handler's own client:
    ``before-send`` reads the request body that goes on the wire (however it was
    built), ``after-call`` on the same thread sees the response.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.calls = self.acknowledged = self.events = self.bytes = self.fullest = 0

    def register(self, session: Any) -> None:
        session.events.register("before-send.cloudwatch-logs.PutLogEvents", self._before_send)
        session.events.register("after-call.cloudwatch-logs.PutLogEvents", self._after_call)

    def _before_send(self, request: Any, **_: Any) -> None:
        count = nbytes = 0
        try:
            body = request.body
            events = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)["logEvents"]
            count = len(events)
            nbytes = sum(len(e["message"].encode("utf-8")) + EVENT_OVERHEAD for e in events)
        except Exception:
            pass
        self.local.batch = (count, nbytes)
        with self.lock:
            self.calls += 1
        return None  # a response here would replace the real one

    def _after_call(self, http_response: Any, **_: Any) -> None:
        count, nbytes = getattr(self.local, "batch", (0, 0))
        self.local.batch = (0, 0)
        if getattr(http_response, "status_code", 0) != 200:
            return
        with self.lock:
            self.acknowledged += 1
            self.events += count
            self.bytes += nbytes
            self.fullest = max(self.fullest, count)


def run(args: argparse.Namespace) -> int:
    # The embedded server logs every request on "werkzeug"; it is not part of the demo.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    emulator = None
    endpoint = args.endpoint_url
    if endpoint is None:
        try:
            from ..local import LocalEmulator

            emulator = LocalEmulator().start()  # also sets dummy credentials and a region if none are set
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        endpoint = emulator.endpoint_url
    try:
        return _demo(args, endpoint, embedded=emulator is not None)
    finally:
        if emulator is not None:
            emulator.stop()


def _demo(args: argparse.Namespace, endpoint: str, embedded: bool) -> int:
    import logging.config

    from ..handler import CloudWatchLogsHandler

    session = make_session(args)
    client = make_client(session, endpoint)
    group = args.group
    stream = args.stream or f"demo-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
    ensure_destination(client, group, stream, create=True)
    counter = PutCounter()
    counter.register(session)  # before the handler makes its client from this session

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "cwlhandler.jsonformat.JsonFormatter", "static": {"service": "demo-shop", "env": "demo"}},
        },
        "handlers": {
            "cloudwatch": {
                "class": "cwlhandler.CloudWatchLogsHandler",
                "formatter": "json",
                "log_group": group,
                "log_stream": template_literal(stream),
                "boto3_session": session,
                "region_name": args.region,
                "endpoint_url": endpoint,
                "flush_interval": 1.0,
                "shutdown_timeout": args.shutdown_timeout,
            },
        },
        "loggers": {"shop": {"level": "INFO", "handlers": ["cloudwatch"], "propagate": False}},
    }
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = exc.__cause__ or exc.__context__
        raise CliError(f"cannot configure logging: {exc}" + (f": {cause}" if cause else "")) from None
    handler = next(h for h in logging.getLogger("shop").handlers if isinstance(h, CloudWatchLogsHandler))

    total, nthreads = args.records, min(args.threads, args.records)
    shares = [total // nthreads + (1 if i < total % nthreads else 0) for i in range(nthreads)]
    progress = [0] * nthreads
    show = sys.stderr.isatty() if args.progress is None else args.progress
    stop = threading.Event()
    threads = [threading.Thread(target=_workload, args=(i, shares[i], args.seed, progress, stop),
                                name=f"shop-worker-{i}", daemon=True) for i in range(nthreads)]
    started = time.perf_counter()
    bar = _ProgressBar(total, handler, started) if show else None
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
                if bar:
                    bar.draw(sum(progress))
    except KeyboardInterrupt:  # stop logging and close while the emulator still runs: a quick exit
        stop.set()
        for thread in threads:
            thread.join()
        if bar:
            bar.end()
        handler.close()
        raise
    logged = sum(progress)
    if bar:
        bar.draw(logged, "closing")
    handler.close()
    elapsed = time.perf_counter() - started
    if bar:
        bar.draw(logged, "closed")
        bar.end()
    logging.getLogger("shop").removeHandler(handler)

    stats = handler.stats()
    events, _ = read_stream(client, group, stream)
    delivered = len(events)
    dropped = int(stats["dropped"])
    ok = delivered == logged - dropped
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(stats["dropped_by_reason"].items())) or "none"
    out = [
        f"cwlhandler demo: {logged} records from {nthreads} threads to {endpoint}"
        + (" (embedded emulator)" if embedded else ""),
        f"  log group / stream   {group} / {stream}",
        f"  logged               {logged}  (handler counted {stats['emitted']} emitted)",
        f"  delivered            {delivered}  (read back with GetLogEvents)",
        f"  dropped              {dropped}  ({reasons})",
        f"  PutLogEvents calls   {counter.calls}  ({counter.acknowledged} acknowledged; all API calls "
        f"{stats['api_calls']}, retries {stats['retries']})",
    ]
    if counter.acknowledged:
        out.append(
            f"  batch fill           {counter.events / counter.acknowledged:.1f} events and "
            f"{counter.bytes / counter.acknowledged / 1024:.1f} KiB per acknowledged call on average, fullest "
            f"{counter.fullest} events (limits: {BATCH_COUNT_LIMIT} events, {BATCH_BYTES_LIMIT // 1024} KiB)"
        )
    out.append(f"  throughput           {logged / elapsed if elapsed > 0 else 0:.0f} records/s  "
               f"({elapsed:.2f} s from the first record to close() returning)")
    if stats.get("format_errors"):
        out.append(f"  format errors        {stats['format_errors']}")
    samples = _samples([e["message"] for e in events])
    if samples:
        out.append("  sample events:")
        out += [f"    {iso_utc(ts)}  {_shorten(msg, 300)}" for ts, msg in
                ((events[i]["timestamp"], events[i]["message"]) for i in samples)]
    out.append("OK: delivered == logged - dropped" if ok else
               f"FAILED: delivered {delivered} != logged {logged} - dropped {dropped}")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return EXIT_OK if ok else EXIT_FAILURE


def _samples(messages: List[str]) -> List[int]:
    """Indexes of up to 3 telling events: the first, one with a traceback, one with non-ASCII text."""
    chosen: List[int] = []
    tests: List[Callable[[str], bool]] = [
        lambda m: True,
        lambda m: "Traceback" in m,
        lambda m: not m.isascii() or "\\u" in m,
        lambda m: "WARNING" in m,
    ]
    for test in tests:
        index = next((i for i, m in enumerate(messages) if i not in chosen and test(m)), None)
        if index is not None and len(chosen) < 3:
            chosen.append(index)
    return chosen


def _shorten(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


class _ProgressBar:
    def __init__(self, total: int, handler: Any, started: float, width: int = 30) -> None:
        self.total, self.handler, self.started, self.width = total, handler, started, width
        self.length = 0

    def draw(self, done: int, note: str = "") -> None:
        filled = int(self.width * done / self.total) if self.total else self.width
        rate = done / max(1e-9, time.perf_counter() - self.started)
        try:
            sent = self.handler.stats()["sent"]
        except Exception:
            sent = 0
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * done // max(1, self.total):3d}% "
                f"{done}/{self.total} logged, {sent} sent, {rate:.0f} rec/s {note}").rstrip()
        pad = " " * max(0, self.length - len(text))
        self.length = len(text)
        try:
            sys.stderr.write("\r" + text + pad)
            sys.stderr.flush()
        except Exception:
            pass

    def end(self) -> None:
        try:
            sys.stderr.write("\n")
            sys.stderr.flush()
        except Exception:
            pass


