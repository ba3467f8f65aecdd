"""Lifecycle tests (issue points 7-10): flush, close, interpreter exit, fork safety, no feedback loop, no deadlock.

Every test talks real HTTP to the strict fake (tests/strict_fake.py) and compares what the fake stored with what
was logged, exactly.  Interpreter-exit tests run real subprocesses; fork tests fork this process.
"""
from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Tuple

import pytest

import cwlhandler
from cwlhandler import CloudWatchLogsHandler
from helpers import (
    assert_clean_exit,
    fork_running,
    free_port,
    needs_fork,
    read_events,
    run_script,
    wait_child,
    wait_until,
)
from strict_fake import Fault, delay

GROUP = "test-group"


# -- helpers --------------------------------------------------------------------------------------------------------
class Capture(logging.Filter):
    """Remembers (timestamp_ms, message) of every record the handler accepts: what the service must hold."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Tuple[int, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.seen.append((int(record.created * 1000), record.getMessage()))
        return True


def messages(events: List[Tuple[int, str]]) -> List[str]:
    return [message for _ts, message in events]


def log_and_flush(logger: logging.Logger, handler: CloudWatchLogsHandler, message: str) -> Callable[[], bool]:
    def work() -> bool:
        logger.info(message)
        return handler.flush(timeout=10)
    return work


# -- flush() ------------------------------------------------------------------------------------------------------
def test_flush_returns_true_and_everything_is_readable(fake, make_handler, logger):
    # A long flush_interval: only flush() can make these records go out in time.
    handler = make_handler(fake.endpoint_url, log_stream="flush", flush_interval=60)
    capture = Capture()
    handler.addFilter(capture)
    logger.addHandler(handler)
    for i in range(250):
        logger.info("flush record %d", i)

    assert handler.flush(timeout=10) is True

    assert read_events(fake.endpoint_url, GROUP, "flush") == capture.seen
    assert len(capture.seen) == 250
    stats = handler.stats()
    assert (stats["emitted"], stats["sent"], stats["dropped"], stats["buffered"]) == (250, 250, 0, 0)


def test_flush_times_out_while_requests_are_blocked_then_succeeds(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, log_stream="gated", flush_interval=60)
    capture = Capture()
    handler.addFilter(capture)
    logger.addHandler(handler)
    gate = fake.gate()
    try:
        for i in range(20):
            logger.info("gated record %d", i)
        started = time.monotonic()
        assert handler.flush(timeout=0.3) is False
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2.0, elapsed
        assert fake.wait_for_in_flight(1, timeout=5), "the PutLogEvents request never reached the fake"
        assert GROUP not in fake.groups() or "gated" not in fake.streams(GROUP) or fake.events(GROUP, "gated") == []
    finally:
        gate.set()

    assert handler.flush(timeout=10) is True
    assert fake.events(GROUP, "gated") == capture.seen
    assert len(capture.seen) == 20


# -- close() ------------------------------------------------------------------------------------------------------
def test_a_flush_that_gave_up_does_not_make_a_later_close_give_up_at_once(fake, make_handler, logger):
    """Issue 10, bug 2: a default flush() that timed out left a deadline that a later close() reused."""
    handler = make_handler(fake.endpoint_url, shutdown_timeout=0.5)
    logger.addHandler(handler)
    fake.set_outage(Fault.error("ServiceUnavailableException", 503))
    for i in range(5):
        logger.info("r%d", i)
    assert handler.flush() is False  # as before a Lambda function returns while the endpoint is down
    fake.set_outage(None)
    handler.close()
    assert messages(fake.events(GROUP, "test-stream")) == [f"r{i}" for i in range(5)]
    assert handler.stats()["dropped"] == 0


def test_close_is_idempotent_and_delivers(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, log_stream="close", flush_interval=60)
    capture = Capture()
    handler.addFilter(capture)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("close record %d", i)

    handler.close()
    assert fake.events(GROUP, "close") == capture.seen
    calls = dict(fake.calls)
    started = time.monotonic()
    handler.close()
    handler.close()
    assert time.monotonic() - started < 0.5
    assert dict(fake.calls) == calls, "a second close() made requests"

    # A record after close is counted, never sent, and never raises.
    logger.info("too late")
    assert fake.events(GROUP, "close") == capture.seen[:30]
    stats = handler.stats()
    assert stats["sent"] == 30
    assert stats["dropped_by_reason"] == {"closed": 1}


def test_idle_handler_closes_without_any_request(fake, make_handler):
    handler = make_handler(fake.endpoint_url, log_stream="idle")
    started = time.monotonic()
    handler.close()
    handler.close()
    assert time.monotonic() - started < 1.0
    assert sum(fake.calls.values()) == 0, dict(fake.calls)
    assert fake.groups() == []
    assert handler.stats()["emitted"] == 0


def test_close_with_unreachable_endpoint_returns_within_shutdown_timeout(make_handler, logger):
    url = f"http://127.0.0.1:{free_port()}"
    handler = make_handler(url, log_stream="unreachable", shutdown_timeout=1)
    logger.addHandler(handler)
    for i in range(120):
        logger.info("lost record %d", i)

    started = time.monotonic()
    handler.close()
    elapsed = time.monotonic() - started

    assert elapsed < 4.0, f"close() took {elapsed:.2f} s with shutdown_timeout=1"
    stats = handler.stats()
    assert stats["sent"] == 0
    assert stats["dropped_by_reason"]["shutdown"] == 120, stats
    assert stats["dropped"] == 120, stats


# -- interpreter exit ---------------------------------------------------------------------------------------------
EXIT_SCRIPT = """
import logging, sys, time
from cwlhandler import CloudWatchLogsHandler
handler = CloudWatchLogsHandler({group!r}, log_stream={stream!r}, endpoint_url={url!r}, region_name="us-east-1",
                                flush_interval=60, shutdown_timeout={shutdown_timeout!r})
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range({count}):
    log.info("exit record %d", i)
