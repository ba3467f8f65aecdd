"""The per-process pipeline: buffer -> flusher thread -> planner -> scheduler -> deliverer.

A handler makes one pipeline on its first record and a new one in a forked
child, so a child never shares threads, sockets or buffered records with its
parent.  The pipeline's client is made before its threads start, on the
application's thread (see ``client.ProcessClient``).
"""
from __future__ import annotations

import threading
import time
from operator import countOf
from typing import Callable, Dict, List, Optional, Tuple

from .buffer import Buffer, Cut
from .config import Settings
from .errors import describe
from .planner import EVENT_OVERHEAD, add_counts, chains, fit_event, plan_batches
from .records import KEY, NBYTES, Drop, Event, Item, key_of, nbytes_of
from .scheduler import Batch, Deliverer, Scheduler
from .stats import Reporter, Stats
from .threadstate import thread_state

# How often an idle flusher wakes to report drops that happened meanwhile.
REPORT_TICK = 5.0
# After an unexpected error in the flusher's cycle, how long it waits before the next.
BUG_PAUSE = 1.0
# After the shutdown deadline, how long a request already on the wire may still be answered.
ANSWER_GRACE = 0.2




def now_ms() -> int:
    return int(time.time() * 1000)


class Pipeline:
    """One process's buffer, flusher thread and scheduler, sending through ``deliverer``.

    The flusher takes cuts from the buffer when records are due and the
    scheduler has free slots, plans them (pure functions of ``planner``) and
    hands the batches over; every record ends counted in ``stats``: sent, or
    dropped with a reason.  ``shutdown`` delivers by a deadline.  The deliverer
    is ``transport.CloudWatchTransport`` in the handler, an in-memory one in
    tests (tests/test_scheduler.py).
    """

    def __init__(
        self,
        settings: Settings,
        deliverer: Deliverer,
        reporter: Reporter,
        stats: Optional[Stats] = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.reporter = reporter
        self.stats = stats if stats is not None else Stats()
        self._clock_ms = clock_ms
        self.buffer = Buffer(
            max_records=settings.max_buffer_records,
            max_bytes=settings.max_buffer_bytes,
            on_full=settings.on_full,
            batch_count=settings.max_batch_count,
            batch_bytes=settings.max_batch_bytes,
            flush_interval=settings.flush_interval,
        )
        self.deliverer = deliverer
        self.scheduler = Scheduler(
            deliverer,
            concurrency=settings.max_concurrency,
            stats=self.stats,
            reporter=reporter,
            on_settled=lambda batch: self.buffer.settle(batch.cut),
        )
        self._flusher = threading.Thread(target=self._run, name="cwlhandler-flusher", daemon=True)
        # Called by the flusher once per cycle when set (the handler's metrics: MetricsShipper.tick) with
        # Buffer.append_due for the items it finds due; returns the seconds until it wants to be called
        # again.  poke() has it called at once.
        self.tick: Optional[Callable[[Callable[[List[Item]], None]], float]] = None

    def start(self) -> None:
        """Start the threads; if one cannot start, the ones that did end at once, and the error is raised."""
        try:
            self.scheduler.start()
            self._flusher.start()
        except RuntimeError:
            self.scheduler.stop()
            raise

    # -- the flusher thread ------------------------------------------------------------
    def _run(self) -> None:
        thread_state.shipping = True
        while True:
            try:
                if not self._cycle():
                    return
            except Exception as exc:  # a bug must not end the flusher: nothing would ship again
                self.reporter.problem("bug", f"unexpected error in the flusher (tried again in {BUG_PAUSE:g} s): "
                                      f"{describe(exc)}")
                time.sleep(BUG_PAUSE)  # a bug that repeats must not become a busy loop

    def _cycle(self) -> bool:
        """Take what is due, plan and hand it over, report drops; False once the buffer is closed and empty."""
        taken = self.buffer.take(self.scheduler.free_slots, idle=self._run_tick())
        if taken is None:
            return False
        if taken:
            self._submit(*taken)
        self.reporter.drops(self.stats_snapshot()["dropped_by_reason"])  # type: ignore[arg-type]
        return True

    def _run_tick(self) -> float:
        """Run ``tick``; how long the flusher may wait for records before the next call."""
        tick = self.tick
        if tick is None:
            return REPORT_TICK
        try:
            wait = tick(self.buffer.append_due)
        except Exception as exc:  # a bug must not end the flusher
            self.reporter.problem("bug", f"unexpected error in the flusher's tick: {describe(exc)}")
            return REPORT_TICK
        return min(REPORT_TICK, wait)

    def poke(self) -> None:
        """Have the flusher call ``tick`` now (a metric value arrived in an empty aggregate)."""
        self.buffer.poke()

    def _submit(self, cut: Cut, items: List[Item]) -> None:
        """Plan the batches of a cut and hand them over; the records are counted whatever happens."""
        try:
            work, drops = self._plan(cut, items)
        except Exception as exc:  # a bug must not end the flusher: every flush() would then wait in vain
            self.reporter.problem("bug", f"unexpected error while planning, {len(items)} record(s) dropped: "
                                  f"{describe(exc)}")
            work, drops = [], {Drop.ERROR: len(items)}
        self.stats.drop(drops)
        self.buffer.open_batches(cut, sum(map(len, work)))
        for chain in work:
            self.scheduler.submit(chain)
        self.buffer.settle(cut)  # release the flusher's hold on the cut

    def _plan(self, cut: Cut, items: List[Item]) -> Tuple[List[List[Batch]], Dict[str, int]]:
        """Apply the oversize policy, group by stream, plan: the batches, in chains, and the drops by reason."""
        settings = self.settings
        limit = settings.max_event_bytes - EVENT_OVERHEAD
        streams: Dict[Tuple[str, ...], List[Event]] = {}
        oversize = 0
        first = items[0][KEY]
        if countOf(map(key_of, items), first) == len(items) and max(map(nbytes_of, items)) <= limit:
            streams[first] = items  # type: ignore[assignment]  # the common case, without a per-record Python loop
        else:
            for item in items:
                events = streams.get(item[KEY])
                if events is None:
                    events = streams[item[KEY]] = []
                if item[NBYTES] <= limit:
                    events.append(item)  # type: ignore[arg-type]  # the planner reads only the first three fields
                else:
                    fitted = fit_event(item[:3], settings.oversize, settings.max_event_bytes)
                    oversize += not fitted
                    events.extend(fitted)
        drops: Dict[str, int] = {Drop.OVERSIZE: oversize} if oversize else {}
        now = self._clock_ms()
        work: List[List[Batch]] = []
        for key, events in streams.items():
            planned, dropped = plan_batches(
                events,
                now,
                max_count=settings.max_batch_count,
                max_bytes=settings.max_batch_bytes,
                max_age_ms=settings.max_age_ms,
            )
            add_counts(drops, dropped)
            work += [[Batch(key, batch, cut) for batch in chain] for chain in chains(planned)]
        return work, drops

    # -- flush, shutdown, stats ----------------------------------------------------------
    def flush(self, deadline: float) -> bool:
        return self.buffer.wait_settled(deadline)

    def shutdown(self, deadline: float) -> bool:
        """Deliver what can be delivered by ``deadline``; count the rest as ``shutdown`` drops."""
        self.buffer.close()  # first: a record appended after the end is read would reach a stopped scheduler
        target = self.buffer.appended
        settled = self.buffer.wait_settled(deadline, target)
        if not settled:
            self.buffer.abandon()
            self.scheduler.abort(time.monotonic() + ANSWER_GRACE)
        self.scheduler.stop()
        # Idle threads end at once; after an abort a worker may sit in an HTTP call: its
        # batch is already counted, and as a daemon it cannot hold up the exit.
        join_by = deadline if settled else time.monotonic() + 0.05
        for thread in [self._flusher] + self.scheduler.threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, join_by - time.monotonic()))
        self.reporter.drops(self.stats_snapshot()["dropped_by_reason"], force=True)  # type: ignore[arg-type]
        return settled

    def stats_snapshot(self) -> Dict[str, object]:
        result = self.stats.snapshot()
        drops: Dict[str, int] = result["dropped_by_reason"]  # type: ignore[assignment]
        buffer = self.buffer
        add_counts(drops, {Drop.BUFFER_FULL: buffer.dropped_full, Drop.SHUTDOWN: buffer.dropped_shutdown})
        result["dropped_by_reason"] = {k: v for k, v in drops.items() if v}
        result["emitted"] = buffer.emitted
        result["dropped"] = sum(drops.values())
        result["buffered"] = len(buffer)
        return result
