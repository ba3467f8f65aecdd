"""Custom metrics in Embedded Metric Format (EMF), shipped by the handler itself.

``handler.metrics(namespace, dimensions)`` returns a :class:`Metrics`.  Its ``put_metric``
validates the value cheaply and appends it to an in-memory aggregate under a lock: a
dictionary update, no JSON.  Once per ``flush_interval`` the flusher thread drains the
aggregate into EMF documents (``emfdoc.documents``), one set per (namespace, dimension set,
properties), and appends them to the handler's buffer as ordinary items, so they get the
same batching, retries and accounting as log records; ``flush()`` and ``close()`` drain it
at once.  Every value put is in a document exactly once, so CloudWatch's sum, count, min and
max are those of what was put.

Documents go to a stream of their own by default (``metrics_stream``): requests that carry
them get the ``x-amzn-logs-format: json/emf`` header, which tells CloudWatch Logs to extract
metrics (regions without EMF auto-detection need it), and a plain line in such a request
would be stored but count as an EMF parsing error.  Their item key carries the format as a
third element, so a request never mixes documents and log lines, even in one stream.
"""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from .emfdoc import (
    UNITS,
    DocKey,
    Entry,
    Pairs,
    check_dimensions,
    check_metric_name,
    check_namespace,
    check_resolution,
    check_unit,
    check_value,
    documents,
    merge_dimensions,
    property_member,
)
from .naming import NameTemplate, Router
from .records import Drop, Item
from .stats import Reporter

LOG_FORMAT = "json/emf"  # the x-amzn-logs-format header's value, and the third element of a document's key
DEFAULT_METRICS_STREAM = "metrics/{hostname}/{program}/{pid}"
# Values one flush interval may hold before more are dropped (counted as OVERFLOW): about 3 MiB of
# floats, and at least 1,000 documents of 100 values.  Bounds memory when the flusher cannot keep up.
MAX_VALUES_PER_INTERVAL = 100_000
OVERFLOW = Drop.METRICS_OVERFLOW
_CACHE_LIMIT = 4096  # interned document keys and validated names; forgotten at once when full
_TIMER_SCALE = {"Seconds": 1.0, "Milliseconds": 1e3, "Microseconds": 1e6}
_getpid = os.getpid


def check_metrics_stream(template: str) -> NameTemplate:
    """The ``metrics_stream`` setting: a stream template with no per-record placeholder but ``{date}``."""
    stream = NameTemplate("metrics_stream", template, "stream")
    if set(stream.record_fields) - {"date"}:
        raise ValueError(f"metrics_stream: metrics have no record: only {{date}} and the process placeholders "
                         f"may be used, got {template!r}")
    return stream


class Aggregator:
    """The values put since the last drain: by document key, then by (name, unit, resolution).

    Thread-safe; ``add`` holds the lock for a few dictionary operations.  ``on_first`` runs
    (outside the lock) when a value arrives in an empty aggregate, to start the interval's
    clock; ``on_fork`` when a process forked without Python's fork hooks (uWSGI) puts a value.
    """

    def __init__(self, max_values: int, max_event_bytes: int, on_first: Callable[[], None],
                 on_fork: Callable[[], object]) -> None:
        self.max_values = max_values
        self.max_event_bytes = max_event_bytes
        self._on_first = on_first
        self._on_fork = on_fork
        self._keys: Dict[Tuple[Any, ...], DocKey] = {}
        self.names: Set[str] = set()  # metric names already found valid
        self.reset()

    def reset(self) -> None:
        """Empty, with a new lock: in a forked child, the values put before the fork are the parent's to ship."""
        self._lock = threading.Lock()  # the parent's may have been held at the fork
        self._tables: Dict[DocKey, Tuple[int, Dict[Entry, List[Any]]]] = {}
        self._count = 0
        self._overflow = 0  # dropped for the bound since the last drain (reported then)
        self.first_at: Optional[float] = None  # monotonic time of the first value since the last drain
        self.closed = False
        self.dropped: Dict[str, int] = {}
        self._pid = _getpid()

    def key(self, namespace: str, dimensions: Pairs,
            properties: Pairs) -> DocKey:
        """The interned key: puts through any Metrics with the same set share documents."""
        ident = (namespace, dimensions, properties)
        key = self._keys.get(ident)
        if key is None:
            key = DocKey(namespace, dimensions, properties, self.max_event_bytes)
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys = {}
            self._keys[ident] = key
        return key

    def learn_name(self, name: Any) -> None:
        check_metric_name(name)
        if len(self.names) >= _CACHE_LIMIT:
            self.names = set()
        self.names.add(name)

    def add(self, key: DocKey, entry: Entry, value: Any) -> None:
        if self._pid != _getpid():
            self._on_fork()
        with self._lock:
            if self._count < self.max_values and not self.closed:
                table = self._tables.get(key)
                if table is not None:
                    values = table[1].get(entry)
                    if values is not None:  # the common case: one append
                        values.append(value)
                        self._count += 1
                        return
            first = self._add_slow(key, entry, value)
        if first:
            self._on_first()

    def _add_slow(self, key: DocKey, entry: Entry, value: Any) -> bool:
        """A new key or entry, or a value to drop (called with the lock held); True for the interval's first."""
        if self.closed or self._count >= self.max_values:
            reason = Drop.CLOSED if self.closed else OVERFLOW
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            self._overflow += reason == OVERFLOW
            return False
        first = self.first_at is None
        if first:
            self.first_at = time.monotonic()
        table = self._tables.get(key)
        if table is None:  # the documents' timestamp: when the interval's first value of the key came
            table = self._tables[key] = (int(time.time() * 1000), {})
        table[1].setdefault(entry, []).append(value)
        self._count += 1
        return first

    def take(self) -> Tuple[Dict[DocKey, Tuple[int, Dict[Entry, List[Any]]]], int]:
        """Everything put since the last drain, and how many values the bound dropped meanwhile."""
        with self._lock:
            tables, self._tables = self._tables, {}
            overflow, self._overflow = self._overflow, 0
            self._count = 0
            self.first_at = None
        return tables, overflow

    def count(self, reason: str, n: int) -> None:
        if n:
            with self._lock:
                self.dropped[reason] = self.dropped.get(reason, 0) + n

    def close(self) -> None:
        """Values put from now on are dropped and counted as ``closed``."""
        with self._lock:
            self.closed = True

    def drop_counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.dropped)