print(repr(time.time()), flush=True)
"""


@pytest.mark.timeout(90)
def test_interpreter_exit_delivers_5000_records_without_close(fake):
    result = run_script(EXIT_SCRIPT, group=GROUP, stream="exit-5000", url=fake.endpoint_url,
                        shutdown_timeout=10, count=5000)
    assert_clean_exit(result)
    assert messages(fake.events(GROUP, "exit-5000")) == [f"exit record {i}" for i in range(5000)]


@pytest.mark.timeout(90)
def test_interpreter_exit_delivers_a_single_record_logged_just_before_exit(fake):
    result = run_script(EXIT_SCRIPT, group=GROUP, stream="exit-one", url=fake.endpoint_url,
                        shutdown_timeout=10, count=1)
    assert_clean_exit(result)
    assert messages(fake.events(GROUP, "exit-one")) == ["exit record 0"]


@pytest.mark.timeout(90)
def test_interpreter_exit_with_unreachable_endpoint_is_bounded():
    # shutdown_timeout=2 so that waits stacked on top of each other cannot hide inside the 3 s margin.
    shutdown_timeout = 2
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script(EXIT_SCRIPT, group=GROUP, stream="exit-unreachable", url=url,
                        shutdown_timeout=shutdown_timeout, count=100)
    ended = time.time()
    assert_clean_exit(result)
    assert "shutdown: 100" in result.stderr, result.stderr  # the drop is reported, not silent
    last_log = float(result.stdout.strip().splitlines()[-1])
    exit_took = ended - last_log
    assert exit_took < shutdown_timeout + 3, f"exit took {exit_took:.2f} s after the last log call"


def test_gevent_patched_too_late_is_reported_as_such_not_as_credentials():
    """boto3 imported, then gevent patches ssl, then the handler: every new SSL context raises RecursionError."""
    result = run_script("""
        import logging
        import boto3
        from gevent import monkey
        monkey.patch_all()
        from cwlhandler import CloudWatchLogsHandler
        handler = CloudWatchLogsHandler("{group}", log_stream="late-gevent", region_name="us-east-1",
                                        endpoint_url="https://127.0.0.1:{port}", shutdown_timeout=0.5)
        handler.retry_policy.slow = 0.05
        log = logging.getLogger("app")
        log.addHandler(handler)
        log.warning("kept in the buffer, then counted at exit")
        assert not handler.flush(timeout=0.5)
        handler.close()
        print(handler.stats()["dropped_by_reason"])
    """, group=GROUP, port=free_port())
    assert_clean_exit(result)
    assert "gevent patched ssl after botocore had imported it" in result.stderr, result.stderr
    assert "monkey.patch_all() before anything imports" in result.stderr, result.stderr
    assert "Check the credentials" not in result.stderr, result.stderr
    assert result.stdout.strip() == "{'shutdown': 1}", result.stdout


def test_logging_shutdown_with_unreachable_endpoint_is_bounded(make_handler, logger):
    """logging.shutdown() calls flush() then close(); together they must stay within shutdown_timeout."""
    url = f"http://127.0.0.1:{free_port()}"
    handler = make_handler(url, log_stream="unreachable", shutdown_timeout=1)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("lost record %d", i)

    started = time.monotonic()
    logging.shutdown([lambda: handler])  # what atexit runs, restricted to this handler
    elapsed = time.monotonic() - started

    stats = handler.stats()
    assert stats["dropped_by_reason"].get("shutdown") == 50, stats
    assert elapsed < 1 + 0.75, f"logging.shutdown() took {elapsed:.2f} s with shutdown_timeout=1"


# -- fork safety ----------------------------------------------------------------------------------------------------
@needs_fork
@pytest.mark.timeout(60)
def test_forked_child_gets_its_own_pipeline_and_never_resends_parent_records(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, log_stream="{pid}", flush_interval=60)
    capture = Capture()
    handler.addFilter(capture)
    logger.addHandler(handler)
    logger.info("A")
    assert handler.flush(timeout=10)
    logger.info("B")
    assert handler.stats()["buffered"] == 1  # B waits in the parent's buffer at fork time

    pid = fork_running(log_and_flush(logger, handler, "C"))
    assert wait_child(pid, 30) == 0
    logger.info("D")
    assert handler.flush(timeout=10)

    parent, child = str(os.getpid()), str(pid)
    assert fake.streams(GROUP) == sorted([parent, child])
    assert messages(fake.events(GROUP, child)) == ["C"]
    assert fake.events(GROUP, parent) == [e for e in capture.seen if e[1] in ("A", "B", "D")]
    assert messages(fake.events(GROUP, parent)) == ["A", "B", "D"]
    stats = handler.stats()
    assert (stats["emitted"], stats["sent"], stats["dropped"]) == (3, 3, 0)


@needs_fork
@pytest.mark.timeout(60)
def test_a_forked_child_gets_its_own_uuid(fake, make_handler, logger):
    """{uuid} names one process: a child must not write into the parent's stream."""
    handler = make_handler(fake.endpoint_url, log_stream="{uuid}")
    logger.addHandler(handler)
    logger.info("parent")
    assert handler.flush(timeout=10)
    pid = fork_running(log_and_flush(logger, handler, "child"))
    assert wait_child(pid, 30) == 0
    streams = fake.streams(GROUP)
    assert len(streams) == 2, streams
    assert sorted(messages(fake.events(GROUP, s))[0] for s in streams) == ["child", "parent"]


