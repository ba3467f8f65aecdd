"""A stateful property test of ``Buffer`` against a small model (hypothesis ``RuleBasedStateMachine``).

Append, take (as the flusher does: open batches, release its hold), settle batches, ask for a flush, close and
abandon, in any order, with random bounds and sizes.  After every step: every record emitted is taken, dropped
(and counted) or still buffered; the bounds hold, records being sent included; ``settled`` only grows and reaches
``removed`` once nothing is in flight; and a take made due by size alone takes at least one full request.
"""
from __future__ import annotations

import time
from typing import List

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cwlhandler.buffer import Buffer, Cut
from cwlhandler.planner import EVENT_OVERHEAD

KEY = ("g", "s")


class BufferStates(RuleBasedStateMachine):
    @initialize(max_records=st.integers(1, 40), max_bytes=st.integers(300, 3000), on_full=st.sampled_from(
        ["drop_oldest", "drop_newest"]), batch_count=st.one_of(st.integers(1, 8), st.just(10_000)),
        # Requests that records of one size can fill exactly, as well as any other size.
        batch_bytes=st.one_of(st.integers(2, 10).map(lambda n: n * (1 + EVENT_OVERHEAD)), st.integers(54, 300)))
    def start(self, max_records, max_bytes, on_full, batch_count, batch_bytes):
        self.buffer = Buffer(max_records=max_records, max_bytes=max_bytes, on_full=on_full, batch_count=batch_count,
                             batch_bytes=batch_bytes, flush_interval=3600)
        self.max_records, self.max_bytes = max_records, max_bytes
        self.batch_count, self.batch_bytes = batch_count, batch_bytes
        self.emitted = self.taken = 0
        self.in_flight: List[List[object]] = []  # [cut, records, bytes, batches still open]
        self.settled = 0
        self.ts = 0

    @rule(size=st.one_of(st.just(1), st.integers(1, 28)), count=st.integers(1, 12), same_ms=st.booleans())
    def append(self, size, count, same_ms):
        for _ in range(count):  # runs of one size fill requests exactly
            self.ts += not same_ms  # runs of equal timestamps too
            self.buffer.append((self.ts, "x" * size, size, KEY))
            self.emitted += 1

    @rule(same_ms=st.booleans())
    def append_a_request_exactly(self, same_ms):
        """Records of one size whose sizes add up to a request's bytes exactly (when some size can)."""
        size = next((n for n in range(1, 29) if self.batch_bytes % (n + EVENT_OVERHEAD) == 0), None)
        if size is not None:
            self.append(size, self.batch_bytes // (size + EVENT_OVERHEAD), same_ms)

    @rule(slots=st.integers(1, 4), batches=st.integers(0, 3))
    def take(self, slots, batches):
        buffer = self.buffer
        sizes = [item[2] + EVENT_OVERHEAD for item in buffer._items]
        by_size_only = (not buffer.closing and buffer.flush_target <= buffer.removed
                        and (len(sizes) >= self.batch_count or sum(sizes) >= self.batch_bytes))
        # A cut may end early to end between two milliseconds (docs/architecture.md, "Equal timestamps"):
        # judge sizes without such runs.
        distinct = len({item[0] for item in buffer._items}) == len(sizes)
        taken = buffer.take(lambda: slots, idle=0)
        if not isinstance(taken, tuple):
            return
        cut, items = taken
        assert isinstance(cut, Cut) and items
        size = sum(item[2] + EVENT_OVERHEAD for item in items)
        if by_size_only and distinct and len(items) < self.batch_count:
            # A full request by bytes: the next record would not have fitted, so nearly a request's worth went.
            assert size + max(sizes) > self.batch_bytes, (len(items), size, sizes)
        self.taken += len(items)
        buffer.open_batches(cut, batches)  # as the flusher: its batches, then it releases its hold
        buffer.settle(cut)
        if batches:
            self.in_flight.append([cut, len(items), size, batches])

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 100))
    def settle_a_batch(self, pick):
        entry = self.in_flight[pick % len(self.in_flight)]
        self.buffer.settle(entry[0])
        entry[3] -= 1
        if not entry[3]:
            self.in_flight.remove(entry)

    @rule()
    def ask_for_a_flush(self):
        self.buffer.wait_settled(time.monotonic() - 1)  # a flush whose deadline has passed: it only asks

    @rule()
    def close(self):
        self.buffer.close()

    @rule()
    def abandon(self):
        self.buffer.abandon()

    @invariant()
    def records_are_conserved(self):
        buffer = self.buffer
        assert buffer.emitted == self.emitted
        assert self.taken + buffer.dropped_full + buffer.dropped_shutdown + len(buffer) == self.emitted

    @invariant()
    def bounds_hold_with_records_being_sent(self):
        buffer = self.buffer
        records = len(buffer) + sum(e[1] for e in self.in_flight)
        nbytes = sum(i[2] + EVENT_OVERHEAD for i in buffer._items) + sum(e[2] for e in self.in_flight)
        assert records <= self.max_records
        assert nbytes <= self.max_bytes

    @invariant()
    def settled_only_grows_and_reaches_removed(self):
        buffer = self.buffer
        assert self.settled <= buffer.settled <= buffer.removed
        self.settled = buffer.settled
        if not self.in_flight:
            assert buffer.settled == buffer.removed


TestBufferStates = BufferStates.TestCase
TestBufferStates.settings = settings(max_examples=300, stateful_step_count=40, deadline=None, derandomize=True,
                                     database=None)
