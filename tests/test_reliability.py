"""Reliability under faults, load and bad input, with exact counts.

Every test talks real HTTP on 127.0.0.1 to the strict fake (tests/strict_fake.py), directly or through
``FaultProxy`` (tests/faults.py), which can make the endpoint refuse connections outright.  Counts are exact:
records logged, delivered (read back from the fake's store), dropped by reason (``handler.stats()``), and calls
(the fake's ``calls`` and the handler's ``api_calls``).

Documented behaviour proven here:

* Retries: capped exponential backoff with jitter, ``base * 2**attempt`` capped at ``cap`` and multiplied by a
  factor in [0.5, 1]; the tests use ``FAST_RETRY`` (base 0.01 s, cap 0.05 s, slow 0.1 s) and derive the least
  time N calls can take from it: fewer calls than that bound allows means no busy loop.
* Duplicates: PutLogEvents has no idempotency key.  A request the service applied but answered with an error
  (or a timeout after it was applied) is retried and its events are stored twice.  ``sent`` counts
  acknowledgements, so it does not include the duplicates; see ``test_applied_then_failed_request_is_duplicated``.
* Endpoints: with no ``endpoint_url`` the client uses the region's https endpoint.  ``http://`` is accepted only
  when given explicitly (an emulator, a VPC proxy): as ``endpoint_url`` or through botocore's own endpoint
  configuration (``AWS_ENDPOINT_URL*``, the config file), which the operator also sets explicitly.  Anything
  other than an http(s) URL with a host is a ``ValueError`` at construction.
* Exit: a process whose endpoint is down exits within ``shutdown_timeout`` + 1 s of its last log call and
  reports the records it could not deliver as ``shutdown`` drops on stderr.

The long soak (minutes of random faults) is opt-in: ``CWL_SOAK=1 [CWL_SOAK_SECONDS=300] pytest
tests/test_reliability.py -k soak``.  A summary of the figures (faults injected, records, drops, calls, longest
exit) is printed at the end of the module.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

import boto3
import botocore.config
import pytest

from cwlhandler import CloudWatchLogsHandler
from cwlhandler.planner import DAY_MS, EMPTY_MESSAGE, HOUR_MS
from cwlhandler.transport import RetryPolicy
from faults import FaultProxy
from helpers import FAST_RETRY, free_port, log_at, logs_client, needs_fork, subprocess_env, wait_until
from strict_fake import Fault, StrictFake

GROUP, STREAM = "test-group", "test-stream"
LIMIT = 1_048_576 - 26  # the largest message (UTF-8 bytes) the service takes

# -- figures for the closing report -------------------------------------------------------------------------------
FIGURES: collections.Counter = collections.Counter()
EXIT_TIMES: Dict[str, float] = {}


def tally(handler: Optional[CloudWatchLogsHandler] = None, *, faults: int = 0, delivered: int = 0,
          duplicates: int = 0, logged: Optional[int] = None, calls: Optional[int] = None) -> None:
    FIGURES["faults injected"] += faults
    FIGURES["records delivered"] += delivered
    FIGURES["duplicates (documented)"] += duplicates
    if handler is not None:
        stats = handler.stats()
        FIGURES["records logged"] += stats["emitted"] if logged is None else logged
        FIGURES["api calls"] += stats["api_calls"] if calls is None else calls
        FIGURES["retries"] += stats["retries"]
        for reason, n in stats["dropped_by_reason"].items():
            FIGURES[f"dropped: {reason}"] += n
    else:
        FIGURES["records logged"] += logged or 0
        FIGURES["api calls"] += calls or 0


@pytest.fixture(scope="module", autouse=True)
def _report_figures(request):
    yield
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is None or not FIGURES:
        return
    lines = [f"  {key}: {FIGURES[key]}" for key in sorted(FIGURES)]
    lines += [f"  exit after last log call [{key}]: {value:.3f} s" for key, value in sorted(EXIT_TIMES.items())]
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_sep("-", "reliability figures")
        for line in lines:
            reporter.write_line(line)


# -- helpers --------------------------------------------------------------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def precreate(url: str, group: str = GROUP, *streams: str) -> None:
    client = logs_client(url)
    client.create_log_group(logGroupName=group)
    for stream in streams or (STREAM,):
        client.create_log_stream(logGroupName=group, logStreamName=stream)


def short_timeout_client(url: str, **credentials):
    """A client that gives up on a hung request after 0.5 s (the handler's own waits 20 s)."""
    return boto3.client(
        "logs", region_name="us-east-1", endpoint_url=url,
        config=botocore.config.Config(read_timeout=0.5, connect_timeout=0.5, retries={"total_max_attempts": 1}),
        **credentials,
    )


def min_gaps(policy: RetryPolicy, n: int) -> float:
    """The least total wait of ``n`` consecutive backoffs (attempts 0..n-1, jitter at its minimum)."""
    return sum(0.5 * min(policy.cap, policy.base * 2 ** a) for a in range(n))


def max_calls(policy: RetryPolicy, window: float, concurrency: int) -> int:
    """The most calls ``concurrency`` workers can make in ``window`` seconds if each waits its backoff."""
    per_worker = 1
    while min_gaps(policy, per_worker) <= window:
        per_worker += 1
    return per_worker * concurrency


def ok_requests(fake: StrictFake, stream: Optional[str] = None) -> List[dict]:
    return [r for r in fake.put_requests if r["outcome"] == "ok" and (stream is None or r["stream"] == stream)]


def assert_no_duplicates(messages: Iterable[str]) -> collections.Counter:
    counts = collections.Counter(messages)
    twice = {m: n for m, n in counts.items() if n > 1}
    assert not twice, f"duplicated: {list(twice.items())[:5]}"
    return counts


# =================================================================================================================
# 1. Faults
# =================================================================================================================
def test_throttling_storm_delivers_all_once_in_order_with_bounded_backoff(fake, make_handler, logger):
    precreate(fake.endpoint_url)
    storm = 30
    fake.inject("PutLogEvents", *[Fault.error("ThrottlingException", 400, "Rate exceeded")] * storm)
    handler = make_handler(fake.endpoint_url, max_concurrency=1, max_batch_count=100, flush_interval=3600)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    expected = [log_at(logger, base + i, "storm %d", i) for i in range(250)]

    started = time.monotonic()
    assert handler.flush(20)
    elapsed = time.monotonic() - started

    assert fake.events(GROUP, STREAM) == expected  # once each, in order
    oks = ok_requests(fake)
    assert sum(r["count"] for r in oks) == 250
    # Exactly one call per fault plus one per batch: no extra calls, nothing given up.
    assert fake.calls["PutLogEvents"] == storm + len(oks)
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"], stats["retries"], stats["api_calls"]) == (250, 0, storm, storm + len(oks))
    # One worker retried one batch 30 times in a row: that takes at least the sum of the least backoffs
    # (0.71 s with FAST_RETRY; a busy loop would take ~30 ms) and at most the capped backoffs plus slack.
    assert elapsed >= min_gaps(FAST_RETRY, storm), elapsed
    assert elapsed < 2 * min_gaps(FAST_RETRY, storm) + 3.0, elapsed
    tally(handler, faults=storm, delivered=len(expected))


def test_errors_resets_and_timeouts_mid_request_are_retried_and_delivered_once(fake, make_handler, logger):
    precreate(fake.endpoint_url)
    retried = [
        Fault.error("InternalFailure", 500), Fault.error("ServiceUnavailableException", 503), Fault.reset(),
        Fault.hang(3.0), Fault.error("ThrottlingException"), Fault.reset(), Fault.error("InternalFailure", 500),
        Fault.hang(3.0), Fault.error("ServiceUnavailableException", 503), Fault.reset(),
    ]
    slow = [Fault.delay(0.2)] * 3  # slower than usual but inside the read timeout: answered, not retried
    queue = retried[:3] + slow[:1] + retried[3:6] + slow[1:2] + retried[6:] + slow[2:]
    fake.inject("PutLogEvents", *queue)
    handler = make_handler(fake.endpoint_url, client=short_timeout_client(fake.endpoint_url),
                           max_concurrency=2, max_batch_count=50, flush_interval=3600)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    expected = [log_at(logger, base + i, "mid %d", i) for i in range(400)]

    assert handler.flush(30)

    assert fake.events(GROUP, STREAM) == expected  # hung and reset requests were never applied: no duplicates
    oks = ok_requests(fake)
    assert sum(r["count"] for r in oks) == 400
    assert fake.calls["PutLogEvents"] == len(retried) + len(oks)
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"], stats["retries"]) == (400, 0, len(retried))
    assert stats["api_calls"] == fake.calls["PutLogEvents"]
    tally(handler, faults=len(queue), delivered=len(expected))


def test_applied_then_failed_request_is_duplicated_as_documented(fake, make_handler, logger):
    """No idempotency key: a request applied and then answered with a 500 is retried and stored twice."""
    precreate(fake.endpoint_url)
    fake.inject("PutLogEvents", Fault.apply_then_error())
    handler = make_handler(fake.endpoint_url, max_concurrency=1, flush_interval=3600)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    expected = [log_at(logger, base + i, "dup %d", i) for i in range(20)]
    assert handler.flush(10)

    stored = fake.events(GROUP, STREAM)
    # The one batch was stored twice: delivered = logged + duplicates (20 + 20), every event exactly twice.
    assert stored == [e for e in expected for _ in range(2)]
    assert fake.calls["PutLogEvents"] == 2
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"], stats["retries"]) == (20, 0, 1)  # sent counts acknowledgements
    tally(handler, faults=1, delivered=len(stored), duplicates=len(stored) - len(expected))


def test_slow_endpoint_delivers_everything_without_retries_or_blocking_the_application(fake, make_handler, logger):
    precreate(fake.endpoint_url)
    fake.set_outage(Fault.delay(0.25))  # every request answered, each a quarter of a second late
    handler = make_handler(fake.endpoint_url, max_concurrency=4, max_batch_count=50, flush_interval=0.05)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    started = time.monotonic()
    expected = [log_at(logger, base + i, "slow %d", i) for i in range(1000)]
    logging_took = time.monotonic() - started
    assert handler.flush(30)
    fake.set_outage(None)

    assert fake.events(GROUP, STREAM) == expected
    oks = ok_requests(fake)
    stats = handler.stats()
    assert fake.calls["PutLogEvents"] == len(oks) == stats["api_calls"]  # slow is not failed: no retry
    assert (stats["sent"], stats["dropped"], stats["retries"]) == (1000, 0, 0)
    assert fake.max_in_flight <= 4
    assert logging_took < 2.0, f"logging 1000 records took {logging_took:.2f} s against a slow endpoint"
    tally(handler, faults=len(oks), delivered=len(expected))


OUTAGES = {
    "503": lambda fake, proxy: fake.set_outage(Fault.error("ServiceUnavailableException", 503)),
    "reset": lambda fake, proxy: fake.set_outage(Fault.reset()),
    "throttling": lambda fake, proxy: fake.set_outage(Fault.error("ThrottlingException", 400, "Rate exceeded")),
    "refused": lambda fake, proxy: proxy.down(),
}


@pytest.mark.parametrize("outage, on_full", [
    ("503", "drop_oldest"), ("reset", "drop_oldest"), ("throttling", "drop_newest"), ("refused", "drop_oldest"),
])
def test_full_outage_then_recovery_keeps_exactly_what_fits(fake, make_handler, logger, capfd, outage, on_full):
    """One worker, batches of 10, a buffer of 25: during the outage the sender holds two batches (one being
    retried, one queued: ``free_slots`` is 2 * max_concurrency), which count against the bound, so the buffer
    takes 5 more records, and every other record is an exact ``buffer_full`` drop chosen by the policy."""
    precreate(fake.endpoint_url)
    proxy = FaultProxy(fake.endpoint_url).start()
    try:
        handler = make_handler(proxy.url, on_full=on_full, max_concurrency=1, max_batch_count=10,
                               max_buffer_records=25, flush_interval=3600)
        logger.addHandler(handler)
        base = now_ms() - 60_000
        logged = [(base + i, f"r{i}") for i in range(1020)]

        outage_started = time.monotonic()
        OUTAGES[outage](fake, proxy)
        for ts, msg in logged[:10]:
            log_at(logger, ts, msg)
        assert wait_until(lambda: handler.stats()["buffered"] == 0 and handler.stats()["api_calls"] >= 1), \
            handler.stats()
        for ts, msg in logged[10:20]:
            log_at(logger, ts, msg)
        assert wait_until(lambda: handler.stats()["buffered"] == 0), handler.stats()  # second batch queued
        for ts, msg in logged[20:]:
            log_at(logger, ts, msg)
        stats = handler.stats()
        # The 20 records being sent count against the bound of 25: 5 more fit.
        assert stats["buffered"] == 5
        assert stats["dropped_by_reason"] == {"buffer_full": len(logged) - 25}

        # Retries bounded by backoff: at least a dozen calls, no more than the policy allows in that time.
        assert wait_until(lambda: handler.stats()["api_calls"] >= 12), handler.stats()
        calls, window = handler.stats()["api_calls"], time.monotonic() - outage_started
        assert calls <= max_calls(FAST_RETRY, window, concurrency=1), (calls, window)

        fake.set_outage(None)
        proxy.up()
        assert handler.flush(20)

        kept = logged[20:25] if on_full == "drop_newest" else logged[-5:]
        expected = logged[:20] + kept
        assert fake.events(GROUP, STREAM) == expected  # once each, in order, exactly the ones that fit
        stats = handler.stats()
        oks = ok_requests(fake)
        assert sum(r["count"] for r in oks) == 25
        assert stats["sent"] == 25 and stats["emitted"] == len(logged)
        assert stats["dropped_by_reason"] == {"buffer_full": len(logged) - 25}
        assert stats["api_calls"] == stats["retries"] + len(oks)  # each batch: one success, the rest retries
        if outage == "refused":
            assert fake.calls["PutLogEvents"] == len(oks)  # refused connections never reached the service
        else:
            assert fake.calls["PutLogEvents"] == stats["api_calls"]
        handler.close()
        err = capfd.readouterr().err
        assert f"buffer_full: {len(logged) - 25}" in err, err  # the loss is reported, not silent
        tally(handler, faults=stats["retries"], delivered=len(expected))
    finally:
        proxy.stop()


@pytest.mark.timeout(60)
def test_failed_attempts_leave_no_request_bodies_behind(make_handler, logger):
    """Memory stays bounded during an outage without waiting for the cyclic GC.

    A caught botocore error's traceback frames reference the request, body and
    all: each failed attempt used to leave its body in a reference cycle.
    """
    import gc
    import tracemalloc

    from cwlhandler import planner

    handler = make_handler(f"http://127.0.0.1:{free_port()}", max_concurrency=1, max_batch_count=500,
                           shutdown_timeout=0.5)
    logger.addHandler(handler)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        for i in range(500):
            logger.info("record %d %s", i, "x" * 200)
        assert wait_until(lambda: handler.stats()["api_calls"] >= 10), handler.stats()
        bodies = [t for t in tracemalloc.take_snapshot().traces
                  if t.size > 100_000 and t.traceback[0].filename == planner.__file__]
        # At most the one being sent right now (and its str before encoding); before the fix, one per attempt.
        assert len(bodies) <= 2, (len(bodies), handler.stats())
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
        handler.close()
    assert handler.stats()["dropped_by_reason"] == {"shutdown": 500}


# =================================================================================================================
# 2. Exit, in real subprocesses
# =================================================================================================================
EXIT_SCRIPT = """
import atexit, sys, time
# Registered before logging is imported, so it runs after logging.shutdown(): the library's exit work is done.
atexit.register(lambda: print("ATEXIT-END", repr(time.monotonic()), flush=True))
import logging
from cwlhandler import CloudWatchLogsHandler
handler = CloudWatchLogsHandler({group!r}, log_stream={stream!r}, endpoint_url={url!r}, region_name="us-east-1",
                                flush_interval=60, shutdown_timeout={shutdown_timeout!r})
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range({count}):
    record = log.makeRecord("app", logging.INFO, "app.py", 1, "exit record %d", (i,), None)
    record.created = ({base} + i + 0.5) / 1000
    log.handle(record)
print("LAST-LOG", repr(time.monotonic()), flush=True)
"""


def run_exit_script(url: str, stream: str, shutdown_timeout: float, count: int, base: int) -> Tuple[float, float, str]:
    """Run EXIT_SCRIPT; return (seconds from its last log call to the end of its exit hooks, seconds from its
    last log call to process exit, stderr).

    The child prints ``time.monotonic()`` right after its last log call and again from an atexit hook that
    runs after ``logging.shutdown()``; CLOCK_MONOTONIC is system-wide on Linux, so the parent's reading when
    ``wait()`` returns is on the same clock.  The difference between the two is interpreter teardown.
    """
    script = textwrap.dedent(EXIT_SCRIPT).format(group=GROUP, stream=stream, url=url, count=count, base=base,
                                                 shutdown_timeout=shutdown_timeout)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=err,
                                env=subprocess_env(), text=True)
        try:
            line = proc.stdout.readline()
            received = time.monotonic()
            rest = proc.stdout.read()
            proc.wait(timeout=60)
            ended = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{stderr}"
    for bad in ("Traceback", "Exception ignored", "Fatal Python error"):
        assert bad not in stderr, stderr
    assert line.startswith("LAST-LOG"), (line, stderr)
    last_log = float(line.split()[1])
    hooks_done = float(rest.split("ATEXIT-END", 1)[1].split()[0])
    assert last_log <= received and hooks_done <= ended
    return hooks_done - last_log, ended - last_log, stderr


