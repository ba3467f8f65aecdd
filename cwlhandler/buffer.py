"""The bounded, thread-safe buffer between ``emit`` and the flusher.

Records are numbered by position.  They leave the buffer only from the front:
taken by the flusher as a *cut*, or dropped by ``drop_oldest``.  A cut is
settled when every batch planned from it is acknowledged or dropped, so the
positions settled so far form a prefix; ``flush()`` waits for that prefix to
reach the position of the last record emitted before it.
"""
from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice, repeat
from operator import add
from typing import Callable, Deque, List, Literal, Optional, Sequence, Tuple, Union

from .planner import EVENT_OVERHEAD
from .records import NBYTES, TIMESTAMP, Item, nbytes_of


class Cut:
    """A prefix of the buffer handed to the flusher; ``pending`` counts open batches.

    Its records still count against the buffer's bounds (``records``,
    ``nbytes``) until it is settled, so the bounds bound memory.
    """

    __slots__ = ("end", "pending", "records", "nbytes")

    def __init__(self, end: int, pending: int, records: int = 0, nbytes: int = 0) -> None:
        self.end = end
        self.pending = pending
        self.records = records
        self.nbytes = nbytes


def cut_length(items: Sequence[Item], slots: int, count: int, nbytes: int, whole_batches: bool) -> Tuple[int, int]:
    """How many of the oldest ``items`` one cut takes, and their size with overhead: a pure function.

    Never fewer than one record.  When records are due by time, a flush or a
    close: as many as ``slots`` requests of ``count`` events and ``nbytes``
    bytes hold in records and in bytes (packing may then need one request more:
    the slots are a queue depth, not a hard limit).  When only size made them
    due (``whole_batches``): whole requests' worth, at most ``slots`` of them
    packed the way the planner packs them, and the
    rest is left to fill the next one (half-empty requests cost a call each); a
    request with room for no further event is whole.  Such a cut ends between
    two milliseconds when it can (docs/architecture.md, "Equal timestamps").
    """
    # Running totals over the candidates, in C, then bisections: no per-record Python loop.
    totals = list(accumulate(map(add, map(nbytes_of, islice(items, slots * count)), repeat(EVENT_OVERHEAD))))
    if whole_batches:
        take = 0
        for _ in range(slots):
            limit = (totals[take - 1] if take else 0) + nbytes
            end = min(take + count, bisect_right(totals, limit))
            if end - take < count and end >= len(items) and limit - totals[end - 1] > EVENT_OVERHEAD:
                break  # the rest does not fill a request yet
            take = end
        take = max(1, take)
    else:
        take = max(1, bisect_right(totals, slots * nbytes))  # the first record always goes
    if whole_batches and take < len(items):
        boundary = items[take][TIMESTAMP]
        keep = take
        while keep > 1 and items[keep - 1][TIMESTAMP] == boundary:
            keep -= 1
        if keep > 1 or items[0][TIMESTAMP] != boundary:
            take = keep
    return take, totals[take - 1]


