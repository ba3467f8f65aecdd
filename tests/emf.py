"""A validator of Embedded Metric Format documents, written from the EMF specification, owned by the tests.

It does not import cwlhandler: it checks what the handler ships against the specification
(CloudWatch User Guide, "Specification: Embedded metric format") and CloudWatch's metric limits:

- the message is one JSON object, nothing before or after it, no member twice, no NaN or infinity;
- ``_aws`` is an object with ``Timestamp`` (an integer, milliseconds since the epoch) and
  ``CloudWatchMetrics``, a non-empty array of MetricDirectives;
- a MetricDirective has exactly ``Namespace`` (1-255 characters), ``Dimensions`` (an array of
  DimensionSets: arrays of at most 30 dimension names, each a root member with a string value)
  and ``Metrics`` (1 to 100 MetricDefinitions);
- a MetricDefinition has ``Name`` (1-255 characters, a root member whose value is a number or an
  array of 1 to 100 numbers, never a boolean), an optional ``Unit`` from CloudWatch's list and an
  optional ``StorageResolution`` of 1 or 60; a name appears once per document;
- the document, as a log event (UTF-8 bytes + 26), fits the event size limit.

``aggregate`` turns validated documents back into the statistics CloudWatch would compute.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Tuple

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 1_048_576
# Milliseconds since the epoch of 2001-09-09 and of 2286-11-20: a timestamp in seconds (or in microseconds) is out.
MS_RANGE = (10 ** 12, 10 ** 13)


class InvalidDocument(AssertionError):
    pass


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise InvalidDocument(what)


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [k for k, _ in pairs]
    _check(len(keys) == len(set(keys)), f"a member appears twice: {sorted(k for k in keys if keys.count(k) > 1)}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise InvalidDocument(f"{name} is not a JSON number")


def _name(value: Any, what: str) -> str:
    _check(isinstance(value, str) and 1 <= len(value) <= 255, f"{what} must be a string of 1-255 characters: {value!r}")
    return value


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def validate(message: str, max_event_bytes: int = MAX_EVENT_BYTES) -> Dict[str, Any]:
    """The parsed document; raises InvalidDocument naming the first rule ``message`` breaks."""
    size = len(message.encode("utf-8")) + EVENT_OVERHEAD
    _check(size <= min(max_event_bytes, MAX_EVENT_BYTES), f"an event of {size} bytes: over {max_event_bytes}")
    try:
        root = json.loads(message, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as exc:  # also: text before or after the object ("Extra data")
        raise InvalidDocument(f"not one JSON value: {exc}") from None
    _check(isinstance(root, dict), "the root is not an object")
    meta = root.get("_aws")
    _check(isinstance(meta, dict), "_aws is missing or not an object")
    timestamp = meta.get("Timestamp")
    _check(type(timestamp) is int, f"_aws.Timestamp must be an integer: {timestamp!r}")
    _check(MS_RANGE[0] <= timestamp < MS_RANGE[1], f"_aws.Timestamp is not in milliseconds: {timestamp}")
    directives = meta.get("CloudWatchMetrics")
    _check(isinstance(directives, list) and directives, "_aws.CloudWatchMetrics must be a non-empty array")
    names: List[str] = []
    for directive in directives:
        _check(isinstance(directive, dict), "a MetricDirective is not an object")
        _check(set(directive) == {"Namespace", "Dimensions", "Metrics"},
               f"a MetricDirective has exactly Namespace, Dimensions, Metrics: {sorted(directive)}")
        _name(directive["Namespace"], "Namespace")
        dimension_sets = directive["Dimensions"]
        _check(isinstance(dimension_sets, list), "Dimensions must be an array of DimensionSets")
        for dimension_set in dimension_sets:
            _check(isinstance(dimension_set, list), f"a DimensionSet must be an array: {dimension_set!r}")
            _check(len(dimension_set) <= 30, f"a DimensionSet has more than 30 keys: {len(dimension_set)}")
            _check(len(set(dimension_set)) == len(dimension_set), f"a dimension twice in a set: {dimension_set}")
            for dimension in dimension_set:
                _name(dimension, "a dimension reference")
                _check(isinstance(root.get(dimension), str) and root[dimension] != "",
                       f"dimension {dimension!r} must be a root member with a non-empty string value")
        metrics = directive["Metrics"]
        _check(isinstance(metrics, list) and 1 <= len(metrics) <= 100,
               f"Metrics must hold 1-100 MetricDefinitions: {len(metrics) if isinstance(metrics, list) else metrics!r}")
        for definition in metrics:
            _check(isinstance(definition, dict), "a MetricDefinition is not an object")
            _check(set(definition) <= {"Name", "Unit", "StorageResolution"} and "Name" in definition,
                   f"a MetricDefinition has Name and optionally Unit, StorageResolution: {sorted(definition)}")
            name = _name(definition["Name"], "a metric Name")
            names.append(name)
            if "Unit" in definition:
                _check(definition["Unit"] in UNITS, f"unit {definition['Unit']!r} of {name!r} is not a CloudWatch unit")
            if "StorageResolution" in definition:
                resolution = definition["StorageResolution"]
                _check(type(resolution) is int and resolution in (1, 60),
                       f"StorageResolution of {name!r}: {resolution!r}")
            value = root.get(name)
            if isinstance(value, list):
                _check(1 <= len(value) <= 100, f"metric {name!r} has {len(value)} values (1-100 allowed)")
                _check(all(map(_number, value)), f"metric {name!r} has a value that is not a number: {value!r}")
            else:
                _check(_number(value), f"metric {name!r} must be a root member with a number value: {value!r}")
    _check(len(names) == len(set(names)), f"a metric is defined twice in one document: {names}")
    return root


Series = Tuple[str, Tuple[Tuple[str, str], ...], str, str, int]  # namespace, dimensions, metric, unit, resolution


def aggregate(documents: Iterable[str], max_event_bytes: int = MAX_EVENT_BYTES) -> Dict[Series, List[float]]:
    """Every value of every metric, by series, from documents that each pass ``validate``."""
    series: Dict[Series, List[float]] = {}
    for message in documents:
        root = validate(message, max_event_bytes)
        for directive in root["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = tuple(sorted((d, root[d]) for d in dimension_set))
                for definition in directive["Metrics"]:
                    name = definition["Name"]
                    value = root[name]
                    key = (directive["Namespace"], dims, name, definition.get("Unit", "None"),
                           definition.get("StorageResolution", 60))
                    series.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return series


def statistics(values: Iterable[float]) -> Tuple[float, int, float, float]:
    """(sum, count, min, max), as CloudWatch reports them for a series."""
    values = list(values)
    return math.fsum(values), len(values), min(values), max(values)