TEARDOWN_ALLOWANCE = 1.0
DOWN = {
    "refused": lambda fake: f"http://127.0.0.1:{free_port()}",
    "503": lambda fake: (fake.set_outage(Fault.error("ServiceUnavailableException", 503)), fake.endpoint_url)[1],
    # accepts the connection, never answers: the handler's own client would wait 20 s for it
    "blackhole": lambda fake: (fake.set_outage(Fault.hang(60)), fake.endpoint_url)[1],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("down", sorted(DOWN))
def test_process_with_endpoint_down_exits_within_shutdown_timeout_plus_one_second(fake, down):
    url = DOWN[down](fake)
    shutdown_timeout, count = 1.0, 200
    hooks, took, stderr = run_exit_script(url, "exit-down", shutdown_timeout, count, now_ms() - 60_000)
    EXIT_TIMES[f"endpoint down ({down}): exit hooks done"] = hooks
    EXIT_TIMES[f"endpoint down ({down}): process gone"] = took
    # The library's part (its exit hooks: the threading-exit flush, then logging.shutdown's flush and close)
    # ends within shutdown_timeout + 1 s; measured 1.01-1.07 s.
    assert hooks < shutdown_timeout + 1.0, f"exit hooks ended {hooks:.3f} s after the last log call"
    # What follows is interpreter teardown, ~0.45 s for any process that made a boto3 client on an idle
    # 2-core machine (0.2-0.6 s here), and seconds more under load: the whole exit measured 1.26-1.67 s idle,
    # up to 3.1 s at load average 9.  One further second is allowed for that teardown, no more.
    assert took < shutdown_timeout + 1.0 + TEARDOWN_ALLOWANCE, f"exit took {took:.3f} s after the last log call"
    # A request written and never answered may have been stored: "shutdown_in_flight", not "shutdown".
    reason = "shutdown_in_flight" if down == "blackhole" else "shutdown"
    assert f"dropped {count} log events ({reason}: {count})" in stderr, stderr
    assert GROUP not in fake.groups()  # nothing was stored by the failing requests
    tally(None, logged=count, faults=1)
    FIGURES["dropped: shutdown"] += count


@pytest.mark.timeout(60)
def test_process_with_endpoint_up_delivers_everything_before_exit(fake):
    fake.inject("PutLogEvents", *[Fault.error("ThrottlingException")] * 3, Fault.reset(), Fault.delay(0.3))
    base, count = now_ms() - 60_000, 3000
    hooks, took, stderr = run_exit_script(fake.endpoint_url, "exit-up", 10, count, base)
    EXIT_TIMES["endpoint up, 3000 records, 5 faults: exit hooks done"] = hooks
    EXIT_TIMES["endpoint up, 3000 records, 5 faults: process gone"] = took
    assert fake.events(GROUP, "exit-up") == [(base + i, f"exit record {i}") for i in range(count)]
    assert "dropped" not in stderr, stderr
    assert took < 10
    tally(None, logged=count, delivered=count, faults=5, calls=fake.calls["PutLogEvents"])


# =================================================================================================================
# 3. Concurrency and fork
# =================================================================================================================
@pytest.mark.timeout(60)
def test_sixteen_threads_logging_at_once_route_every_record_once_in_order(fake, make_handler, logger):
    threads_n, per_thread = 16, 1000
    faults = [Fault.error("ThrottlingException")] * 8 + [Fault.reset(), Fault.error("InternalFailure", 500)]
    precreate(fake.endpoint_url, GROUP, *[f"w{t:02d}/{lvl}" for t in range(16) for lvl in ("INFO", "WARNING")])
    fake.inject("PutLogEvents", *faults)
    handler = make_handler(fake.endpoint_url, log_stream="{thread}/{level}", max_concurrency=4,
                           max_batch_count=200, flush_interval=0.05)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    barrier = threading.Barrier(threads_n)
    expected: Dict[str, List[Tuple[int, str]]] = collections.defaultdict(list)
    errors: List[BaseException] = []

    def run(t: int) -> None:
        try:
            barrier.wait()
            name = threading.current_thread().name
            for i in range(per_thread):
                level = logging.WARNING if i % 3 == 0 else logging.INFO
                ts = base + i * threads_n + t  # unique across threads, increasing within one
                expected[f"{name}/{logging.getLevelName(level)}"].append(
                    log_at(logger, ts, "%s record %d", name, i, level=level))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,), name=f"w{t:02d}") for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not errors and not any(w.is_alive() for w in workers)
    assert handler.flush(30)

    # Every stream is exactly the one its template names for its records, holding them once, in order.
    assert fake.streams(GROUP) == sorted(expected)
    for stream, records in expected.items():
        assert fake.events(GROUP, stream) == records, stream
    stats = handler.stats()
    total = threads_n * per_thread
    assert (stats["emitted"], stats["sent"], stats["dropped"]) == (total, total, 0)
    assert stats["retries"] == len(faults)
    tally(handler, faults=len(faults), delivered=total)


