"""Embedded Metric Format (EMF) documents: the rules, checks of user input, and pure packing.

No threads, no I/O: ``metrics.py`` aggregates values and calls ``documents`` once per flush
interval.  The rules come from the EMF specification and CloudWatch's metric limits:

- a document is one JSON object with ``_aws: {Timestamp (ms), CloudWatchMetrics: [directive]}``;
  a directive has ``Namespace``, ``Dimensions`` (dimension sets, at most 30 keys each) and
  ``Metrics`` (at most 100 definitions of ``Name``, ``Unit``, ``StorageResolution``);
- every name a directive references is a member of the root: a dimension's value is a
  string, a metric's value a number or an array of at most 100 numbers;
- a document is a log event, so it obeys the event size limit (``max_event_bytes``).

Documents are encoded with ASCII-only JSON (``\\uXXXX`` escapes), so their size in bytes is
their length.
"""
from __future__ import annotations

import json
import math
import re
from collections import deque
from typing import Any, Callable, Deque, List, Mapping, Optional, Sequence, Set, Tuple

from .planner import EVENT_OVERHEAD

MAX_METRICS = 100  # metric definitions per document
MAX_VALUES = 100  # values of one metric per document
MAX_DIMENSIONS = 30  # keys per dimension set
MAX_NAME = 255  # namespace, metric and dimension names
MAX_DIMENSION_VALUE = 1024
RESOLUTIONS = (60, 1)  # StorageResolution: standard (the default) and high resolution
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})
_NAMESPACE = re.compile(r"[A-Za-z0-9._#:/\-]+\Z")
_MAX_FLOAT = 1.7976931348623157e308
_encode: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # ASCII only
# Room a document needs for one metric with a one-character name and a one-digit value, whatever its unit.
_SMALL_METRIC = len('{"Name":"m","Unit":"Kilobytes/Second","StorageResolution":1},"m":0')
_TIMESTAMP_DIGITS = 13

Entry = Tuple[str, str, int]  # (metric name, unit, storage resolution): what one value list is kept under
Pairs = Tuple[Tuple[str, str], ...]  # dimensions (name, value), or properties (key, encoded member), by name


def check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not 0 < len(namespace) <= MAX_NAME or not _NAMESPACE.match(namespace):
        raise ValueError(f"namespace: expected 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ # : / -, got {namespace!r}")
    if namespace.startswith(("AWS/", ":")):
        raise ValueError(f"namespace: must not start with 'AWS/' (reserved for AWS) or ':', got {namespace!r}")
    return namespace


def _text(what: str, value: Any, limit: int, ascii_only: bool) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValueError(f"{what}: expected a string of 1-{limit} characters, not only spaces, got {value!r}")
    if ascii_only and not value.isascii():
        raise ValueError(f"{what}: must be ASCII (CloudWatch dimensions), got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: lone surrogates are not text: {value!r}") from None
    return value


def check_metric_name(name: Any) -> str:
    text = _text("metric name", name, MAX_NAME, ascii_only=False)
    if text == "_aws":
        raise ValueError("metric name: '_aws' is the document's metadata member")
    return text


def check_dimensions(dimensions: Optional[Mapping[str, str]]) -> Pairs:
    """Validated ``(name, value)`` pairs, sorted by name (the order does not change a metric's identity)."""
    if dimensions is None:
        return ()
    if not isinstance(dimensions, Mapping):
        raise ValueError(f"dimensions: expected a dict of name to value, got {dimensions!r}")
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValueError(f"dimensions: at most {MAX_DIMENSIONS} per metric (a CloudWatch limit), got {len(dimensions)}")
    for name, value in dimensions.items():
        _text("dimension name", name, MAX_NAME, ascii_only=True)
        if name.startswith(":") or name == "_aws":
            raise ValueError(f"dimension name: must not start with ':' or be '_aws', got {name!r}")
        _text(f"dimension {name!r}: value", value, MAX_DIMENSION_VALUE, ascii_only=True)
    return tuple(sorted(dimensions.items()))


def check_value(value: Any) -> Any:
    """A finite int or float for a document (bool, NaN, inf and anything else: ValueError)."""
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # False for NaN and +-inf: cheaper than a call
            return value
    elif kind is int:
        if -_MAX_FLOAT <= value <= _MAX_FLOAT:
            return value
    elif kind is not bool:
        try:
            number = float(value)  # numpy and Decimal numbers, as a float
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if math.isfinite(number) and not isinstance(value, (str, bytes)):
            return number
    raise ValueError(f"metric value: expected a finite number, got {value!r}")


def check_unit(unit: Any) -> str:
    if not isinstance(unit, str) or unit not in UNITS:
        raise ValueError(f"unit: expected one of CloudWatch's units ({', '.join(sorted(UNITS))}), got {unit!r}")
    return unit


def check_resolution(resolution: Any) -> int:
    if type(resolution) is not int or resolution not in RESOLUTIONS:
        raise ValueError(f"storage_resolution: expected 60 (standard) or 1 (high resolution), got {resolution!r}")
    return resolution


def merge_dimensions(base: Pairs, extra: Optional[Mapping[str, str]]) -> Pairs:
    """``base`` with ``extra`` added (``extra`` wins), validated and sorted."""
    check_dimensions(extra)
    return check_dimensions({**dict(base), **(extra or {})})


