"""Batch planning: pure functions over plain data, no threads and no I/O.

An event is a tuple ``(timestamp_ms, message, nbytes)`` where ``nbytes`` is the
UTF-8 length of ``message``.  Everything here can be tested exhaustively because
it only turns lists of such tuples into other lists and counts.
"""
from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from itertools import accumulate, chain, repeat
from operator import add
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ._compat import encode_basestring
from .records import MESSAGE, TIMESTAMP, Drop, Event, message_of, nbytes_of, timestamp_of

# PutLogEvents rules, see shared/reference/cloudwatch-facts.md.
EVENT_OVERHEAD = 26
API_MAX_BATCH_COUNT = 10_000
API_MAX_BATCH_BYTES = 1_048_576
API_MAX_EVENT_BYTES = 1_048_576
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_FUTURE_MS = 2 * HOUR_MS
MAX_AGE_MS = 14 * DAY_MS
# "cannot span more than 24 hours": stay strictly inside it.
MAX_SPAN_MS = DAY_MS - 1

# The service refuses an empty message; a record is still worth shipping.
EMPTY_MESSAGE = "(empty message)"
_SURROGATES = re.compile("[\ud800-\udfff]")
_json_string = encode_basestring  # C-accelerated; keeps UTF-8 text as is


def measure(message: str) -> Tuple[str, int]:
    """Return ``(message, utf8_bytes)`` with the message made shippable.

    Empty text would fail the whole request and lone surrogates are not valid
    UTF-8, so they become a placeholder and U+FFFD respectively.  ASCII text,
    the common case, costs two O(1) checks.
    """
    if message.isascii():
        if message:
            return message, len(message)
        return EMPTY_MESSAGE, len(EMPTY_MESSAGE)
    try:
        return message, len(message.encode("utf-8"))
    except UnicodeEncodeError:
        clean = _SURROGATES.sub("\ufffd", message)
        return clean, len(clean.encode("utf-8"))


def _char_boundary(data: bytes, end: int) -> int:
    """Largest index <= end that does not cut a UTF-8 character in two."""
    while 0 < end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1
    return end


def truncation_marker(cut_bytes: int) -> str:
    return f" [... truncated {cut_bytes} bytes]"


def fit_event(event: Event, policy: str, max_event_bytes: int) -> List[Event]:
    """Apply the oversize policy: the events that stand for ``event``.

    ``truncate`` keeps the head and appends a marker naming how many bytes were
    cut; ``split`` returns consecutive same-timestamp pieces that join back to
    the original; ``drop`` returns nothing.
    """
    timestamp, message, nbytes = event
    limit = max_event_bytes - EVENT_OVERHEAD
    if nbytes <= limit:
        return [event]
    if policy == "drop":
        return []
    data = message.encode("utf-8")
    if policy == "truncate":
        room = limit - len(truncation_marker(nbytes))
        keep = _char_boundary(data, room)
        text = data[:keep].decode("utf-8") + truncation_marker(nbytes - keep)
        return [(timestamp, text, len(text.encode("utf-8")))]
    pieces: List[Event] = []
    start = 0
    while start < nbytes:
        end = _char_boundary(data, min(start + limit, nbytes))
        pieces.append((timestamp, data[start:end].decode("utf-8"), end - start))
        start = end
    return pieces


def plan_batches(
    events: List[Event],
    now_ms: int,
    *,
    max_count: int = API_MAX_BATCH_COUNT,
    max_bytes: int = API_MAX_BATCH_BYTES,
    max_age_ms: int = MAX_AGE_MS,
) -> Tuple[List[List[Event]], Dict[str, int]]:
    """Sort ``events`` (stable) and cut them into requests that obey every rule.

    Events the service would reject for their timestamp are removed and
    counted by reason (``too_old``, ``expired`` past ``max_age_ms`` when it is
    shorter than 14 days, ``too_new``) so that no request fails as a whole.
    Every event must already fit (see :func:`fit_event`).  Sorts ``events`` in
    place and returns ``(batches, dropped_by_reason)``.
    """
    events.sort(key=timestamp_of)
    stamps = list(map(timestamp_of, events))
    drops: Dict[str, int] = {}
    too_old_end = bisect_left(stamps, now_ms - MAX_AGE_MS)
    expired_end = max(too_old_end, bisect_left(stamps, now_ms - max_age_ms))
    too_new_start = max(expired_end, bisect_right(stamps, now_ms + MAX_FUTURE_MS))
    for reason, count in (
        (Drop.TOO_OLD, too_old_end),
        (Drop.EXPIRED, expired_end - too_old_end),
        (Drop.TOO_NEW, len(events) - too_new_start),
    ):
        if count:
            drops[reason] = count

    # Greedy cuts found by bisection over running totals, so the per-event work
    # is a few C-level passes rather than a Python loop.
    costs = list(accumulate(map(add, map(nbytes_of, events), repeat(EVENT_OVERHEAD)), initial=0))  # of events[:i]
    batches: List[List[Event]] = []
    start = expired_end
    while start < too_new_start:
        end = max(start + 1, min(  # (an event larger than max_bytes still goes, alone)
            too_new_start,
            start + max_count,
            bisect_right(costs, costs[start] + max_bytes) - 1,
            bisect_right(stamps, stamps[start] + MAX_SPAN_MS),
        ))
        if end < too_new_start and stamps[end] == stamps[end - 1]:
            # Requests of one stream may run in parallel and the service orders equal
            # timestamps by arrival: end before the run of equal timestamps when the
            # batch holds anything else (otherwise chains() keeps them in order).
            # docs/architecture.md, "Equal timestamps", has the whole rule.
            run_start = bisect_left(stamps, stamps[end], start, end)
            if run_start > start:
                end = run_start
        batches.append(events[start:end])
        start = end
    return batches, drops