def _mp_child(logger_name: str, child: int, count: int) -> None:
    log = logging.getLogger(logger_name)
    for i in range(count):
        log.info("child %d record %d", child, i)


def _sources(messages: List[str]) -> Dict[str, List[int]]:
    """Group 'parent pre 3', 'child 1 record 5'... by source; the last number is the sequence."""
    by: Dict[str, List[int]] = collections.defaultdict(list)
    for m in messages:
        head, _, n = m.rpartition(" ")
        by[head].append(int(n))
    return by


@needs_fork
@pytest.mark.timeout(60)
def test_multiprocessing_fork_under_load_with_requests_in_flight_duplicates_nothing(fake, make_handler, logger):
    """The parent has a batch held in flight, a buffer, and two threads logging while it forks three children
    into one shared stream: any record a child re-sent from the parent's state would appear twice."""
    precreate(fake.endpoint_url, GROUP, "shared")
    handler = make_handler(fake.endpoint_url, log_stream="shared", max_concurrency=1, flush_interval=0.05)
    logger.addHandler(handler)
    for i in range(20):
        logger.info("parent pre %d", i)
    assert handler.flush(10)
    gate = fake.gate()
    try:
        for i in range(50):
            logger.info("parent inflight %d", i)
        handler.flush(0)
        assert fake.wait_for_in_flight(1)
        stop = threading.Event()
        counts = [0, 0]

        def background(t: int) -> None:
            while not stop.is_set():
                logger.info("parent bg %d %d", t, counts[t])
                counts[t] += 1
                time.sleep(0.0005)  # pacing the load, not synchronisation

        bg = [threading.Thread(target=background, args=(t,), daemon=True) for t in range(2)]
        for t in bg:
            t.start()
        assert wait_until(lambda: min(counts) >= 20), counts  # both threads are logging while we fork
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_mp_child, args=(logger.name, c, 300)) for c in range(3)]
        for p in children:
            p.start()
    finally:
        gate.set()
    for p in children:
        p.join(30)
        assert p.exitcode == 0, p.exitcode
    stop.set()
    for t in bg:
        t.join(10)
    assert handler.flush(20)

    stored = [m for _, m in fake.events(GROUP, "shared")]
    assert_no_duplicates(stored)
    expected = {"parent pre": list(range(20)), "parent inflight": list(range(50)),
                "parent bg 0": list(range(counts[0])), "parent bg 1": list(range(counts[1]))}
    expected.update({f"child {c} record": list(range(300)) for c in range(3)})
    assert dict(_sources(stored)) == expected  # each process's records once, each source in order
    assert handler.stats()["sent"] == 70 + sum(counts)
    tally(handler, delivered=len(stored), logged=len(stored))