class Metrics:
    """Puts metric values for one namespace, with default dimensions and properties.

    Made by ``CloudWatchLogsHandler.metrics``; cheap to keep and share between threads.
    Bad input raises ``ValueError`` at the call; a value that cannot be kept (the handler
    closed, the per-interval bound reached) is dropped and counted in ``handler.stats()``.
    """

    __slots__ = ("_aggregator", "namespace", "_dimensions", "_properties", "_key", "_by_dimensions")

    def __init__(self, aggregator: Aggregator, namespace: str, dimensions: Pairs = (),
                 properties: Pairs = ()) -> None:
        self._aggregator = aggregator
        self.namespace = namespace
        self._dimensions = dimensions
        self._properties = properties
        self._key = aggregator.key(namespace, dimensions, properties)  # validates the set as a whole
        self._by_dimensions: Dict[Tuple[Any, ...], DocKey] = {}

    @property
    def dimensions(self) -> Dict[str, str]:
        return dict(self._dimensions)

    def put_metric(self, name: str, value: float, unit: str = "None", dimensions: Optional[Mapping[str, str]] = None,
                   storage_resolution: int = 60) -> None:
        """Record one value of metric ``name``.

        ``dimensions`` are added to this object's for this value (they win on a clash);
        for a set used often, ``with_dimensions`` validates it once.  ``unit`` is one of
        CloudWatch's units; ``storage_resolution`` 60 (standard) or 1 (high resolution:
        the documents of an interval share its first value's timestamp, so the resolution
        CloudWatch can show is ``flush_interval``).
        """
        aggregator = self._aggregator
        if type(name) is not str or name not in aggregator.names:
            aggregator.learn_name(name)
        key = self._key if dimensions is None else self._key_for(dimensions)
        if name in key.reserved:
            raise ValueError(f"metric name: {name!r} is a dimension or property of this set (both are root members)")
        if type(unit) is not str or unit not in UNITS:
            check_unit(unit)
        if type(storage_resolution) is not int or (storage_resolution != 60 and storage_resolution != 1):
            check_resolution(storage_resolution)
        if type(value) is not float or value - value != 0.0:  # not a finite float: the checks that fit its type
            value = check_value(value)
        aggregator.add(key, (name, unit, storage_resolution), value)

    def _key_for(self, dimensions: Mapping[str, str]) -> DocKey:
        try:
            ident: Optional[Tuple[Any, ...]] = tuple(dimensions.items())
            key = self._by_dimensions.get(ident)  # type: ignore[arg-type]
        except (AttributeError, TypeError):  # not a dict, or unhashable values: the check below says which
            ident, key = None, None
        if key is None:
            pairs = merge_dimensions(self._dimensions, dimensions)
            key = self._aggregator.key(self.namespace, pairs, self._properties)
            if ident is not None:
                if len(self._by_dimensions) >= _CACHE_LIMIT:
                    self._by_dimensions = {}
                self._by_dimensions[ident] = key
        return key

    def with_dimensions(self, dimensions: Mapping[str, str]) -> "Metrics":
        """A Metrics with these dimensions added to this one's (and a copy of its properties)."""
        return Metrics(self._aggregator, self.namespace, merge_dimensions(self._dimensions, dimensions),
                       self._properties)

    def set_property(self, key: str, value: Any) -> None:
        """Add a member to every document of this object from now on (a version, a host role...).

        Any JSON value; it is not a metric and not a dimension.  Documents are made per
        distinct set of properties, so a value that changes on every call (a request id)
        makes one document per value: log it instead.
        """
        properties = dict(self._properties)
        properties[key] = property_member(key, value)
        pairs = tuple(sorted(properties.items()))
        self._key = self._aggregator.key(self.namespace, self._dimensions, pairs)
        self._properties = pairs
        self._by_dimensions = {}

    def timed(self, name: str, unit: str = "Milliseconds", dimensions: Optional[Mapping[str, str]] = None,
              storage_resolution: int = 60) -> Any:
        """Time a unit of work: ``with metrics.timed("Checkout"):`` or ``@metrics.timed("Checkout")``.

        Puts the elapsed wall time (``time.perf_counter``) in ``unit`` (Seconds, Milliseconds or
        Microseconds) when the block ends, also when it raises.  Checked here, so the put cannot fail.
        """
        if unit not in _TIMER_SCALE:
            raise ValueError(f"unit: timed() measures in {', '.join(_TIMER_SCALE)}, got {unit!r}")
        check_metric_name(name)
        check_resolution(storage_resolution)
        key = self._key if dimensions is None else self._key_for(dimensions)
        if name in key.reserved:
            raise ValueError(f"metric name: {name!r} is a dimension or property of this set (both are root members)")
        return _timing(self, name, unit, dimensions, storage_resolution)

    def __repr__(self) -> str:
        return f"<Metrics {self.namespace!r} {dict(self._dimensions)!r}>"