class Buffer:
    """The records between ``emit`` and the flusher, under two bounds, numbered by position.

    Invariants (checked after every step by tests/test_buffer_states.py):

    - Conservation: ``emitted`` = records taken by the flusher + ``dropped_full``
      + ``dropped_shutdown`` + records still buffered (``refused`` counts the
      drops made by ``append`` itself).
    - Bounds: records buffered plus records taken but not yet settled never exceed
      ``max_records`` records or ``max_bytes`` bytes (size + EVENT_OVERHEAD each),
      so memory stays bounded through an outage.
    - Order: records leave only from the front, as a cut (a prefix taken by the
      flusher) or a ``drop_oldest`` drop; ``settled`` <= ``removed`` <= ``appended``.
    - ``settled`` only grows: it is the end of the longest prefix of cuts whose
      batches are all acknowledged or dropped; with nothing in flight it equals
      ``removed``.  ``flush()`` waits for it to reach the position it asked for.
    - Sizing: a cut is never empty; when only size made records due, it is whole
      requests' worth, at most the scheduler's free slots of them; otherwise as
      much as those slots hold in records and bytes (:func:`cut_length`, a pure
      function).
    """

    def __init__(
        self,
        *,
        max_records: int,
        max_bytes: int,
        on_full: str,
        batch_count: int,
        batch_bytes: int,
        flush_interval: float,
    ) -> None:
        # Reentrant: a signal handler that logs while this thread is inside append()
        # runs append() again on the same thread, and must not wait for itself.
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)  # the flusher and flush() wait here
        self._room = threading.Condition(self._lock)  # emit() waits here under on_full="block"
        self._items: Deque[Item] = deque()
        # Room left under the bounds; records taken by the flusher keep theirs until settled.
        self._room_records = max_records
        self._room_bytes = max_bytes
        self._max_bytes = max_bytes
        self._on_full = on_full
        self._batch_count = batch_count
        self._batch_bytes = batch_bytes
        # Records are due by size when a request's worth waits, or half the buffer
        # when that is less: a small buffer must not fill up and drop while the
        # flusher waits for a request's worth it can never hold.
        self._due_count = min(batch_count, max(1, max_records // 2))
        self._due_bytes = min(batch_bytes, max_bytes // 2)
        self._interval = flush_interval
        self._taken_bytes = 0  # of records taken and not yet settled
        self._wake_room = 0  # room left when the buffered records are due by size
        self._count_taken(0)
        self._first_at: Optional[float] = None  # when the oldest waiting record arrived
        self._cuts: Deque[Cut] = deque()
        self._woken = False
        self._idle = False  # the flusher waits with nothing buffered, until its report tick
        self._poked = False  # take() returns at once, so the flusher runs its per-cycle hook (see poke)
        self.refused = 0  # records append() dropped instead of buffering
        self.removed = 0  # position of the first record still in the buffer
        self.settled = 0  # every position below this is acknowledged or dropped
        self.flush_target = 0
        self.closing = False
        self.dropped_full = 0
        self.dropped_shutdown = 0

    # -- producer side (application threads) ------------------------------------------
    def _full(self, size: int) -> bool:
        """Would one more record of ``size`` break a bound (counting records being sent)?"""
        return self._room_records <= 0 or self._room_bytes < size

    def _free(self, records: int, nbytes: int) -> None:
        self._room_records += records
        self._room_bytes += nbytes

    def _count_taken(self, nbytes: int) -> None:
        self._taken_bytes += nbytes
        self._wake_room = self._max_bytes - self._taken_bytes - self._due_bytes

    def _buffered_bytes(self) -> int:
        """Bytes of the records waiting in the buffer (derived, so ``append`` keeps one byte counter)."""
        return self._max_bytes - self._room_bytes - self._taken_bytes

    def append(self, item: Item) -> None:
        # The hot path of every emit: two counters, no context manager (whose bound
        # __exit__ costs an allocation per call), everything else derived on demand.
        size = item[2] + EVENT_OVERHEAD  # item[NBYTES], without a global lookup on every emit
        self._lock.acquire()
        try:
            if self.closing or self._room_records <= 0 or self._room_bytes < size:
                if not self._admit(size):
                    self.refused += 1
                    return
            items = self._items  # (read after _admit: a take may replace the deque while it waits)
            items.append(item)
            self._room_records -= 1
            self._room_bytes -= size
            if self._first_at is None:
                self._first_at = time.monotonic()
                if self._idle:
                    # The first record of an empty buffer starts the flush_interval clock: an idle
                    # flusher waits for its report tick (5 s) and must learn when this one is due.
                    self._idle = False
                    self.changed.notify_all()
            if not self._woken and (len(items) >= self._due_count or self._room_bytes <= self._wake_room):
                self._woken = True
                self.changed.notify_all()
        finally:
            self._lock.release()

    def _end(self) -> int:
        return self.removed + len(self._items)

    @property
    def appended(self) -> int:
        """Position after the last record in the buffer."""
        with self._lock:
            return self._end()

    @property
    def emitted(self) -> int:
        """Records offered to ``append``."""
        with self._lock:
            return self._end() + self.refused

    def append_due(self, items: List[Item]) -> None:
        """Append items that already waited their ``flush_interval`` elsewhere (metric documents): due at once.

        Never waits for room, even under ``on_full="block"``: the flusher calls it, and only
        the flusher makes room.  Items that do not fit then count as ``buffer_full``.
        """
        with self._lock:
            for item in items:
                size = item[NBYTES] + EVENT_OVERHEAD
                if (self.closing or self._full(size)) and not self._admit(size, wait=False):
                    self.refused += 1
                    continue
                self._items.append(item)
                self._room_records -= 1
                self._room_bytes -= size
            if self._items:
                due = time.monotonic() - self._interval
                self._first_at = due if self._first_at is None else min(self._first_at, due)
                self.changed.notify_all()

    def poke(self) -> None:
        """Make the flusher's ``take`` return now (False), so it runs its per-cycle hook at once."""
        with self._lock:
            self._poked = True
            self.changed.notify_all()

    def _admit(self, size: int, wait: bool = True) -> bool:
        """Closing, or full: apply the ``on_full`` policy. False means the new record is dropped (and counted)."""
        if self.closing:
            self.dropped_shutdown += 1
            return False
        if size > self._max_bytes or self._on_full == "drop_newest" or (self._on_full == "block" and not wait):
            self.dropped_full += 1
            return False
        if self._on_full == "block":
            self._woken = True
            self.changed.notify_all()
            while not self.closing and self._full(size):
                self._room.wait()
            if self.closing:
                self.dropped_shutdown += 1
                return False
            return True
        dropped = 0
        while self._items and self._full(size):
            self._free(1, self._items.popleft()[2] + EVENT_OVERHEAD)
            dropped += 1
        self.dropped_full += dropped
        self._drop_front(dropped)
        if self._full(size):  # all the room is taken by records being sent: those are kept
            self.dropped_full += 1
            return False
        return True

    # -- consumer side (the flusher) ---------------------------------------------------
    def take(self, free_slots: Callable[[], int], idle: float) -> Union[None, Literal[False], Tuple[Cut, List[Item]]]:
        """Wait until records are due and the scheduler has room, and take them.

        Records are due when a batch's worth is waiting (or half the buffer),
        the oldest has waited ``flush_interval``, a flush was asked for, or the
        handler is closing.
        Returns None once closed and empty, False after ``idle`` seconds of
        nothing to take, or when poked (so the caller can do periodic work).
        """
        give_up = time.monotonic() + idle
        with self._lock:
            while True:
                if self._poked:
                    self._poked = False
                    return False
                timeout: Optional[float] = None
                if self._items:
                    count, nbytes = len(self._items), self._buffered_bytes()
                    full = count >= self._batch_count or nbytes >= self._batch_bytes
                    urgent = (self.closing or self.flush_target > self.removed
                              or (not full and (count >= self._due_count or nbytes >= self._due_bytes)))
                    if not (full or urgent):
                        assert self._first_at is not None
                        timeout = self._first_at + self._interval - time.monotonic()
                        urgent = timeout <= 0
                    if full or urgent:
                        slots = free_slots()
                        if slots > 0:
                            return self._take_prefix(slots, whole_batches=not urgent)
                        timeout = None
                elif self.closing:
                    return None
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self._idle = not self._items
                self.changed.wait(left if timeout is None else min(timeout, left))
                self._idle = False

    def _take_prefix(self, slots: int, whole_batches: bool) -> Tuple[Cut, List[Item]]:
        """Take the oldest records, for at most ``slots`` batches (sized by :func:`cut_length`)."""
        items = self._items
        take, size = cut_length(items, slots, self._batch_count, self._batch_bytes, whole_batches)
        taken = list(islice(items, take))
        if take == len(items):
            items.clear()
        else:
            self._items = items = deque(islice(items, take, None))
        self._count_taken(size)
        self.removed += len(taken)
        # The oldest record left arrived about when it was created (never later).
        self._first_at = (
            time.monotonic() - max(0.0, time.time() - items[0][TIMESTAMP] / 1000) if items else None
        )
        self._woken = False
        cut = Cut(self.removed, 1, len(taken), size)  # held open until the flusher has submitted its batches
        self._cuts.append(cut)
        self._room.notify_all()
        return cut, taken

    def settle(self, cut: Cut, batches: int = 1) -> None:
        """Mark ``batches`` of ``cut`` done (the flusher's hold counts as one)."""
        with self._lock:
            cut.pending -= batches
            if cut.pending == 0:
                self._free(cut.records, cut.nbytes)
                self._count_taken(-cut.nbytes)
                self._room.notify_all()
            self._advance()

    def open_batches(self, cut: Cut, batches: int) -> None:
        with self._lock:
            cut.pending += batches

    def _advance(self) -> None:
        cuts = self._cuts
        while cuts and cuts[0].pending <= 0:
            self.settled = cuts.popleft().end
        self.changed.notify_all()

    # -- flush and close ---------------------------------------------------------------
    def wait_settled(self, deadline: float, target: Optional[int] = None) -> bool:
        """Ask for a flush of everything appended so far; wait until it is settled or the deadline."""
        with self._lock:
            if target is None:
                target = self._end()
            if target > self.flush_target:
                self.flush_target = target
                self.changed.notify_all()
            while self.settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            return True

    def close(self) -> None:
        """Refuse new records, let the flusher take everything, wake blocked producers."""
        with self._lock:
            self.closing = True
            self.changed.notify_all()
            self._room.notify_all()

    def abandon(self) -> int:
        """At the shutdown deadline: drop what is still buffered; return how many."""
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self._free(n, self._buffered_bytes())
            self.dropped_shutdown += n
            self.closing = True
            self._drop_front(n)
            self._room.notify_all()
            return n

    def _drop_front(self, n: int) -> None:
        """Positions dropped from the front are settled at once.

        They extend a settled cut already waiting behind one in flight, so a
        long outage with ``drop_oldest`` does not pile up a cut per drop.
        """
        if n:
            self.removed += n
            if self._cuts and self._cuts[-1].pending <= 0:
                self._cuts[-1].end = self.removed
            else:
                self._cuts.append(Cut(self.removed, 0))
            self._advance()

    def __len__(self) -> int:
        return len(self._items)