PREFORK_MASTER = """
import logging, os, sys, threading, time
from cwlhandler import CloudWatchLogsHandler
handler = CloudWatchLogsHandler({group!r}, log_stream="prefork", endpoint_url={url!r}, region_name="us-east-1",
                                flush_interval=0.05, shutdown_timeout=10, max_concurrency=1)
log = logging.getLogger("app")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(20):
    log.info("master pre %d", i)
print("READY", flush=True)
sys.stdin.readline()  # the test saw the master's batch held in flight
stop = threading.Event()
counts = [0, 0]
def background(t):
    while not stop.is_set():
        log.info("master bg %d %d", t, counts[t])
        counts[t] += 1
        time.sleep(0.0005)
threads = [threading.Thread(target=background, args=(t,), daemon=True) for t in range(2)]
for t in threads:
    t.start()
while min(counts) < 20:
    time.sleep(0.001)
pids = []
for worker in range({workers}):
    pid = os.fork()
    if pid == 0:
        for i in range({per_worker}):
            log.info("worker %d record %d", worker, i)
        sys.exit(0)  # a normal interpreter exit, as a gunicorn worker does
    pids.append(pid)
print("FORKED", flush=True)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
stop.set()
for t in threads:
    t.join()
log.info("master after 0")
print("COUNTS", counts[0], counts[1], codes, flush=True)
"""