@needs_fork
@pytest.mark.timeout(60)
def test_fork_waits_for_the_shipping_threads_calls_under_way(fake, make_handler, logger):
    """A fork must not catch a shipping thread inside botocore/OpenSSL (its locks would stay held in the child)."""
    handler = make_handler(fake.endpoint_url, flush_interval=60)
    logger.addHandler(handler)
    logger.info("before")
    assert handler.flush(timeout=10)  # the stream exists: the next call is one PutLogEvents
    fake.inject("PutLogEvents", delay(0.3))
    logger.info("in flight at the fork")
    assert not handler.flush(timeout=0)  # asks for the send without waiting for it
    assert fake.wait_for_in_flight(1)
    pid = fork_running(lambda: True)
    in_flight_after_fork = fake.in_flight
    assert wait_child(pid, 30) == 0
    assert in_flight_after_fork == 0
    assert handler.flush(timeout=10)
    assert messages(fake.events(GROUP, "test-stream")) == ["before", "in flight at the fork"]


def _log_and_return(log: logging.Logger, count: int) -> None:
    for i in range(count):
        log.info("mp %d %d", os.getpid(), i)


@needs_fork
@pytest.mark.timeout(60)
def test_multiprocessing_fork_child_delivers_without_close(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, log_stream="{pid}", flush_interval=60)
    logger.addHandler(handler)
    logger.info("parent flushed")
    assert handler.flush(timeout=10)
    logger.info("parent buffered")

    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_log_and_return, args=(logger, 300))
    process.start()
    process.join(30)
    assert process.exitcode == 0, process.exitcode
    assert handler.flush(timeout=10)

    child = str(process.pid)
    assert fake.streams(GROUP) == sorted([str(os.getpid()), child])
    assert messages(fake.events(GROUP, child)) == [f"mp {child} {i}" for i in range(300)]
    assert messages(fake.events(GROUP, str(os.getpid()))) == ["parent flushed", "parent buffered"]


