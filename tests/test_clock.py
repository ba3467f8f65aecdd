"""Time at the handler level, with the clock frozen by freezegun (the strict fake, in this process, reads it too).

A ``{date}`` stream rolls over at midnight UTC; the 14-day and 2-hour edges are judged when the batch is sent.
"""
from __future__ import annotations

import datetime
import logging

import freezegun.config
import pytest
from freezegun import freeze_time

from cwlhandler.planner import HOUR_MS, MAX_AGE_MS
from helpers import log_at

GROUP = "test-group"
UTC = datetime.timezone.utc


@pytest.fixture(autouse=True)
def frozen_for_every_thread(monkeypatch):
    """freezegun gives code called from ``threading``'s frames the real time: the shipping threads must not."""
    monkeypatch.setattr(freezegun.config.settings, "default_ignore_list",
                        [m for m in freezegun.config.settings.default_ignore_list if m != "threading"])


def test_a_date_stream_rolls_over_at_midnight_utc(fake, make_handler, logger):
    with freeze_time(datetime.datetime(2026, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), tick=True) as clock:
        handler = make_handler(fake.endpoint_url, log_stream="app/{date}", flush_interval=3600)
        logger.addHandler(handler)
        logger.info("last of the year")
        clock.tick(datetime.timedelta(seconds=1))
        logger.info("first of the year")
        assert handler.flush(timeout=10)
    assert fake.streams(GROUP) == ["app/2026-12-31", "app/2027-01-01"]
    assert [m for _, m in fake.events(GROUP, "app/2026-12-31")] == ["last of the year"]
    assert [m for _, m in fake.events(GROUP, "app/2027-01-01")] == ["first of the year"]


def test_the_age_edges_are_judged_when_the_batch_is_sent(fake, make_handler, logger):
    """Logged in time, sent too late: a record 14 days old minus a second is dropped once an hour has passed."""
    with freeze_time(datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC), tick=True) as clock:
        handler = make_handler(fake.endpoint_url, flush_interval=3600)
        logger.addHandler(handler)
        now_ms = int(datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)

        log_at(logger, now_ms - MAX_AGE_MS + 1000, "nearly 14 days old")  # fine now, too old in an hour
        log_at(logger, now_ms + 2 * HOUR_MS + 30 * 60_000, "2.5 hours ahead")  # too new now, fine in an hour
        log_at(logger, now_ms, "now")
        clock.tick(datetime.timedelta(hours=1))
        assert handler.flush(timeout=10)
    assert sorted(m for _, m in fake.events(GROUP, "test-stream")) == ["2.5 hours ahead", "now"]
    assert handler.stats()["dropped_by_reason"] == {"too_old": 1}


def test_stream_names_idle_for_an_hour_are_forgotten(fake, make_handler, logger):
    """The handler keeps no state for a stream it stopped writing to: a new name an hour on forgets the old ones."""
    with freeze_time(datetime.datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=True) as clock:
        handler = make_handler(fake.endpoint_url, log_stream="{logger}")
        logger.addHandler(handler)
        for name in ("job-1", "job-2"):
            logging.getLogger(f"{logger.name}.{name}").info("working")  # propagates to the test's logger
        clock.tick(datetime.timedelta(minutes=59))
        logging.getLogger(f"{logger.name}.job-3").info("working")
        remembered_within_the_hour = sorted(s for _, s in handler._router._cache.values())
        clock.tick(datetime.timedelta(hours=2))
        logging.getLogger(f"{logger.name}.job-4").info("working")
        assert handler.flush(timeout=10)
    jobs = [f"{logger.name}.job-{i}" for i in range(1, 5)]
    assert remembered_within_the_hour == jobs[:3]
    assert [s for _, s in handler._router._cache.values()] == [jobs[3]]
    assert fake.streams(GROUP) == jobs