@needs_fork
@pytest.mark.timeout(60)
def test_prefork_master_with_threads_and_requests_in_flight_duplicates_nothing(fake):
    """gunicorn-style, in a real process: the master logs (a batch held in flight), keeps two threads
    logging, forks workers that log and exit normally; everything lands once in one shared stream."""
    workers, per_worker = 3, 300
    gate = fake.gate()
    script = textwrap.dedent(PREFORK_MASTER).format(group=GROUP, url=fake.endpoint_url, workers=workers,
                                                    per_worker=per_worker)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, env=subprocess_env(), text=True)
        try:
            assert proc.stdout.readline().strip() == "READY"
            assert fake.wait_for_in_flight(1, timeout=10)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "FORKED"
            gate.set()
            out = proc.stdout.read()
            proc.wait(timeout=40)
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    counts_line = next(line for line in out.splitlines() if line.startswith("COUNTS"))
    _, bg0, bg1, codes = counts_line.split(" ", 3)
    assert codes == str([0] * workers)

    stored = [m for _, m in fake.events(GROUP, "prefork")]
    assert_no_duplicates(stored)
    expected = {"master pre": list(range(20)), "master after": [0],
                "master bg 0": list(range(int(bg0))), "master bg 1": list(range(int(bg1)))}
    expected.update({f"worker {w} record": list(range(per_worker)) for w in range(workers)})
    assert dict(_sources(stored)) == expected
    assert fake.streams(GROUP) == ["prefork"]
    tally(None, logged=len(stored), delivered=len(stored), calls=fake.calls["PutLogEvents"])


# =================================================================================================================
# 4. Bad input
# =================================================================================================================
class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class _BadStrAndRepr(_BadStr):
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ refuses")


class _ExplodingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "explode", False):
            raise ValueError("the formatter exploded")
        return super().format(record)


