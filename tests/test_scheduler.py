"""The scheduler and the pipeline without sockets: an in-memory deliverer stands for CloudWatch.

Which work of a stream may go out in parallel, that every record is counted
once, and what the shutdown deadline makes of batches still being sent.  The
HTTP tests (test_delivery, test_reliability, test_accounting) cover the same
promises through the real transport.
"""
from __future__ import annotations

import collections
import random
import threading
import time
from typing import Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwlhandler.config import Settings
from cwlhandler.pipeline import Pipeline
from cwlhandler.scheduler import Batch, Chain, Scheduler
from cwlhandler.stats import Reporter


def make_chain(stamps: List[int], per_batch: int) -> Chain:
    events = [(t, "m", 1) for t in sorted(stamps)]
    return Chain([Batch(("g", "s"), events[i:i + per_batch], None) for i in range(0, len(events), per_batch)])


stamp_lists = st.lists(st.integers(0, 60), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(stamp_lists, stamp_lists, st.integers(1, 7), st.integers(1, 7))
def test_chains_share_a_timestamp_exactly_when_some_event_of_each_has_it(a, b, per_a, per_b):
    first, second = make_chain(a, per_a), make_chain(b, per_b)
    expected = bool(set(a) & set(b))
    assert first.shares_timestamp(second) is expected
    assert second.shares_timestamp(first) is expected


# -- the pipeline against an in-memory deliverer: scheduling and shutdown without sockets --------------------------


class Memory:
    """A deliverer that stores batches in memory; it can hold them, mark them on the wire, or fail."""

    def __init__(self, hold: bool = False, on_wire: bool = False, fail_first: int = 0) -> None:
        self.stored: Dict[Tuple[str, str], List[str]] = collections.defaultdict(list)
        self.calls: List[Tuple[str, List[int]]] = []  # (stream, timestamps) in the order delivered
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.holding = threading.Semaphore(0)  # one per batch that arrived while held
        self.on_wire = on_wire
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def deliver(self, batch, scheduler: Scheduler) -> None:
        with self._lock:
            if self.fail_first:
                self.fail_first -= 1
                raise RuntimeError("a deliverer bug")
        if self.on_wire:
            scheduler.on_wire(batch, len(batch.events))
        if not self.release.is_set():
            self.holding.release()
            while not self.release.is_set() and not scheduler.aborted():
                self.release.wait(0.01)
            if scheduler.aborted():
                return
        with self._lock:
            self.calls.append((batch.stream, [e[0] for e in batch.events]))
            self.stored[(batch.group, batch.stream)] += [e[1] for e in batch.events]
        scheduler.progress(batch, len(batch.events))


def make_pipeline(deliverer: Memory, **settings) -> Pipeline:
    settings.setdefault("flush_interval", 0.01)
    pipeline = Pipeline(Settings(**settings), deliverer, Reporter("memory"))
    pipeline.start()
    return pipeline


def append(pipeline: Pipeline, stream: str, stamp: int, message: str) -> None:
    """Buffer a record ``stamp`` ms after a start a minute ago (the planner drops what is too old or new)."""
    pipeline.buffer.append((START + stamp, message, len(message), ("g", stream)))


START = int(time.time() * 1000) - 60_000


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), min_size=1, max_size=400),
       st.integers(1, 30), st.integers(1, 4))
def test_every_record_is_delivered_once_and_equal_timestamps_keep_their_order(records, batch_count, concurrency):
    memory = Memory()
    pipeline = make_pipeline(memory, max_batch_count=batch_count, max_concurrency=concurrency)
    expected: Dict[Tuple[str, str], List[Tuple[int, str]]] = collections.defaultdict(list)
    stamp = 0
    for i, (stream, step) in enumerate(records):
        stamp += step  # many records share a millisecond
        append(pipeline, stream, stamp, f"r{i}")
        expected[("g", stream)].append((stamp, f"r{i}"))
    assert pipeline.shutdown(time.monotonic() + 10)
    stats = pipeline.stats_snapshot()
    assert (stats["sent"], stats["dropped"], stats["emitted"]) == (len(records), 0, len(records))
    for key, events in expected.items():
        # The service sorts by timestamp and keeps equal ones in arrival order: what arrived must sort to this.
        arrived = memory.stored[key]
        stamp_of = dict((m, t) for t, m in events)
        assert sorted(arrived, key=lambda m: stamp_of[m]) == [m for _, m in events]
        assert len(arrived) == len(events)