def _pool_task(args: Tuple[int, int]) -> int:
    task, count = args
    log = logging.getLogger("test.pool-worker")
    for i in range(count):
        log.info("task %d record %d pid %d", task, i, os.getpid())
    return os.getpid()


@needs_fork
@pytest.mark.timeout(60)
def test_multiprocessing_fork_pool_workers_deliver_on_exit(fake, make_handler):
    log = logging.getLogger("test.pool-worker")
    log.propagate, log.level = False, logging.INFO
    handler = make_handler(fake.endpoint_url, log_stream="{pid}", flush_interval=60)
    log.addHandler(handler)
    try:
        log.info("parent buffered")
        pool = multiprocessing.get_context("fork").Pool(2)
        try:
            pids = pool.map(_pool_task, [(task, 100) for task in range(4)], chunksize=1)
        finally:
            pool.close()  # workers return from their loop: no terminate, no SIGTERM
            pool.join()
        assert handler.flush(timeout=10)

        parent = str(os.getpid())
        assert messages(fake.events(GROUP, parent)) == ["parent buffered"]
        assert fake.streams(GROUP) == sorted({parent} | {str(p) for p in pids})
        delivered: Dict[str, List[str]] = {
            s: messages(fake.events(GROUP, s)) for s in fake.streams(GROUP) if s != parent}
        expected = {}
        for task, pid in enumerate(pids):
            expected.setdefault(str(pid), []).extend(f"task {task} record {i} pid {pid}" for i in range(100))
        # Tasks of one worker run in order, so each worker's stream is exactly its tasks' records in order.
        assert delivered == expected
    finally:
        log.removeHandler(handler)


@needs_fork
@pytest.mark.timeout(60)
def test_prefork_workers_each_deliver_once(fake, make_handler, logger):
    """gunicorn-style: a master that has logged forks workers; each exits through logging.shutdown()."""
    handler = make_handler(fake.endpoint_url, log_stream="{pid}", flush_interval=60)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("master %d", i)
    assert handler.flush(timeout=10)
    logger.info("master buffered before fork")

    workers = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                for i in range(200):
                    logger.info("worker %d record %d", worker, i)
                logging.shutdown()
                code = 0
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        workers.append(pid)

    for pid in workers:
        assert wait_child(pid, 30) == 0
    logger.info("master after workers")
    assert handler.flush(timeout=10)

    parent = str(os.getpid())
    assert fake.streams(GROUP) == sorted([parent] + [str(p) for p in workers])
    for worker, pid in enumerate(workers):
        assert messages(fake.events(GROUP, str(pid))) == [f"worker {worker} record {i}" for i in range(200)]
    assert messages(fake.events(GROUP, parent)) == (
        [f"master {i}" for i in range(10)] + ["master buffered before fork", "master after workers"])
    assert handler.stats()["sent"] == 12


# -- no feedback loop -------------------------------------------------------------------------------------------------
def test_no_feedback_loop_on_root_logger_at_debug(fake, make_handler, restore_logging):
    handler = make_handler(fake.endpoint_url, log_stream="root-debug", flush_interval=60)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("botocore", "urllib3", "cwlhandler"):  # make sure nothing upstream silences them
        logging.getLogger(name).setLevel(logging.NOTSET)
    app = logging.getLogger("app")
    try:
        for i in range(50):
            app.info("app record %d", i)
        assert handler.flush(timeout=10)
        stats = handler.stats()
    finally:
        root.removeHandler(handler)  # before anything else here talks HTTP on this thread

    # Read through the fake's store, not boto3, so reading cannot add records either.
    assert messages(fake.events(GROUP, "root-debug")) == [f"app record {i}" for i in range(50)]
    assert stats["emitted"] == 50, stats
    assert stats["sent"] == 50, stats