def property_member(key: Any, value: Any) -> str:
    """A property's encoded ``,"key":value`` member (it rides in every document of its set)."""
    if not isinstance(key, str) or not key or key == "_aws":
        raise ValueError(f"property: the key must be a non-empty string other than '_aws', got {key!r}")
    try:
        return "," + _encode(key) + ":" + _encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"property {key!r}: not a JSON value ({exc})") from None


class DocKey:
    """What a document is made for: a namespace, a dimension set with its values, and properties.

    Compared by identity (its hash is the object's): the aggregator interns keys, so a
    ``put_metric`` costs no hashing of nested tuples.  The JSON that every document of the
    key repeats is encoded once, here.
    """

    __slots__ = ("namespace", "dimensions", "properties", "reserved", "directive", "members")

    def __init__(self, namespace: str, dimensions: Pairs, properties: Pairs,
                 max_event_bytes: int) -> None:
        clash = {name for name, _ in dimensions} & {key for key, _ in properties}
        if clash:
            raise ValueError(f"property {sorted(clash)[0]!r}: a dimension has that name (both are root members)")
        self.namespace = namespace
        self.dimensions = dimensions
        self.properties = properties  # (key, encoded member)
        # Root members a metric must not take: its value would replace a dimension's or a property's.
        self.reserved = frozenset([name for name, _ in dimensions] + [key for key, _ in properties] + ["_aws"])
        self.directive = (',"CloudWatchMetrics":[{"Namespace":' + _encode(namespace) + ',"Dimensions":['
                          + _encode([name for name, _ in dimensions]) + '],"Metrics":[')
        self.members = "".join("," + _encode(name) + ":" + _encode(value) for name, value in dimensions)
        self.members += "".join(member for _, member in properties)
        room = max_event_bytes - EVENT_OVERHEAD - self.fixed_bytes() - _SMALL_METRIC
        if room < 0:
            raise ValueError(f"namespace, dimensions and properties take {self.fixed_bytes()} bytes of each metrics "
                             f"document: no room for a metric within max_event_bytes ({max_event_bytes})")

    def fixed_bytes(self) -> int:
        """Bytes of a document of this key before any metric (the timestamp counted at 13 digits)."""
        return len('{"_aws":{"Timestamp":') + _TIMESTAMP_DIGITS + len(self.directive) + len("]}]}") + len(
            self.members) + len("}")


class _Pending:
    """One (name, unit, resolution) entry's values, consumed document by document."""

    __slots__ = ("name", "definition", "member", "values", "pos")

    def __init__(self, entry: Entry, values: Sequence[Any]) -> None:
        name, unit, resolution = entry
        self.name = name
        self.definition = '{"Name":' + _encode(name) + ',"Unit":' + _encode(unit) + (
            ',"StorageResolution":1}' if resolution == 1 else "}")
        self.member = "," + _encode(name) + ":"
        self.values = values
        self.pos = 0


def _fit(values: Sequence[Any], start: int, room: int) -> Tuple[str, int]:
    """As many values from ``start`` as fit in ``room`` bytes (at most MAX_VALUES): their JSON and count.

    One value is a bare number, more an array (both are valid metric targets).
    """
    texts: List[str] = []
    used = -1  # the commas between values: one fewer than the values
    for value in values[start:start + MAX_VALUES]:
        text = repr(value)  # finite int or float: valid JSON, shortest round trip
        cost = used + 1 + len(text) + (2 if texts else 0)  # brackets once there are two
        if cost > room:
            break
        texts.append(text)
        used += 1 + len(text)
    if len(texts) == 1:
        return texts[0], 1
    return "[" + ",".join(texts) + "]", len(texts)


def documents(key: DocKey, timestamp_ms: int, entries: Mapping[Entry, Sequence[Any]],
              max_event_bytes: int) -> Tuple[List[str], int]:
    """Pack every value of ``entries`` into as few valid documents as the rules allow.

    A document holds at most MAX_METRICS metrics, a metric at most MAX_VALUES values,
    each name once (the same name under another unit or resolution goes to another
    document), and stays within ``max_event_bytes``.  Returns the documents and the
    number of values dropped because even alone in a document they did not fit.
    """
    head = '{"_aws":{"Timestamp":' + str(timestamp_ms) + key.directive
    limit = max_event_bytes - EVENT_OVERHEAD
    base = len(head) + len("]}]}") + len(key.members) + len("}")
    queue: Deque[_Pending] = deque(_Pending(entry, values) for entry, values in entries.items() if values)
    docs: List[str] = []
    dropped = 0
    while queue:
        size = base
        definitions: List[str] = []
        members: List[str] = []
        names: Set[str] = set()
        later: List[_Pending] = []
        while queue and len(definitions) < MAX_METRICS:
            pending = queue.popleft()
            if pending.name in names:
                later.append(pending)
                continue
            overhead = len(pending.definition) + len(pending.member) + (1 if definitions else 0)
            text, count = _fit(pending.values, pending.pos, limit - size - overhead)
            if not count:
                if definitions:  # this document is full
                    queue.appendleft(pending)
                    break
                dropped += 1  # a value too long for any document of this key (a tiny max_event_bytes)
                pending.pos += 1
                if pending.pos < len(pending.values):
                    queue.appendleft(pending)
                continue
            size += overhead + len(text)
            definitions.append(pending.definition)
            members.append(pending.member + text)
            names.add(pending.name)
            pending.pos += count
            if pending.pos < len(pending.values):
                later.append(pending)
        queue.extendleft(reversed(later))
        if definitions:
            docs.append(head + ",".join(definitions) + "]}]}" + key.members + "".join(members) + "}")
    return docs, dropped