@contextmanager
def _timing(metrics: Metrics, name: str, unit: str, dimensions: Optional[Mapping[str, str]],
            resolution: int) -> Iterator[None]:
    # A generator context manager is made anew for each decorated call: concurrent calls do not share a start.
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.put_metric(name, (time.perf_counter() - start) * _TIMER_SCALE[unit], unit, dimensions, resolution)


class MetricsShipper:
    """A handler's metrics: the aggregate, where its documents go, and the drain the flusher runs."""

    def __init__(self, group: NameTemplate, stream: NameTemplate, handler_uuid: str, flush_interval: float,
                 max_event_bytes: int, reporter: Reporter, on_first: Callable[[], None],
                 on_fork: Callable[[], object]) -> None:
        if set(group.record_fields) - {"date"}:
            raise ValueError(f"log_group: metrics have no record, so the group of their documents may use only "
                             f"{{date}} and the process placeholders, got {group.template!r}")
        self._router = Router(group, stream, handler_uuid)
        self._shipping = threading.Lock()  # held from a drain until its documents are in the buffer
        self._interval = flush_interval
        self._max_event_bytes = max_event_bytes
        self.reporter = reporter
        self.aggregator = Aggregator(MAX_VALUES_PER_INTERVAL, max_event_bytes, on_first, on_fork)

    def metrics(self, namespace: str, dimensions: Optional[Mapping[str, str]]) -> Metrics:
        return Metrics(self.aggregator, check_namespace(namespace), check_dimensions(dimensions))

    def tick(self, append: Callable[[List[Item]], None]) -> float:
        """The flusher's hook: ship once the interval's first value waited ``flush_interval``; seconds until
        it should be called again (infinity while the aggregate is empty: its first value pokes the flusher)."""
        first_at = self.aggregator.first_at
        if first_at is None:
            return math.inf
        wait = first_at + self._interval - time.monotonic()
        if wait > 0:
            return wait
        self.ship(append)
        return math.inf

    def ship(self, append: Callable[[List[Item]], None]) -> None:
        """Drain, and hand the documents to ``append``, as one step: a ``flush()`` that finds the aggregate
        empty while the flusher ships it must not return before those documents are in the buffer."""
        with self._shipping:
            items = self.drain()
            if items:
                append(items)

    def drain(self) -> List[Item]:
        """Every value put so far, as buffer items of EMF documents."""
        tables, overflow = self.aggregator.take()
        if overflow:
            self.reporter.problem(
                OVERFLOW, f"more than {self.aggregator.max_values:,} metric values in one flush interval: "
                f"{overflow:,} were dropped and counted as {OVERFLOW!r} (put fewer, or shorten flush_interval)")
        items: List[Item] = []
        for key, (timestamp, entries) in tables.items():
            try:
                docs, dropped = documents(key, timestamp, entries, self._max_event_bytes)
            except Exception as exc:  # a bug: those values are lost, but counted and said
                lost = sum(map(len, entries.values()))
                self.reporter.problem("bug", f"unexpected error while making metric documents, {lost} value(s) "
                                      f"dropped: {type(exc).__name__}: {exc}")
                docs = []
                self.aggregator.count(Drop.ERROR, lost)
            else:
                self.aggregator.count(Drop.OVERSIZE, dropped)
            group, stream = self._router.route(None, timestamp)  # type: ignore[arg-type]  # only {date} is read
            route = (group, stream, LOG_FORMAT)
            items += [(timestamp, doc, len(doc), route) for doc in docs]
        return items

    def reset(self, handler_uuid: str, reporter: Reporter) -> None:
        """In a forked child: nothing of the parent's aggregate, the child's own ``{pid}`` and ``{uuid}``."""
        self.aggregator.reset()
        self._shipping = threading.Lock()  # the flusher of the parent may have held it at the fork
        self._router.reset(handler_uuid)
        self.reporter = reporter
