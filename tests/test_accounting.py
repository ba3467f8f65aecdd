"""What `stats()` says about records the deadline cut off: sent, certainly not sent, or perhaps sent.

``shutdown`` means a record never left the process; ``shutdown_in_flight`` means its
request was on the wire, unanswered, when the deadline came: the service may have
stored it.  Each test runs the handler against the strict fake over real HTTP.
"""
from __future__ import annotations

import time

import pytest

from helpers import free_port, logs_client, wait_until
from strict_fake import Fault


def existing_stream(fake) -> None:
    """The handler's group and stream, made beforehand: its first request is then the batch itself."""
    client = logs_client(fake.endpoint_url)
    client.create_log_group(logGroupName="test-group")
    client.create_log_stream(logGroupName="test-group", logStreamName="test-stream")


def test_a_request_stored_but_unanswered_at_the_deadline_counts_as_shutdown_in_flight(fake, make_handler, logger):
    """Issue 10, bug 7: the fake stored the batch and never answered; it was counted as ``shutdown``."""
    existing_stream(fake)
    fake.inject("PutLogEvents", Fault.apply_then_hang(30))
    handler = make_handler(fake.endpoint_url, shutdown_timeout=0.5)
    logger.addHandler(handler)
    for i in range(20):
        logger.info("perhaps %d", i)
    handler.close()
    stats = handler.stats()
    assert stats["dropped_by_reason"] == {"shutdown_in_flight": 20}, stats
    assert (stats["sent"], stats["dropped"], stats["emitted"]) == (0, 20, 20)
    assert [m for _, m in fake.events("test-group", "test-stream")] == [f"perhaps {i}" for i in range(20)]


def test_a_request_never_answered_nor_stored_is_still_only_perhaps_delivered(fake, make_handler, logger):
    """The handler cannot tell a lost answer from a lost request: both may have been stored."""
    fake.set_outage(Fault.hang(30))
    handler = make_handler(fake.endpoint_url, shutdown_timeout=0.5)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("unanswered %d", i)
    handler.close()
    assert handler.stats()["dropped_by_reason"] == {"shutdown_in_flight": 10}


def test_records_whose_connection_was_refused_are_certainly_not_delivered(make_handler, logger):
    """Nothing reached a peer: a refused connection never makes a record 'perhaps delivered'."""
    handler = make_handler(f"http://127.0.0.1:{free_port()}", shutdown_timeout=0.5)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("refused %d", i)
    handler.close()
    assert handler.stats()["dropped_by_reason"] == {"shutdown": 30}


def test_an_answer_that_comes_just_after_the_deadline_still_counts(fake, make_handler, logger):
    """A request on the wire is given a moment after the deadline: an answer then settles it as sent."""
    import threading

    existing_stream(fake)
    gate = fake.gate()  # the request waits in the fake until the deadline has passed
    handler = make_handler(fake.endpoint_url, shutdown_timeout=0.3)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("late answer %d", i)
    assert wait_until(lambda: fake.in_flight == 1)
    closing = threading.Thread(target=handler.close)
    started = time.monotonic()
    closing.start()
    assert wait_until(lambda: handler._pipeline.scheduler.aborted())  # the deadline came
    gate.set()
    closing.join(10)
    stats = handler.stats()
    assert time.monotonic() - started < 0.3 + 1.0
    assert (stats["sent"], stats["dropped_by_reason"]) == (10, {}), stats


def _swallow_prepared_body(params, **_):
    """A botocore that no longer sends the body our hook prepares: it takes it and serialises its own."""
    from cwlhandler.threadstate import thread_state

    thread_state.body = None


@pytest.mark.parametrize("rehearsal", ["tells", "cannot_tell"])
def test_a_botocore_that_skips_our_body_is_caught_and_the_plain_path_ships(fake, make_handler, logger,
                                                                           monkeypatch, rehearsal):
    """Issue 10, bug 9: botocore then sent ``logEvents: []`` and every event was dropped as ``rejected``.

    The rehearsal at construction checks the wire body; when it cannot tell
    (no credentials yet, say), the first refusal of a prepared body is resent
    the plain way before anything is dropped.
    """
    from cwlhandler import client

    monkeypatch.setattr(client, "_send_prepared_body", _swallow_prepared_body)
    if rehearsal == "cannot_tell":
        monkeypatch.setattr(client, "rehearse", lambda client: None)
    handler = make_handler(fake.endpoint_url)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("plain %d", i)
    assert handler.flush(timeout=10)
    stats = handler.stats()
    assert (stats["sent"], stats["dropped_by_reason"]) == (50, {}), stats
    assert [m for _, m in fake.events("test-group", "test-stream")] == [f"plain {i}" for i in range(50)]


def test_the_readme_guarantees_table_names_every_drop_reason_and_no_other():
    """The user's reference for stats()["dropped_by_reason"] is records.DROP_REASONS, and the reverse."""
    import re
    from pathlib import Path

    from cwlhandler.records import DROP_REASONS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Delivery guarantees", 1)[1].split("\n\n", 2)[1]
    counted = {name for line in table.splitlines()[2:]
               for name in re.findall(r"`(\w+)`", line.rstrip(" |").rsplit("|", 1)[-1])}
    not_drops = {"retries", "entity_rejected"}  # counters of their own, in the same column
    assert counted - not_drops == set(DROP_REASONS)