def test_bad_input_never_raises_and_ends_delivered_or_counted(fake, make_handler, logger, capfd):
    fake.inject("PutLogEvents", Fault.error("ThrottlingException"), Fault.error("InternalFailure", 500))
    handler = make_handler(fake.endpoint_url, flush_interval=3600)
    handler.setFormatter(_ExplodingFormatter("%(message)s"))
    logger.addHandler(handler)
    now = now_ms()
    unformattable = [
        lambda: logger.info("%d items", "not a number"),
        lambda: logger.info("%(missing)s", {"present": 1}),
        lambda: logger.info("%s and %s", "only one"),
        lambda: logger.info(_BadStr()),
        lambda: logger.info(_BadStrAndRepr()),
        lambda: logger.info("fine text", extra={"explode": True}),
    ]
    for call in unformattable:
        call()
    exact = {
        12345: "12345",
        None: "None",
        3.5: "3.5",
        b"\xff\xfe not utf-8": "b'\\xff\\xfe not utf-8'",
        "lone \ud800 surrogate": "lone \ufffd surrogate",
        b"caf\xe9 latin-1".decode("utf-8", "surrogateescape"): "caf\ufffd latin-1",
        "nul \x00 inside \x00": "nul \x00 inside \x00",
        "": EMPTY_MESSAGE,
        "  ": "  ",
    }
    for msg in exact:
        logger.info(msg)
    logger.info({"structured": ["data", 1]})
    ascii_5mb = "a" * (5 * 2**20)
    euro_5mb = "€" * (5 * 2**20 // 3)
    logger.info(ascii_5mb)
    logger.info(euro_5mb)
    try:
        raise KeyError("with traceback")
    except KeyError:
        logger.exception("failed")
    log_at(logger, now - 15 * DAY_MS, "fifteen days old")
    log_at(logger, now + 3 * HOUR_MS, "three hours ahead")
    span = [log_at(logger, now - 30 * HOUR_MS + h * HOUR_MS, "span hour %d", h) for h in range(31)]
    assert handler.flush(30)

    stored = [m for _, m in fake.events(GROUP, STREAM)]
    stats = handler.stats()
    emitted = len(unformattable) + len(exact) + 1 + 2 + 1 + 2 + len(span)
    assert stats["emitted"] == emitted
    assert stats["dropped_by_reason"] == {"too_old": 1, "too_new": 1}
    assert stats["sent"] == len(stored) == emitted - 2
    assert stats["format_errors"] == len(unformattable)
    assert fake.refusals == []  # no request failed as a whole
    for m in stored:
        assert 0 < len(m.encode("utf-8")) <= LIMIT
    counts = collections.Counter(stored)
    for want in exact.values():
        assert counts[want] == 1, want
    assert counts["{'structured': ['data', 1]}"] == 1
    marks = [m for m in stored if m.startswith("[unformattable log record]")]
    assert len(marks) == len(unformattable)
    assert all(f"{logger.name} {__file__}:" in m for m in marks)  # names the call site
    assert any(m.endswith(": RuntimeError") for m in marks)  # __str__ and __repr__ both failing
    assert any("the formatter exploded" in m for m in marks)
    truncated = [m for m in stored if m.endswith(" bytes]") and "[... truncated " in m]
    assert len(truncated) == 2
    for m in truncated:
        head, _, tail = m.rpartition(" [... truncated ")
        original = ascii_5mb if head.startswith("a") else euro_5mb
        assert original.startswith(head) and len(head.encode()) + int(tail.split()[0]) == len(original.encode())
    assert any(m.startswith("failed\nTraceback") and "KeyError: 'with traceback'" in m for m in stored)
    assert [m for m in stored if m.startswith("span hour")] == [f"span hour {h}" for h in range(31)]
    assert all(r["last_ts"] - r["first_ts"] <= DAY_MS for r in ok_requests(fake))
    assert "fifteen days old" not in counts and "three hours ahead" not in counts
    err = capfd.readouterr().err
    # The stdlib's handleError report, once per unformattable record, naming the call site.
    assert err.count("--- Logging error ---") == len(unformattable), err
    tally(handler, faults=2, delivered=len(stored))


BIG = "0123456789€" * (5 * 2**20 // 13 + 1)  # multibyte, just over 5 MiB in UTF-8


@pytest.mark.timeout(60)
@pytest.mark.parametrize("policy", ["split", "drop"])
def test_five_megabyte_message_by_oversize_policy(fake, make_handler, logger, policy):
    handler = make_handler(fake.endpoint_url, oversize=policy, max_concurrency=1, flush_interval=3600)
    logger.addHandler(handler)
    nbytes = len(BIG.encode())
    assert nbytes > 5 * 2**20
    logger.info(BIG)
    logger.info("after")
    assert handler.flush(30)
    stored = [m for _, m in fake.events(GROUP, STREAM)]
    assert fake.refusals == []
    assert stored[-1] == "after"
    if policy == "split":
        assert len(stored) - 1 == -(-nbytes // LIMIT)  # six pieces, each as large as allowed
        assert "".join(stored[:-1]) == BIG
        assert all(len(m.encode()) <= LIMIT for m in stored)
        assert handler.stats()["dropped_by_reason"] == {}
    else:
        assert stored == ["after"]
        assert handler.stats()["dropped_by_reason"] == {"oversize": 1}
    tally(handler, delivered=len(stored))


@pytest.mark.timeout(60)
def test_split_pieces_of_one_record_stay_in_order_with_parallel_senders(fake, make_handler, logger):
    precreate(fake.endpoint_url)
    # The first request to arrive (one of pieces 1-4: four workers take them first) answers a second late;
    # pieces 5 and 6 are sent meanwhile.  Only a sender that keeps the pieces in sequence survives this.
    fake.inject("PutLogEvents", Fault.delay(1.0))
    handler = make_handler(fake.endpoint_url, oversize="split", max_concurrency=4, flush_interval=3600)
    logger.addHandler(handler)
    logger.info(BIG)
    assert handler.flush(30)
    stored = [m for _, m in fake.events(GROUP, STREAM)]
    assert len(stored) == 6
    in_order = "".join(stored) == BIG  # (no 5 MB diff in the report)
    assert in_order, [m[:12] for m in stored]


def test_non_finite_timestamp_is_counted_not_lost(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    for created in (float("nan"), float("inf")):
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "bad clock", (), None)
        record.created = created
        logger.handle(record)  # never raises (handleError), but must be delivered or counted
    logger.info("fine")
    assert handler.flush(10)
    stats = handler.stats()
    assert stats["emitted"] == 3
    assert stats["sent"] + stats["dropped"] == 3


def test_group_that_cannot_be_created_is_reported_once_retried_slowly_then_delivered(fake, make_handler, logger,
                                                                                       capfd):
    denied = 6
    fake.inject("CreateLogGroup", *[Fault.error(
        "AccessDeniedException", 400,
        "User: arn:aws:iam::123456789012:user/app is not authorized to perform: logs:CreateLogGroup")] * denied)
    handler = make_handler(fake.endpoint_url, max_concurrency=1, flush_interval=0.05)
    logger.addHandler(handler)
    base = now_ms() - 60_000
    expected = [log_at(logger, base + i, "denied %d", i) for i in range(30)]
    started = time.monotonic()
    assert handler.flush(20)  # permission "granted" once the injected refusals are used up
    elapsed = time.monotonic() - started

    assert fake.events(GROUP, STREAM) == expected
    assert fake.calls["CreateLogGroup"] == denied + 1
    assert elapsed >= denied * FAST_RETRY.slow  # the slow operator pace, never a tight loop
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "AccessDeniedException" in line]
    assert len(lines) == 1, err  # once, not once per attempt
    assert GROUP in lines[0] and "logs:CreateLogGroup" in lines[0] and "IAM" in lines[0]
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"]) == (30, 0)
    tally(handler, faults=denied, delivered=len(expected))


def test_group_that_can_never_be_created_ends_in_counted_shutdown_drops(fake, make_handler, logger, capfd):
    fake.inject("CreateLogGroup", *[Fault.error("AccessDeniedException", 400, "not authorized")] * 1000)
    handler = make_handler(fake.endpoint_url, shutdown_timeout=0.5, flush_interval=0.05)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("never %d", i)
    assert wait_until(lambda: fake.calls["CreateLogGroup"] >= 2), fake.calls
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 0.5 + 1.0
    stats = handler.stats()
    assert stats["dropped_by_reason"] == {"shutdown": 30} and stats["sent"] == 0
    err = capfd.readouterr().err
    assert err.count("AccessDeniedException") == 1
    assert "dropped 30 log events (shutdown: 30)" in err
    assert GROUP not in fake.groups()
    tally(handler, faults=fake.calls["CreateLogGroup"])


@pytest.mark.parametrize("kwargs, setting", [
    ({"max_buffer_bytes": 10}, "max_buffer_bytes"),
    ({"max_concurrency": 65}, "max_concurrency"),
    ({"max_batch_count": True}, "max_batch_count"),
    ({"max_batch_count": 1.5}, "max_batch_count"),
    ({"flush_interval": "nan"}, "flush_interval"),
    ({"shutdown_timeout": -1}, "shutdown_timeout"),
    ({"shutdown_timeout": float("nan")}, "shutdown_timeout"),
    ({"log_stream": None}, "log_stream"),
    ({"endpoint_url": "127.0.0.1:4566"}, "endpoint_url"),
    ({"endpoint_url": "http://"}, "endpoint_url"),
    ({"endpoint_url": "file:///etc/passwd"}, "endpoint_url"),
    ({"max_buffer_records": float("inf")}, "max_buffer_records"),
])
def test_more_invalid_configuration_fails_at_construction_with_value_error(kwargs, setting):
    kwargs.setdefault("log_group", "good")
    with pytest.raises(ValueError, match=setting):
        CloudWatchLogsHandler(region_name="us-east-1", **kwargs)


# =================================================================================================================
# 5. Security
# =================================================================================================================
ACCESS_KEY = "AKIAFAKEKEYID0000000"
SECRET_KEY = "FAKE/SECRET+ACCESS/KEY0000000000000000x"
SESSION_TOKEN = "FAKE-SESSION-TOKEN-XYZ"
SECRETS = (SECRET_KEY, SESSION_TOKEN, "Signature=")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self, prefix: str) -> List[str]:
        out = []
        for r in self.records:
            if r.name == prefix or r.name.startswith(prefix + "."):
                try:
                    out.append(r.getMessage())
                except Exception:
                    out.append(repr(r.msg))
        return out


@pytest.fixture
def collect_library_logs():
    collect = Collect()
    saved = {}
    for name in ("botocore", "urllib3", "cwlhandler"):
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.setLevel(logging.DEBUG)
        lg.addHandler(collect)
    yield collect
    for name, level in saved.items():
        lg = logging.getLogger(name)
        lg.removeHandler(collect)
        lg.setLevel(level)


def session_with_token() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                 aws_session_token=SESSION_TOKEN, region_name="us-east-1")