# -- no deadlock under the logging module lock -----------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_dictconfig_reconfiguration_closes_handler_without_deadlock(fake, restore_logging):
    first = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cloudwatch": {
                "class": "cwlhandler.CloudWatchLogsHandler",
                "level": "DEBUG",
                "log_group": GROUP,
                "log_stream": "dictconfig",
                "endpoint_url": fake.endpoint_url,
                "region_name": "us-east-1",
                "flush_interval": "0.05",
                "shutdown_timeout": "5",
            },
        },
        "root": {"level": "DEBUG", "handlers": ["cloudwatch"]},
    }
    logging.config.dictConfig(first)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, CloudWatchLogsHandler))
    capture = Capture()
    handler.addFilter(capture)
    app = logging.getLogger("app.dictconfig")
    for i in range(100):
        app.info("dictconfig record %d", i)

    # Reconfiguring without the handler closes it while dictConfig holds the logging module lock.
    started = time.monotonic()
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                               "root": {"level": "WARNING", "handlers": []}})
    elapsed = time.monotonic() - started

    assert handler not in logging.getLogger().handlers
    # The 5 s deadline reached would mean a deadlock; the delivery goes on after dictConfig returns.
    assert elapsed < 4.0, f"dictConfig took {elapsed:.2f} s to close the handler"
    assert cwlhandler.flush_all(timeout=10)  # waits for the closed handler's delivery, as the exit hook does
    stats = handler.stats()
    assert fake.events(GROUP, "dictconfig") == capture.seen
    assert len(capture.seen) == 100
    assert (stats["sent"], stats["dropped"]) == (100, 0), stats


@pytest.mark.timeout(60)
def test_a_handler_made_while_dictconfig_closes_ours_is_not_forgotten(fake, restore_logging):
    """Issue 11, item 6: close() released the logging lock while it waited for delivery.

    Another thread's handler registered in that window, and dictConfig then
    cleared logging's list of handlers: logging.shutdown never flushed it at exit.
    """
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"cloudwatch": {"class": "cwlhandler.CloudWatchLogsHandler", "log_group": GROUP,
                                    "log_stream": "forgotten", "endpoint_url": fake.endpoint_url,
                                    "region_name": "us-east-1", "flush_interval": "0.05"}},
        "root": {"level": "INFO", "handlers": ["cloudwatch"]},
    })
    ours = next(h for h in logging.getLogger().handlers if isinstance(h, CloudWatchLogsHandler))
    gate = fake.gate()  # our delivery waits in the fake, so close() has something to wait for
    logging.getLogger("app.forgotten").info("held")
    assert wait_until(lambda: fake.in_flight == 1)
    reconfigure = threading.Thread(target=logging.config.dictConfig, args=(
        {"version": 1, "disable_existing_loggers": False, "root": {"level": "INFO", "handlers": []}},))
    reconfigure.start()
    assert wait_until(lambda: ours._closed)  # dictConfig is inside our close()
    theirs: List[logging.Handler] = []
    maker = threading.Thread(target=lambda: theirs.append(logging.StreamHandler()))
    maker.start()
    maker.join(1.0)  # made now if close() let go of the lock; else once dictConfig is done
    gate.set()
    reconfigure.join(10)
    maker.join(10)
    registered = [ref() for ref in logging._handlerList]  # type: ignore[attr-defined]
    assert theirs and theirs[0] in registered, "dictConfig forgot another thread's handler"
    assert cwlhandler.flush_all(timeout=10)
    assert [m for _, m in fake.events(GROUP, "forgotten")] == ["held"]