def chains(batches: List[List[Event]]) -> List[List[List[Event]]]:
    """Group one stream's consecutive batches that share a boundary timestamp.

    The batches of a chain must be sent one after another (the pieces of a
    split record, or more equal timestamps than one request holds); separate
    chains may be sent in parallel without changing the stored order
    (docs/architecture.md, "Equal timestamps").
    """
    result: List[List[List[Event]]] = []
    for batch in batches:
        if result and result[-1][-1][-1][TIMESTAMP] == batch[0][TIMESTAMP]:
            result[-1].append(batch)
        else:
            result.append([batch])
    return result


def rejected_by_reason(info: Mapping[str, int], count: int) -> Dict[str, int]:
    """Count the events of a ``count``-event request that ``rejectedLogEventsInfo`` names.

    ``tooOldLogEventEndIndex`` and ``expiredLogEventEndIndex`` are exclusive
    ends of a prefix; ``tooNewLogEventStartIndex`` is the inclusive start of a
    suffix.  Overlaps are counted once, the older reason first.
    """
    too_old = min(max(int(info.get("tooOldLogEventEndIndex", 0)), 0), count)
    expired = min(max(int(info.get("expiredLogEventEndIndex", 0)), too_old), count)
    too_new = min(max(int(info.get("tooNewLogEventStartIndex", count)), expired), count)
    counts = {Drop.TOO_OLD: too_old, Drop.EXPIRED: expired - too_old, Drop.TOO_NEW: count - too_new}
    return {reason: n for reason, n in counts.items() if n}


def add_counts(total: Dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def request_events(batch: Sequence[Event]) -> List[Dict[str, object]]:
    """The ``logEvents`` parameter of PutLogEvents for a planned batch."""
    return [{"timestamp": e[TIMESTAMP], "message": e[MESSAGE]} for e in batch]


# One event of a body, with \x01 standing for its structural quotes so that the
# messages' own quotes can still be told apart and escaped in one pass over the
# whole body.
_EVENT_TEMPLATE = '{\x01timestamp\x01:%d,\x01message\x01:\x01%s\x01},'
# What a JSON string cannot hold as it is: control characters, " and \ (\x01 aside: the
# messages are checked for the placeholder before they are laid out).
_SPECIAL_BYTES = tuple(bytes([b]) for b in range(0x20) if b != 1) + (b'"', b"\\")
# The characters to escape that real messages hold (quotes in JSON messages,
# newlines in tracebacks), escaped over the whole body by bytes.replace, backslash first.
_BULK_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t"))
_BULK_ESCAPABLE = frozenset(raw for raw, _ in _BULK_ESCAPES)
BODY_TAIL = b"]}"  # the end of a body without an entity


def body_tail(entity: Optional[Mapping[str, object]]) -> bytes:
    """The end of every body of a handler: the events' closing bracket, then its ``entity``, if any.

    Encoded once, so an entity adds nothing to the cost of a request.
    """
    if not entity:
        return BODY_TAIL
    return b'],"entity":' + json.dumps(entity, separators=(",", ":")).encode("ascii") + b"}"


def request_body(group: str, stream: str, batch: Sequence[Event], tail: bytes = BODY_TAIL) -> bytes:
    """The whole PutLogEvents JSON body, as botocore would send it, built cheaply.

    botocore's serializer walks every event in Python (several microseconds
    each), and even the json module's C escaper costs more than the rest of the
    handler's work per event.  Here one %-format lays out all events with the
    messages as they are; a C-level search of the bytes finds what needs
    escaping (usually nothing), and the few characters real messages need
    escaped are replaced over the whole body at once.  Anything rarer goes
    through the C string escaper message by message.  ``tail`` is :func:`body_tail`'s.
    """
    messages = tuple(map(message_of, batch))
    if "\x01" in "".join(messages):
        return _escaped_body(group, stream, batch, tail)  # the placeholder itself in a message
    events = _layout(_EVENT_TEMPLATE, batch, messages).encode("utf-8")
    # One memchr-speed search per special byte: cheaper than any per-byte scan Python offers.
    found = [char for char in _SPECIAL_BYTES if char in events]
    if found:
        if not _BULK_ESCAPABLE.issuperset(found):
            return _escaped_body(group, stream, batch, tail)  # other control characters in a message
        for raw, escaped in _BULK_ESCAPES:
            if raw in found:
                events = events.replace(raw, escaped)
    return b"".join((
        _body_head(group, stream),
        events.replace(b"\x01", b'"'),
        tail,
    ))


def _body_head(group: str, stream: str) -> bytes:
    return ('{"logGroupName":' + _json_string(group) + ',"logStreamName":' + _json_string(stream)
            + ',"logEvents":[').encode("utf-8")


def _escaped_body(group: str, stream: str, batch: Sequence[Event], tail: bytes) -> bytes:
    """The same body with every message escaped by the json module's C string escaper."""
    events = _layout('{"timestamp":%d,"message":%s},', batch, map(_json_string, map(message_of, batch)))
    return _body_head(group, stream) + events.encode("utf-8") + tail


def _layout(template: str, batch: Sequence[Event], texts: Iterable[str]) -> str:
    """All events of ``batch`` as one %-format of ``template`` repeated, without the last comma."""
    return (template * len(batch))[:-1] % tuple(chain.from_iterable(zip(map(timestamp_of, batch), texts)))


__all__ = [
    "Event",
    "measure",
    "fit_event",
    "plan_batches",
    "chains",
    "rejected_by_reason",
    "request_events",
    "request_body",
    "body_tail",
]