def test_work_sharing_a_timestamp_with_work_in_flight_waits_for_it():
    memory = Memory(hold=True)
    pipeline = make_pipeline(memory, max_concurrency=4, flush_interval=3600)
    append(pipeline, "s", 1_000, "first")
    assert not pipeline.flush(time.monotonic())  # ask for a send, do not wait
    assert memory.holding.acquire(timeout=10)  # the first batch is held in the deliverer
    append(pipeline, "s", 1_000, "second, same millisecond")
    append(pipeline, "t", 1_000, "other stream")
    assert not pipeline.flush(time.monotonic())
    assert memory.holding.acquire(timeout=10)  # the other stream's batch went out in parallel...
    assert not memory.holding.acquire(timeout=0.2)  # ...this stream's second batch waits behind the first
    memory.release.set()
    assert pipeline.shutdown(time.monotonic() + 10)
    assert memory.stored[("g", "s")] == ["first", "second, same millisecond"]


def test_a_deliverer_that_raises_loses_nothing_uncounted_and_the_worker_goes_on(capsys):
    memory = Memory(fail_first=1)
    pipeline = make_pipeline(memory, max_concurrency=1, max_batch_count=5)
    for i in range(20):
        append(pipeline, "s", 1_000 + i, f"m{i}")
    assert pipeline.shutdown(time.monotonic() + 10)
    stats = pipeline.stats_snapshot()
    assert stats["dropped_by_reason"] == {"error": 5} and stats["sent"] == 15
    assert "a deliverer bug" in capsys.readouterr().err


@pytest.mark.parametrize("on_wire, reason", [(False, "shutdown"), (True, "shutdown_in_flight")])
def test_at_the_deadline_held_batches_count_by_whether_they_were_written(on_wire, reason):
    memory = Memory(hold=True, on_wire=on_wire)
    pipeline = make_pipeline(memory, max_concurrency=2, max_batch_count=10)
    for i in range(50):
        append(pipeline, random.choice("st"), 1_000 + i, f"m{i}")
    assert not pipeline.shutdown(time.monotonic() + 0.2)
    stats = pipeline.stats_snapshot()
    # held in the deliverer: written or not; queued behind them, or still buffered: never written
    assert stats["sent"] == 0 and stats["dropped"] == 50, stats
    assert stats["dropped_by_reason"].get(reason, 0) >= 1
    assert set(stats["dropped_by_reason"]) <= {"shutdown", reason}


def test_an_unexpected_error_in_the_flusher_cycle_does_not_end_it(capsys):
    """A bug anywhere in the flusher's cycle (taking a cut, reporting) ended the thread: nothing shipped again."""
    memory = Memory()
    pipeline = make_pipeline(memory)
    real_take, failures = pipeline.buffer.take, []

    def take_failing_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("a buffer bug")
        return real_take(*args, **kwargs)

    pipeline.buffer.take = take_failing_once  # type: ignore[method-assign]
    # The flusher may be inside the real take already: that call takes the first record, the next one fails.
    append(pipeline, "s", 0, "before the bug")
    assert pipeline.flush(time.monotonic() + 10)
    append(pipeline, "s", 1, "after the bug")
    assert pipeline.flush(time.monotonic() + 10)
    assert failures and memory.stored[("g", "s")] == ["before the bug", "after the bug"]
    assert "unexpected error in the flusher" in capsys.readouterr().err
    assert pipeline.shutdown(time.monotonic() + 10)
