"""Counters and the stderr reporter.

Problems are written straight to ``sys.stderr``, never through ``logging``:
the handler must not feed its own troubles back into itself.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Dict, Mapping

from .planner import add_counts

REPORT_INTERVAL = 60.0


class Stats:
    """Thread-safe counters: ``sent``, ``api_calls``, ``retries``, ``entity_rejected`` and drops by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {"sent": 0, "api_calls": 0, "retries": 0, "entity_rejected": 0}
        self.dropped_by_reason: Dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def drop(self, drops: Mapping[str, int]) -> None:
        with self._lock:
            for reason, n in drops.items():
                if n:
                    self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + n

    def snapshot(self) -> Dict[str, object]:
        with self._lock:
            result: Dict[str, object] = dict(self.counts)
            result["dropped_by_reason"] = dict(self.dropped_by_reason)
        return result


def no_stats() -> Dict[str, object]:
    """The counters of a pipeline that has not started."""
    return {"emitted": 0, "sent": 0, "dropped": 0, "dropped_by_reason": {}, "api_calls": 0, "retries": 0,
            "buffered": 0, "entity_rejected": 0}


def combined(a: Mapping[str, object], b: Mapping[str, object]) -> Dict[str, Any]:
    """Two pipelines' counters added up (a handler that ships record by record retires one per record)."""
    result: Dict[str, object] = {k: v + b.get(k, 0) for k, v in a.items() if k != "dropped_by_reason"}  # type: ignore[operator]
    drops = dict(a["dropped_by_reason"])  # type: ignore[call-overload]
    add_counts(drops, b["dropped_by_reason"])  # type: ignore[arg-type]
    result["dropped_by_reason"] = drops
    return result


class Reporter:
    """Writes problems and drop summaries to stderr, each kind at most once a minute."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._reported_drops: Dict[str, int] = {}

    def _due(self, key: str, now: float, force: bool) -> bool:
        """Whether ``key`` may be reported at ``now``; the caller holds the lock."""
        last = self._last.get(key)
        if not force and last is not None and now - last < REPORT_INTERVAL:
            return False
        self._last[key] = now
        return True

    def problem(self, key: str, text: str) -> None:
        """Report a condition a person must act on (bad credentials, missing group...)."""
        now = self._clock()
        with self._lock:
            due = self._due("problem:" + key, now, False)
        if due:
            write(f"cwlhandler ({self.name}): {text}")

    def once(self, key: str, text: str) -> None:
        """Report a condition that stays as long as the handler (a rejected entity): the first time only."""
        with self._lock:
            if "once:" + key in self._last:
                return
            self._last["once:" + key] = self._clock()
        write(f"cwlhandler ({self.name}): {text}")

    def drops(self, dropped_by_reason: Mapping[str, int], force: bool = False) -> None:
        """Report drops not yet reported; ``force`` ignores the once-a-minute limit (at close).

        One lock region reads what was reported, decides and records it: the
        flusher and ``shutdown`` report concurrently, and two regions let both
        report the same drops, or an older snapshot wind the record back.
        """
        now = self._clock()
        with self._lock:
            reported = self._reported_drops
            new = {r: n - reported.get(r, 0) for r, n in dropped_by_reason.items() if n > reported.get(r, 0)}
            if not new or not self._due("drops", now, force):
                return
            reported.update((r, reported.get(r, 0) + n) for r, n in new.items())
        detail = ", ".join(f"{r}: {n}" for r, n in sorted(new.items()))
        write(f"cwlhandler ({self.name}): dropped {sum(new.values())} log events ({detail}); see stats()")


def write(line: str) -> None:
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except Exception:
        pass
