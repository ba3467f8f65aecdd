"""Delivery over real HTTP: moto's server and the strict fake, read back and compared exactly."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from cwlhandler.planner import DAY_MS, HOUR_MS, truncation_marker
from helpers import log_at, logs_client, read_events, wait_until
from strict_fake import Fault, StrictFake


def test_moto_round_trip_creates_group_and_stream(moto_url, make_handler, logger):
    handler = make_handler(moto_url, log_group="moto-group", log_stream="moto-stream")
    logger.addHandler(handler)
    sent = [f"record {i} ✓ ünïcode" for i in range(3000)]
    for text in sent:
        logger.info(text)
    assert handler.flush(20)
    assert [m for _, m in read_events(moto_url, "moto-group", "moto-stream")] == sent
    stats = handler.stats()
    assert (stats["emitted"], stats["sent"], stats["dropped"]) == (3000, 3000, 0)


def test_format_happens_on_the_callers_thread(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, flush_interval=3600)
    logger.addHandler(handler)
    args = {"n": 1}
    logger.info("value %s", args)
    args["n"] = 2  # mutated after the call: must not change what is shipped
    assert handler.flush(10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["value {'n': 1}"]


def test_sorting_time_rules_and_sizes_obey_every_rule(make_handler, logger):
    now = int(time.time() * 1000)
    fake = StrictFake().start()
    try:
        handler = make_handler(fake.endpoint_url, flush_interval=3600, max_event_bytes=4096)
        logger.addHandler(handler)
        expected = []
        drops = {"too_old": 0, "too_new": 0}
        # Out of order, spanning 30 hours, multibyte, near the event limit.
        for i in range(600):
            ts = now - (i * 7919 % 600) * 3 * 60_000  # 0..30 h ago, scrambled
            msg = f"{i} " + ("é" * ((i * 37) % 2030))
            log_at(logger, ts, msg)
            expected.append((ts, msg))
        for i in range(5):
            log_at(logger, now - 15 * DAY_MS - i, "too old")
            log_at(logger, now + 3 * HOUR_MS + i, "too new")
            drops["too_old"] += 1
            drops["too_new"] += 1
        assert handler.flush(20)
        stored = fake.events("test-group", "test-stream")
        assert fake.refusals == []
        assert sorted(stored, key=lambda e: e[0]) == sorted(expected, key=lambda e: e[0])
        assert all(r["last_ts"] - r["first_ts"] <= DAY_MS for r in fake.put_requests)
        assert handler.stats()["dropped_by_reason"] == drops
        assert handler.stats()["sent"] == 600
    finally:
        fake.stop()


def test_equal_timestamps_keep_emission_order(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, flush_interval=3600)
    logger.addHandler(handler)
    ts = int(time.time() * 1000)
    for i in range(100):
        log_at(logger, ts - (i % 2), f"m{i}")  # two timestamps, interleaved
    assert handler.flush(10)
    stored = [m for _, m in fake.events("test-group", "test-stream")]
    assert stored == [f"m{i}" for i in range(1, 100, 2)] + [f"m{i}" for i in range(0, 100, 2)]


@pytest.mark.parametrize("policy", ["truncate", "split", "drop"])
def test_oversize_policies(fake, make_handler, logger, policy):
    handler = make_handler(fake.endpoint_url, oversize=policy, max_event_bytes=1000, flush_interval=3600)
    logger.addHandler(handler)
    big = "ab€" * 400  # 2000 bytes, multibyte characters
    logger.info(big)
    logger.info("small")
    assert handler.flush(10)
    stored = [m for _, m in fake.events("test-group", "test-stream")]
    stats = handler.stats()
    assert fake.refusals == []
    if policy == "drop":
        assert stored == ["small"]
        assert stats["dropped_by_reason"] == {"oversize": 1}
    elif policy == "split":
        assert "".join(stored[:-1]) == big and stored[-1] == "small"
        assert all(len(m.encode()) <= 1000 - 26 for m in stored)
    else:
        head, small = stored
        kept = len(head.encode()) - len(truncation_marker(0).encode()) - 3  # marker digits differ
        assert small == "small"
        assert head.endswith(" bytes]") and big.startswith(head.split(" [... truncated")[0])
        cut = int(head.rsplit("truncated ", 1)[1].split()[0])
        assert len(head.split(" [... truncated")[0].encode()) + cut == len(big.encode())
        assert len(head.encode()) <= 1000 - 26 and kept > 0
        assert stats["sent"] == 2 and stats["dropped"] == 0


def test_empty_and_invalid_text_never_fail_a_request(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    logger.info("")
    logger.info("lone \ud800 surrogate")
    logger.info("nul \x00 byte")
    logger.info(12345)  # a non-string message
    assert handler.flush(10)
    assert fake.refusals == []
    assert [m for _, m in fake.events("test-group", "test-stream")] == [
        "(empty message)",
        "lone \ufffd surrogate",
        "nul \x00 byte",
        "12345",
    ]


def test_unformattable_records_are_shipped_as_such_and_never_raise(fake, make_handler, logger, capsys):
    class Bad:
        def __str__(self):
            raise RuntimeError("no str for you")

    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    logger.info("%d items", "not a number")
    logger.info(Bad())
    logger.info("fine")
    assert handler.flush(10)
    stored = [m for _, m in fake.events("test-group", "test-stream")]
    assert len(stored) == 3 and stored[2] == "fine"
    assert stored[0].startswith("[unformattable log record]") and "'%d items'" in stored[0]
    assert stored[1].startswith("[unformattable log record]") and "RuntimeError" in stored[1]
    assert handler.stats()["format_errors"] == 2
    assert "--- Logging error ---" in capsys.readouterr().err  # the stdlib's handleError report


def test_batches_of_one_stream_go_out_in_parallel(fake, make_handler, logger):
    client = logs_client(fake.endpoint_url)
    client.create_log_group(logGroupName="test-group")
    client.create_log_stream(logGroupName="test-group", logStreamName="test-stream")
    handler = make_handler(fake.endpoint_url, max_batch_count=10, max_concurrency=4, flush_interval=3600)
    logger.addHandler(handler)
    gate = fake.gate()
    now = int(time.time() * 1000)
    for i in range(100):
        log_at(logger, now + i, f"p{i}")  # distinct milliseconds: no batch must wait for another
    handler.flush(0)  # ask for a send now, do not wait
    assert fake.wait_for_in_flight(4)
    assert fake.in_flight == 4  # never more than max_concurrency
    gate.set()
    assert handler.flush(10)
    assert fake.max_in_flight == 4
    assert sorted(m for _, m in fake.events("test-group", "test-stream")) == sorted(f"p{i}" for i in range(100))
    assert fake.calls["PutLogEvents"] == 10


def test_throttling_and_server_errors_are_retried_with_backoff(fake, make_handler, logger):
    faults = [Fault.error("ThrottlingException")] * 5 + [Fault.error("ServiceUnavailableException", 503), Fault.reset()]
    fake.inject("PutLogEvents", *faults)
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("t%d", i)
    assert handler.flush(20)
    assert [m for _, m in fake.events("test-group", "test-stream")] == [f"t{i}" for i in range(50)]
    stats = handler.stats()
    assert stats["retries"] >= len(faults)
    assert stats["sent"] == 50 and stats["dropped"] == 0


def test_existing_group_created_by_a_racing_process_is_tolerated(fake, make_handler, logger):
    logs_client(fake.endpoint_url).create_log_group(logGroupName="test-group")
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    logger.info("x")
    assert handler.flush(10)
    assert fake.events("test-group", "test-stream") and handler.stats()["dropped"] == 0


def test_invalid_events_are_isolated_and_only_they_are_dropped(make_handler, logger, capsys):
    # The service refuses events over 500 bytes, the handler believes in 1 MiB.
    fake = StrictFake(max_event_bytes=500).start()
    try:
        handler = make_handler(fake.endpoint_url, flush_interval=3600)
        logger.addHandler(handler)
        expected = []
        for i in range(200):
            if i in (17, 18, 150):
                logger.info("x" * 600)
            else:
                logger.info("ok %d", i)
                expected.append(f"ok {i}")
        assert handler.flush(20)
        assert [m for _, m in fake.events("test-group", "test-stream")] == expected
        stats = handler.stats()
        assert stats["dropped_by_reason"] == {"rejected": 3}
        assert stats["sent"] == 197
        assert fake.calls["PutLogEvents"] < 40  # bisection, not one call per event
        assert "refused" in capsys.readouterr().err
    finally:
        fake.stop()


def test_rejected_events_info_is_counted_and_never_resent(make_handler, logger):
    now = int(time.time() * 1000)
    fake = StrictFake().start()
    try:
        client = logs_client(fake.endpoint_url)
        client.create_log_group(logGroupName="test-group")
        client.put_retention_policy(logGroupName="test-group", retentionInDays=1)
        client.create_log_stream(logGroupName="test-group", logStreamName="test-stream")
        handler = make_handler(fake.endpoint_url, flush_interval=3600)  # does not know the retention
        logger.addHandler(handler)
        for i in range(10):
            log_at(logger, now - 2 * DAY_MS + i, f"old {i}")
        for i in range(5):
            log_at(logger, now - i, f"new {i}")
        assert handler.flush(10)
        assert sorted(m for _, m in fake.events("test-group", "test-stream")) == [f"new {i}" for i in range(5)]
        stats = handler.stats()
        assert stats["dropped_by_reason"] == {"expired": 10}
        assert stats["sent"] == 5
        assert fake.calls["PutLogEvents"] == 2  # old and new events span > 24 h: two requests
    finally:
        fake.stop()


def test_retention_days_lets_the_planner_drop_expired_events(fake, make_handler, logger):
    now = int(time.time() * 1000)
    handler = make_handler(fake.endpoint_url, retention_days=1)
    logger.addHandler(handler)
    log_at(logger, now - 2 * DAY_MS, "expired")
    log_at(logger, now, "kept")
    assert handler.flush(10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["kept"]
    assert handler.stats()["dropped_by_reason"] == {"expired": 1}
    assert fake.retention("test-group") == 1


def test_bad_credentials_report_once_retry_slowly_and_keep_buffering(make_handler, logger, capsys):
    fake = StrictFake(access_key_ids={"AKIDGOOD"}).start()
    try:
        handler = make_handler(fake.endpoint_url, shutdown_timeout=0.5)
        logger.addHandler(handler)
        for i in range(20):
            logger.info("c%d", i)
        assert wait_until(lambda: sum(fake.calls.values()) >= 1, timeout=30), fake.calls
        first = sum(fake.calls.values())
        assert handler.flush(0.5) is False
        assert sum(fake.calls.values()) - first <= 10  # slow retries (0.1 s in tests), never a busy loop
        assert handler.stats()["buffered"] + 20 >= 20
        handler.close()
        err = capsys.readouterr().err
        assert err.count("UnrecognizedClientException") == 1
        assert "testing" not in err  # the (dummy) secret never appears
        assert handler.stats()["dropped_by_reason"] == {"shutdown": 20}
    finally:
        fake.stop()


def _fill_behind_a_held_sender(fake, make_handler, logger, on_full):
    """max_concurrency=1 and batches of 10: two batches are being sent and still count; 5 more fit."""
    handler = make_handler(
        fake.endpoint_url, on_full=on_full, max_concurrency=1, max_batch_count=10, max_buffer_records=25,
        flush_interval=3600,
    )
    logger.addHandler(handler)
    handler.gate = fake.gate()  # kept on the handler for the test to open
    for i in range(10):
        logger.info("a%d", i)
    assert wait_until(lambda: fake.in_flight == 1), fake.in_flight
    for i in range(10, 20):
        logger.info("a%d", i)
    assert wait_until(lambda: handler.stats()["buffered"] == 0), handler.stats()
    return handler


@pytest.mark.parametrize("on_full", ["drop_newest", "drop_oldest"])
def test_full_buffer_drops_exactly_by_policy(fake, make_handler, logger, on_full):
    handler = _fill_behind_a_held_sender(fake, make_handler, logger, on_full)
    for i in range(20, 60):
        logger.info("a%d", i)
    assert handler.stats()["dropped_by_reason"] == {"buffer_full": 35}
    handler.gate.set()
    assert handler.flush(10)
    kept = list(range(20, 25)) if on_full == "drop_newest" else list(range(55, 60))
    stored = [m for _, m in fake.events("test-group", "test-stream")]
    assert sorted(stored) == sorted(f"a{i}" for i in list(range(20)) + kept)
    assert handler.stats()["sent"] == 25


def test_block_policy_blocks_only_until_there_is_room(fake, make_handler, logger):
    import threading

    handler = _fill_behind_a_held_sender(fake, make_handler, logger, "block")
    done = threading.Event()

    def produce():
        for i in range(20, 60):
            logger.info("a%d", i)
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    assert wait_until(lambda: handler.stats()["buffered"] == 5), handler.stats()
    assert not done.is_set()  # blocked: the buffer is full and nothing can leave
    handler.gate.set()
    assert done.wait(10)
    thread.join()
    assert handler.flush(10)
    assert sorted(m for _, m in fake.events("test-group", "test-stream")) == sorted(f"a{i}" for i in range(60))
    assert handler.stats()["dropped"] == 0


def test_a_users_client_is_used_as_given_with_validation(fake, make_handler, logger):
    client = logs_client(fake.endpoint_url)  # parameter validation on: botocore sees the real events
    handler = make_handler(None, client=client)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("u%d", i)
    assert handler.flush(10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == [f"u{i}" for i in range(30)]


def test_own_encoder_falls_back_when_botocore_skips_the_hook(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    logger.info("first")
    assert handler.flush(10)
    client = handler._pipeline.deliverer.client()
    client.meta.events.unregister("before-call.cloudwatch-logs.PutLogEvents", unique_id="cwlhandler-body")
    logger.info("second")
    logger.info("third")
    assert handler.flush(10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["first", "second", "third"]
    assert len(fake.refusals) == 1  # the one empty request, then the plain path for good
    assert handler.stats()["dropped"] == 0


def test_data_already_accepted_counts_as_delivered(fake, make_handler, logger):
    fake.inject("PutLogEvents", Fault.error("DataAlreadyAcceptedException"))
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    logger.info("once")
    assert handler.flush(10)
    assert handler.stats()["sent"] == 1 and handler.stats()["dropped"] == 0
    assert fake.calls["PutLogEvents"] == 1  # not resent


def test_equal_timestamps_beyond_one_request_keep_their_order(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, max_batch_count=10, max_concurrency=4, flush_interval=3600)
    logger.addHandler(handler)
    now = int(time.time() * 1000)
    sent = [(now + i // 35, f"q{i}") for i in range(140)]  # runs of 35 equal timestamps, batches of 10
    for ts, msg in sent:
        log_at(logger, ts, msg)
    assert handler.flush(10)
    assert fake.events("test-group", "test-stream") == sent
    assert max(r["count"] for r in fake.put_requests) <= 10


@pytest.mark.parametrize("bound", ["max_buffer_records", "max_buffer_bytes"])
def test_a_buffer_smaller_than_a_request_ships_when_half_full(fake, make_handler, logger, bound):
    """Without this, a small buffer would fill and drop while the flusher waited for a request's worth."""
    limit = {"max_buffer_records": 100, "max_buffer_bytes": 100 * (100 + 26)}[bound]
    handler = make_handler(fake.endpoint_url, flush_interval=3600, **{bound: limit})
    logger.addHandler(handler)
    for i in range(60):
        logger.info("%03d %s", i, "x" * 96)  # 100 bytes each
    # No flush() and an hour-long interval: only being half full can make these due.
    assert wait_until(lambda: handler.stats()["sent"] >= 50), handler.stats()
    assert handler.stats()["dropped"] == 0
    assert handler.flush(10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == [f"{i:03d} {'x' * 96}" for i in range(60)]


@pytest.mark.parametrize("pause", [False, True], ids=["first-record", "after-idle"])
def test_a_lone_record_goes_out_after_flush_interval_not_at_the_idle_tick(fake, make_handler, logger, pause):
    """The flusher waits REPORT_TICK (5 s) when the buffer is empty; a record must start the flush_interval clock."""
    from cwlhandler.pipeline import REPORT_TICK

    handler = make_handler(fake.endpoint_url, flush_interval=0.05)
    logger.addHandler(handler)
    if pause:  # an idle handler: something was delivered, then nothing is buffered
        logger.info("earlier")
        assert handler.flush(timeout=10)
    logger.info("lone")

    def stored() -> bool:
        # the group is made before the stream: a poll between the two must not read a missing stream
        return ("test-group" in fake.groups() and "test-stream" in fake.streams("test-group")
                and "lone" in [m for _, m in fake.events("test-group", "test-stream")])

    assert wait_until(stored, REPORT_TICK / 2), "a lone record waited for the flusher's idle tick"


def test_a_record_with_a_broken_timestamp_is_routed_by_date_and_delivered(fake, make_handler, logger):
    """Issue 10, bug 10: {date} read record.created again, unguarded; a NaN lost the record uncounted."""
    handler = make_handler(fake.endpoint_url, log_stream="app/{date}")
    logger.addHandler(handler)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "broken clock", None, None)
    record.created = float("nan")
    logger.handle(record)
    assert handler.flush(timeout=10)
    (stream,) = fake.streams("test-group")
    assert [m for _, m in fake.events("test-group", stream)] == ["broken clock"]
    stats = handler.stats()
    assert (stats["emitted"], stats["sent"], stats["dropped"]) == (1, 1, 0)


