"""The core issue's "Done when": 100,000 mixed records from 8 threads, configured by dictConfig."""
from __future__ import annotations

import logging
import logging.config
import random
import threading
import time
from collections import Counter

import pytest

from cwlhandler.planner import DAY_MS, HOUR_MS
from helpers import log_at

THREADS = 8
PER_THREAD = 12_500
LIMIT = 1_048_576 - 26  # the largest message the service takes


def workload(thread: int, now: int):
    """Deterministic (timestamp, message, fate) triples for one thread."""
    rng = random.Random(thread)
    for i in range(PER_THREAD):
        tag = f"t{thread}-{i}"
        roll = rng.random()
        if i < 3 and thread < 2:
            # near and over the event limit
            size = [LIMIT - 200, LIMIT, LIMIT + 5000][i]
            yield now - rng.randrange(60_000), tag + " " + "x" * (size - len(tag) - 1), "big"
        elif roll < 0.002:
            yield now - 15 * DAY_MS - rng.randrange(DAY_MS), tag + " ancient", "too_old"
        elif roll < 0.004:
            yield now + 3 * HOUR_MS + rng.randrange(HOUR_MS), tag + " future", "too_new"
        else:
            text = tag + " " + "é漢🙂a"[rng.randrange(4)] * rng.randrange(0, 400)
            yield now - rng.randrange(30 * HOUR_MS), text, "ok"  # out of order, over 30 hours


@pytest.mark.timeout(150)
def test_hundred_thousand_mixed_records_from_eight_threads(fake, logger):
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "cw": {
                    "class": "cwlhandler.CloudWatchLogsHandler",
                    "log_group": "acceptance",
                    "log_stream": "{thread}",
                    "endpoint_url": fake.endpoint_url,
                    "region_name": "us-east-1",
                    "flush_interval": "0.2",
                    "shutdown_timeout": "60",
                }
            },
            "loggers": {logger.name: {"handlers": ["cw"], "level": "INFO", "propagate": False}},
        }
    )
    (handler,) = logger.handlers
    now = int(time.time() * 1000)
    expected = {}
    fates = Counter()
    for t in range(THREADS):
        expected[f"worker-{t}"] = list(workload(t, now))
        fates.update(f for _, _, f in expected[f"worker-{t}"])

    def run(t: int) -> None:
        for ts, msg, _ in expected[f"worker-{t}"]:
            log_at(logger, ts, msg)

    threads = [threading.Thread(target=run, args=(t,), name=f"worker-{t}") for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()

    stats = handler.stats()
    assert fake.refusals == []
    assert not [op for op in fake.calls if op.startswith("Describe")]  # nothing looked up on the send path
    assert stats["emitted"] == THREADS * PER_THREAD
    assert stats["dropped_by_reason"] == {"too_old": fates["too_old"], "too_new": fates["too_new"]}
    assert stats["sent"] == fates["ok"] + fates["big"]
    assert stats["sent"] + stats["dropped"] == stats["emitted"]
    assert sorted(fake.streams("acceptance")) == sorted(expected)
    for stream, records in expected.items():
        stored = fake.events("acceptance", stream)
        kept = [(ts, msg) for ts, msg, fate in records if fate in ("ok", "big")]
        assert len(stored) == len(kept)
        # Same events (the one over the limit arrives truncated), oldest first.
        assert [ts for ts, _ in stored] == sorted(ts for ts, _ in kept)
        want = Counter(msg if len(msg) <= LIMIT else msg[:64] for _, msg in kept)
        got = Counter(msg if "[... truncated" not in msg[-40:] else msg[:64] for _, msg in stored)
        assert got == want
        for _, msg in stored:
            assert 0 < len(msg.encode("utf-8")) <= LIMIT