REENTRANT_SCRIPT = """
import collections, logging
from cwlhandler import CloudWatchLogsHandler

handler = CloudWatchLogsHandler(log_group="{group}", log_stream="reentrant", endpoint_url="{url}",
                                region_name="us-east-1", flush_interval=0.05, shutdown_timeout=10)
log = logging.getLogger("app.reentrant")
log.propagate = False
log.addHandler(handler)
log.warning("first")  # starts the pipeline
buffer = handler._pipeline.buffer


class Interrupted(collections.deque):
    # Logs from inside the buffer's append, with its lock held, once: what a signal
    # handler that logs does when the signal lands there.
    fired = False

    def append(self, item):
        super().append(item)
        if not Interrupted.fired:
            Interrupted.fired = True
            log.warning("from a signal handler")


with buffer.changed:
    buffer._items = Interrupted(buffer._items)
log.warning("second")
handler.close()
print("STATS", handler.stats()["sent"], handler.stats()["dropped"])
"""


@pytest.mark.timeout(90)
def test_logging_from_a_signal_handler_inside_emit_does_not_deadlock(fake):
    # Deterministic stand-in for a signal arriving mid-append: a plain lock would wait for itself forever.
    try:
        result = run_script(REENTRANT_SCRIPT, group=GROUP, url=fake.endpoint_url)
    except subprocess.TimeoutExpired:
        pytest.fail("a record logged from inside emit (as by a signal handler) deadlocked the process")
    assert result.returncode == 0, result.stderr
    assert "STATS 3 0" in result.stdout, (result.stdout, result.stderr)
    assert sorted(m for _, m in fake.events(GROUP, "reentrant")) == ["first", "from a signal handler", "second"]


def test_flush_on_return_never_waits_past_the_invocations_remaining_time():
    from cwlhandler.lifecycle import LAMBDA_MARGIN, _lambda_budget

    class Context:
        def __init__(self, ms: int) -> None:
            self.ms = ms

        def get_remaining_time_in_millis(self) -> int:
            return self.ms

    assert _lambda_budget(Context(60_000), 2.0) == 2.0
    assert _lambda_budget(Context(1_200), 2.0) == pytest.approx(1.2 - LAMBDA_MARGIN)
    assert _lambda_budget(Context(100), 2.0) == 0.0
    assert _lambda_budget(None, 2.0) == 2.0  # no context (a local call): the timeout alone


def test_importing_cwlhandler_imports_neither_boto3_nor_ssl():
    """gevent must be able to patch ssl after the logging configuration imported cwlhandler."""
    result = run_script("""
        import sys
        import cwlhandler
        print(sorted(m for m in ("ssl", "boto3", "botocore.httpsession", "urllib3") if m in sys.modules))
    """)
    assert_clean_exit(result)
    assert result.stdout.strip() == "[]", result.stdout


class _FakeUwsgi:
    """The attributes of uWSGI's embedded ``uwsgi`` module that the handler reads."""

    def __init__(self, worker: int, options: Dict[str, object], has_threads: int = 1) -> None:
        self.opt, self.has_threads, self._worker = options, has_threads, worker

    def worker_id(self) -> int:
        return self._worker


@pytest.mark.parametrize("worker, options, at_once", [
    (0, {"master": True}, True),
    (0, {"master": b"true", "processes": b"2"}, True),
    (0, {"master": b"false"}, False),
    (1, {"master": True}, False),  # a worker
    (0, {}, False),  # no master: the one process serves
])
def test_only_uwsgis_master_ships_each_record_at_once(monkeypatch, worker, options, at_once):
    from cwlhandler import lifecycle

    monkeypatch.setitem(sys.modules, "uwsgi", _FakeUwsgi(worker, options))
    assert lifecycle.ships_at_once() is at_once


def test_uwsgi_without_python_threads_is_said_once(monkeypatch):
    from cwlhandler import lifecycle

    said = []

    class Reporter:
        def problem(self, key: str, text: str) -> None:
            said.append(text)

    monkeypatch.setitem(sys.modules, "uwsgi", _FakeUwsgi(1, {}, has_threads=0))
    lifecycle.check_threads_can_run(Reporter())
    monkeypatch.setitem(sys.modules, "uwsgi", _FakeUwsgi(1, {}, has_threads=1))
    lifecycle.check_threads_can_run(Reporter())
    assert len(said) == 1 and "--enable-threads" in said[0], said