def test_a_bug_in_planning_drops_and_counts_that_cut_and_the_flusher_goes_on(fake, make_handler, logger, capsys,
                                                                             monkeypatch):
    """Issue 10, bug 4: an unexpected exception in the flusher ended it; every flush then waited in vain."""
    from cwlhandler import pipeline

    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    real_plan = pipeline.plan_batches
    monkeypatch.setattr(pipeline, "plan_batches", lambda *a, **k: 1 / 0)
    logger.info("lost to the bug")
    assert handler.flush(timeout=10)
    monkeypatch.setattr(pipeline, "plan_batches", real_plan)
    logger.info("delivered after it")
    assert handler.flush(timeout=10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["delivered after it"]
    stats = handler.stats()
    assert (stats["emitted"], stats["sent"], stats["dropped_by_reason"]) == (2, 1, {"error": 1})
    assert "unexpected error while planning, 1 record(s) dropped: ZeroDivisionError" in capsys.readouterr().err


def test_a_record_appended_as_shutdown_closes_the_buffer_is_sent_or_counted(fake, make_handler, logger,
                                                                             monkeypatch):
    """Issue 10, bug 3: a record appended between shutdown reading the buffer's end and closing it was submitted
    after the workers had stopped: counted in emitted, in neither sent nor dropped.

    The interleaving is forced: the record lands inside close(), and the flusher may take it only once the
    workers are gone (as when the scheduler runs it last).
    """
    from cwlhandler.scheduler import Scheduler

    closing, workers_gone = threading.Event(), threading.Event()
    real_free_slots = Scheduler.free_slots
    monkeypatch.setattr(Scheduler, "free_slots", lambda self: 0 if closing.is_set() and not workers_gone.is_set()
                        else real_free_slots(self))  # before the flusher starts: it binds this one
    handler = make_handler(fake.endpoint_url, flush_interval=60, shutdown_timeout=1)
    logger.addHandler(handler)
    logger.info("before close")
    assert handler.flush(timeout=10)
    pipeline = handler._pipeline
    buffer, scheduler = pipeline.buffer, pipeline.scheduler
    real_close, real_stop = buffer.close, scheduler.stop

    def close_with_a_racing_emit() -> None:
        closing.set()
        buffer.append((int(time.time() * 1000), "racing", 6, ("test-group", "test-stream")))
        real_close()

    def stop_and_wait_for_the_workers() -> None:
        real_stop()
        for thread in scheduler.threads:
            thread.join(5)
        workers_gone.set()
        with buffer.changed:
            buffer.changed.notify_all()

    buffer.close = close_with_a_racing_emit
    scheduler.stop = stop_and_wait_for_the_workers
    handler.close()
    stats = handler.stats()
    assert stats["emitted"] == 2
    assert stats["sent"] + stats["dropped"] == 2, stats


def test_a_missing_retention_permission_is_reported_and_holds_up_nothing(fake, make_handler, logger, capsys):
    """Issue 10, bug 8: a refused PutRetentionPolicy stalled delivery in the slow retry meant for credentials."""
    fake.inject("PutRetentionPolicy", *[Fault.error("AccessDeniedException", 400)] * 5)
    handler = make_handler(fake.endpoint_url, retention_days=7)
    logger.addHandler(handler)
    logger.info("shipped without retention")
    assert handler.flush(timeout=10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["shipped without retention"]
    assert fake.calls["PutRetentionPolicy"] == 1  # reported, not retried until it passes
    assert fake.retention("test-group") is None
    err = capsys.readouterr().err
    assert "could not set the retention of the log group 'test-group' it created to 7 days" in err, err
    assert "logs:PutRetentionPolicy" in err and "cannot ship" not in err, err


def test_retention_is_set_only_on_a_group_this_handler_created(fake, make_handler, logger):
    """Issue 10, bug 8: when a racing creator made the group first, its retention is not ours to change."""
    logs_client(fake.endpoint_url).create_log_group(logGroupName="test-group")
    fake.inject("CreateLogStream", Fault.error("ResourceNotFoundException", 400))  # the group looked missing
    handler = make_handler(fake.endpoint_url, retention_days=7)
    logger.addHandler(handler)
    logger.info("into a group someone else made")
    assert handler.flush(timeout=10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["into a group someone else made"]
    assert fake.calls["CreateLogGroup"] == 2  # the racer's and ours, refused as existing
    assert fake.retention("test-group") is None


def test_threads_that_cannot_start_leak_nothing_and_their_records_are_counted(fake, make_handler, logger, capsys,
                                                                              monkeypatch):
    """Issue 10, bug 5: "can't start new thread" (a pids limit) leaked threads on every log call, counted nothing."""
    from cwlhandler import handler as handler_module

    real_start = threading.Thread.start

    def start(thread):
        if thread.name == "cwlhandler-sender-1":  # one worker started, the next one cannot
            raise RuntimeError("can't start new thread")
        real_start(thread)

    def cwlhandler_threads() -> set:
        return {t for t in threading.enumerate() if t.name.startswith("cwlhandler-")}

    before = cwlhandler_threads()  # other tests' handlers, if any are still winding down
    monkeypatch.setattr(threading.Thread, "start", start)
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    for i in range(3):
        logger.info("no thread for %d", i)
    stats = handler.stats()
    assert (stats["emitted"], stats["dropped_by_reason"]) == (3, {"no_threads": 3}), stats
    assert "cannot start the handler's threads (can't start new thread)" in capsys.readouterr().err

    assert wait_until(lambda: not cwlhandler_threads() - before, 5), cwlhandler_threads()  # the started one ends

    monkeypatch.setattr(threading.Thread, "start", real_start)  # the limit is lifted
    monkeypatch.setattr(handler_module, "THREAD_RETRY", 0.0)
    handler._threads_retry_at = 0.0
    logger.info("shipped once threads can start")
    assert handler.flush(timeout=10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["shipped once threads can start"]
