"""The scheduler: worker threads that send planned batches through a deliverer, each settled exactly once.

It knows nothing of CloudWatch: a :class:`Deliverer` (``transport.CloudWatchTransport``
in the handler, an in-memory one in tests) sends one batch and counts its answered
parts with :meth:`Scheduler.progress`.  The scheduler owns the queue, the order of a
stream's work (docs/architecture.md, "Equal timestamps"), the free slots the flusher
may fill, the shutdown deadline, and the one place a batch's records are counted.
"""
from __future__ import annotations

import itertools
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Set, Tuple

from .errors import Unsent, describe
from .planner import add_counts
from .records import TIMESTAMP, Drop, Event, timestamp_of
from .stats import Reporter, Stats
from .threadstate import thread_state

_flatten = itertools.chain.from_iterable


class Batch:
    """Events of one stream for one PutLogEvents call, and what became of them so far.

    ``sent`` and ``drops`` grow as parts are answered (a refused batch is
    halved); ``on_wire`` is the number of events in a request written and not
    yet answered.  Whatever is neither when the batch is settled is counted by
    the reason its settling gives (see ``Scheduler._settle``).
    """

    __slots__ = ("group", "stream", "log_format", "events", "cut", "settled", "sent", "drops", "on_wire")

    def __init__(self, key: Tuple[str, ...], events: List[Event], cut: Any) -> None:
        self.group, self.stream = key[0], key[1]
        self.log_format = key[2] if len(key) > 2 else None  # "json/emf" for metric documents
        self.events = events
        self.cut = cut
        self.settled = False
        self.sent = 0
        self.drops: Dict[str, int] = {}
        self.on_wire = 0


class Chain:
    """Batches of one stream that one worker sends in order, then its successor, if any.

    The service stores equal timestamps in arrival order, so work that shares
    a timestamp with work still pending for the stream waits behind it; all
    other work of a stream goes out in parallel (docs/architecture.md, "Equal
    timestamps").
    """

    __slots__ = ("key", "batches", "first", "last", "successor", "_stamps")

    def __init__(self, batches: List[Batch]) -> None:
        self.key = (batches[0].group, batches[0].stream)
        self.batches = batches
        self.first = batches[0].events[0][TIMESTAMP]
        self.last = batches[-1].events[-1][TIMESTAMP]
        self.successor: Optional["Chain"] = None
        self._stamps: Optional[List[int]] = None

    def stamps(self, low: int, high: int) -> List[int]:
        """The chain's timestamps within ``[low, high]``, found by bisection: a chain is sorted (planner)."""
        stamps = self._stamps
        if stamps is None:  # made only when ranges overlap, which is rare
            stamps = self._stamps = list(map(timestamp_of, _flatten(b.events for b in self.batches)))
        return stamps[bisect_left(stamps, low):bisect_right(stamps, high)]

    def shares_timestamp(self, other: "Chain") -> bool:
        low, high = max(self.first, other.first), min(self.last, other.last)
        return low <= high and not set(self.stamps(low, high)).isdisjoint(other.stamps(low, high))


class Deliverer(Protocol):
    """Sends one batch for the scheduler: the override point between scheduling and CloudWatch.

    ``deliver`` returns when every part of the batch is answered or given up,
    or when ``scheduler.aborted()``; it counts each answered part with
    ``scheduler.progress``, waits between attempts with ``scheduler.sleep``, and
    marks a request about to be written with ``scheduler.on_wire`` (which raises
    :class:`errors.Unsent` once the batch was counted as not sent).  What it
    leaves uncounted, the scheduler counts when it settles the batch.
    """

    def deliver(self, batch: Batch, scheduler: "Scheduler") -> None: ...