def assert_clean(where: str, texts: Iterable[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} appears in {where}: {text[:300]!r}"


def test_no_credential_token_or_signature_in_stderr_or_shipped_events(fake, make_handler, capfd,
                                                                       collect_library_logs, restore_logging):
    """Root logger at DEBUG with the handler on it, botocore at DEBUG, a session token in use: botocore's own
    DEBUG records (which carry the signed headers) must never be shipped, and nothing the library writes may
    carry a secret."""
    fake.inject("PutLogEvents", Fault.error("ThrottlingException"), Fault.reset(),
                Fault.error("UnrecognizedClientException", 400, "The security token included in the request is "
                                                                "invalid."))
    handler = make_handler(fake.endpoint_url, boto3_session=session_with_token(), log_stream="secure",
                           flush_interval=0.05)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    app = logging.getLogger("app.secure")
    try:
        for i in range(100):
            app.info("secure record %d", i)
        assert handler.flush(20)
    finally:
        root.removeHandler(handler)
    shipped = [m for _, m in fake.events(GROUP, "secure")]
    assert shipped == [f"secure record {i}" for i in range(100)]  # only the application's records
    err = capfd.readouterr().err
    assert "UnrecognizedClientException" in err  # the operator problem was reported...
    assert_clean("stderr", [err])  # ...without any secret
    assert_clean("shipped events", shipped)
    assert_clean("cwlhandler's own log records", collect_library_logs.texts("cwlhandler"))
    # Sensitivity: botocore did log signed requests on the shipping threads; none of them were shipped.
    assert any("Signature=" in t or SESSION_TOKEN in t for t in collect_library_logs.texts("botocore"))
    tally(handler, faults=3, delivered=len(shipped))


def test_signature_error_message_quoting_the_session_token_is_not_echoed(fake, make_handler, logger, capfd):
    # What the service answers to a mis-signed request (the canonical request quotes the signed headers).
    message = (
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String "
        "for this request should have been\n'POST\n/\n\ncontent-type:application/x-amz-json-1.1\n"
        "host:logs.us-east-1.amazonaws.com\nx-amz-date:20250101T000000Z\n"
        f"x-amz-security-token:{SESSION_TOKEN}\nx-amz-target:Logs_20140328.PutLogEvents\n\n"
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n")
    fake.inject("PutLogEvents", Fault.error("InvalidSignatureException", 400, message))
    handler = make_handler(fake.endpoint_url, boto3_session=session_with_token(), flush_interval=0.05)
    logger.addHandler(handler)
    logger.info("one")
    assert handler.flush(10)
    err = capfd.readouterr().err
    assert "InvalidSignatureException" in err
    assert_clean("stderr", [err])


def test_https_is_the_default_and_http_only_when_explicit(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    default = CloudWatchLogsHandler("good", region_name="us-east-1")
    try:
        assert default._make_client().meta.endpoint_url == "https://logs.us-east-1.amazonaws.com"
    finally:
        default.close()
    explicit = CloudWatchLogsHandler("good", region_name="us-east-1", endpoint_url="http://127.0.0.1:4566")
    try:
        assert explicit._make_client().meta.endpoint_url == "http://127.0.0.1:4566"
    finally:
        explicit.close()


def test_records_go_only_to_the_stream_their_template_names(fake, make_handler, logger):
    """{date} is the record's UTC day: records spanning 30 hours land in their own day's stream, and a
    record of another logger/level never lands in a stream named for a different one."""
    handler = make_handler(fake.endpoint_url, log_group="{level}-grp", log_stream="{logger}/{date}",
                           flush_interval=3600)
    logger.addHandler(handler)
    other = logging.getLogger(logger.name + ".other")
    now = now_ms()
    expected: Dict[Tuple[str, str], List[Tuple[int, str]]] = collections.defaultdict(list)
    for h in range(31):
        ts = now - 30 * HOUR_MS + h * HOUR_MS
        day = time.strftime("%Y-%m-%d", time.gmtime(ts / 1000))
        for log, level in ((logger, logging.INFO), (other, logging.ERROR)):
            entry = log_at(log, ts + (level // 10), "%s %s hour %d", log.name, logging.getLevelName(level), h,
                            level=level)
            expected[(f"{logging.getLevelName(level)}-grp", f"{log.name}/{day}")].append(entry)
    assert handler.flush(20)
    assert fake.groups() == sorted({g for g, _ in expected})
    for group in fake.groups():
        assert fake.streams(group) == sorted(s for g, s in expected if g == group)
    for (group, stream), records in expected.items():
        assert fake.events(group, stream) == records
    tally(handler, delivered=sum(len(r) for r in expected.values()))


# =================================================================================================================
# 6. Soak (opt-in)
# =================================================================================================================
SOAK = os.environ.get("CWL_SOAK") == "1"


@pytest.mark.skipif(not SOAK, reason="long soak: set CWL_SOAK=1 (and CWL_SOAK_SECONDS) to run")
@pytest.mark.timeout(0)
def test_soak_random_faults(make_handler, logger):
    seconds = float(os.environ.get("CWL_SOAK_SECONDS", "300"))
    rng = random.Random(int(os.environ.get("CWL_SOAK_SEED", "1")))
    kinds = [lambda: Fault.error("ThrottlingException"), lambda: Fault.error("ServiceUnavailableException", 503),
             lambda: Fault.error("InternalFailure", 500), Fault.reset, lambda: Fault.hang(1.0),
             lambda: Fault.delay(rng.uniform(0.05, 0.4))]
    with StrictFake() as fake:
        handler = make_handler(fake.endpoint_url, client=short_timeout_client(fake.endpoint_url),
                               log_stream="{thread}", max_batch_count=500, flush_interval=0.2)
        logger.addHandler(handler)
        base, stop, injected = now_ms() - 12 * HOUR_MS, threading.Event(), 0  # 8 ms of stamps per ms: room for ~1.5 h
        expected: Dict[str, List[Tuple[int, str]]] = collections.defaultdict(list)

        def run(t: int) -> None:
            name, i, local = threading.current_thread().name, 0, random.Random(t)
            while not stop.is_set():
                text = f"{name} {i} " + "é" * local.randrange(0, 500)
                expected[name].append(log_at(logger, base + i * 8 + t, text))
                i += 1
                if i % 10 == 0:
                    time.sleep(0.01)  # about 1,000 records/s per thread: the buffer outlasts any outage

        workers = [threading.Thread(target=run, args=(t,), name=f"soak{t}") for t in range(8)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if rng.random() < 0.05:
                fake.set_outage(Fault.error("ServiceUnavailableException", 503))
                time.sleep(rng.uniform(0.5, 3))
                fake.set_outage(None)
            else:
                n = rng.randrange(1, 20)
                fake.inject("PutLogEvents", *[rng.choice(kinds)() for _ in range(n)])
                injected += n
            time.sleep(rng.uniform(0.1, 1.0))
        stop.set()
        for w in workers:
            w.join()
        assert handler.flush(120)
        stats = handler.stats()
        total = sum(len(v) for v in expected.values())
        assert stats["emitted"] == total
        assert stats["sent"] + stats["dropped"] == total
        assert stats["dropped"] == 0, stats
        for stream, records in expected.items():
            assert fake.events(GROUP, stream) == records
        tally(handler, faults=injected, delivered=total)