class Scheduler:
    """``concurrency`` worker threads sending chains of batches through a deliverer.

    Every batch is settled exactly once, here: sent, dropped by the reasons its
    deliverer counted, and the rest as ``shutdown`` (never written),
    ``shutdown_in_flight`` (written, unanswered at the deadline) or ``error``
    (the deliverer raised).  ``on_settled`` then releases the batch's records
    from the buffer.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        *,
        concurrency: int,
        stats: Stats,
        reporter: Reporter,
        on_settled: Callable[[Batch], None],
    ) -> None:
        self.deliverer = deliverer
        self.concurrency = concurrency
        self._stats = stats
        self._reporter = reporter
        self._on_settled = on_settled
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)  # after an abort: a batch on the wire was settled
        self._queue: Deque[Chain] = deque()
        self._pending: Dict[Tuple[str, str], List[Chain]] = {}  # per stream: queued, waiting or in flight
        self._queued = 0  # batches not yet started
        self._in_flight: Set[Batch] = set()
        self._abort = threading.Event()
        self._stopping = False
        self.threads: List[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._work_loop, name=f"cwlhandler-sender-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def free_slots(self) -> int:
        """Batches the flusher may still hand over: a queue as deep as the pool."""
        return 2 * self.concurrency - self._queued - len(self._in_flight)

    def submit(self, batches: List[Batch]) -> None:
        """Queue batches of one stream that one worker sends in order (see planner.chains)."""
        chain = Chain(batches)
        with self._lock:
            if not self._abort.is_set():
                pending = self._pending.setdefault(chain.key, [])
                blocker = next((c for c in reversed(pending) if c.shares_timestamp(chain)), None)
                pending.append(chain)
                self._queued += len(batches)
                if blocker is None:
                    self._queue.append(chain)
                    self._work.notify()
                else:
                    while blocker.successor is not None:
                        blocker = blocker.successor
                    blocker.successor = chain
                return
        for batch in batches:
            self._settle(batch, Drop.SHUTDOWN)

    def stop(self) -> None:
        """Let workers exit once the queue is empty."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()

    def abort(self, answer_by: float) -> None:
        """At the shutdown deadline: settle every batch not yet delivered.

        What is on the wire may still be answered: it is given until
        ``answer_by``, then counted as ``shutdown_in_flight`` (the service may
        have stored it).  Everything else never left: ``shutdown``.
        """
        self._abort.set()
        with self._lock:
            pending = [b for chains in self._pending.values() for chain in chains for b in chain.batches]
            self._queue.clear()
            self._pending.clear()
            self._queued = 0
        for batch in pending:
            if not batch.on_wire:
                self._settle(batch, Drop.SHUTDOWN)
        with self._lock:
            while any(b.on_wire for b in self._in_flight):
                remaining = answer_by - time.monotonic()
                if remaining <= 0:
                    break
                self._answered.wait(remaining)
            unanswered = list(self._in_flight)
        for batch in unanswered:
            self._settle(batch, Drop.SHUTDOWN)
        self.stop()

    # -- what a deliverer calls ----------------------------------------------------------
    def aborted(self) -> bool:
        """The shutdown deadline passed: stop sending."""
        return self._abort.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait between attempts; the shutdown deadline cuts the wait short."""
        self._abort.wait(seconds)

    def on_wire(self, batch: Batch, n: int) -> None:
        """A request of ``n`` events of ``batch`` is about to be written; refused once the batch is settled."""
        with self._lock:
            if batch.settled:
                raise Unsent("the shutdown deadline passed; the batch was counted as not sent")
            batch.on_wire = n

    def progress(self, batch: Batch, sent: int, drops: Optional[Dict[str, int]] = None) -> None:
        """A part of ``batch`` was answered (or given up): count it on the batch; it is off the wire."""
        with self._lock:
            batch.on_wire = 0
            batch.sent += sent
            if drops:
                add_counts(batch.drops, drops)

    # -- workers -------------------------------------------------------------------------
    def _work_loop(self) -> None:
        thread_state.shipping = True
        deliver = self.deliverer.deliver
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._work.wait()
                if not self._queue:
                    return
                chain: Optional[Chain] = self._queue.popleft()
            while chain is not None:
                with self._lock:
                    self._queued -= len(chain.batches)
                    self._in_flight.update(chain.batches)
                for batch in chain.batches:
                    rest = Drop.SHUTDOWN  # what the deadline cut short
                    try:
                        deliver(batch, self)
                    except Exception as exc:  # a bug must not kill the worker or lose the count
                        self._reporter.problem("bug", f"unexpected error while sending, batch dropped: {describe(exc)}")
                        rest = Drop.ERROR
                    self._settle(batch, rest)
                chain = self._finish(chain)

    def _finish(self, chain: Chain) -> Optional[Chain]:
        """Forget a sent chain (idle streams leave nothing behind); return what waited behind it."""
        with self._lock:
            pending = self._pending.get(chain.key)
            if pending is not None and chain in pending:
                pending.remove(chain)
                if not pending:
                    del self._pending[chain.key]
            return None if self._abort.is_set() else chain.successor

    def _settle(self, batch: Batch, rest: str) -> None:
        """Count ``batch`` once: what was answered, what is on the wire, and the rest as ``rest``."""
        with self._lock:
            if batch.settled:
                return
            batch.settled = True
            self._in_flight.discard(batch)
            sent, drops = batch.sent, dict(batch.drops)
            unsettled = len(batch.events) - sent - sum(drops.values())
            if batch.on_wire:
                add_counts(drops, {Drop.SHUTDOWN_IN_FLIGHT: batch.on_wire})
                unsettled -= batch.on_wire
            if unsettled:
                add_counts(drops, {rest: unsettled})
            if self._abort.is_set():
                self._answered.notify_all()
        self._stats.add("sent", sent)
        self._stats.drop(drops)
        self._on_settled(batch)
