"""Pure-logic tests of cwlhandler.planner against the PutLogEvents rules.

Every expectation is computed independently (brute force, straight from
shared/reference/cloudwatch-facts.md), never by calling the function under test.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwlhandler.planner import (
    API_MAX_BATCH_BYTES,
    API_MAX_BATCH_COUNT,
    API_MAX_EVENT_BYTES,
    DAY_MS,
    EMPTY_MESSAGE,
    EVENT_OVERHEAD,
    HOUR_MS,
    MAX_AGE_MS,
    MAX_FUTURE_MS,
    chains,
    fit_event,
    measure,
    plan_batches,
    rejected_by_reason,
    request_body,
    request_events,
    truncation_marker,
)

NOW = 1_700_000_000_000
SMALL_MAX = 300  # a small max_event_bytes: message limit 274 bytes
FAST = settings(max_examples=150, deadline=None)
MARKER_RE = re.compile(r" \[\.\.\. truncated (\d+) bytes\]\Z")

# 1-, 2-, 3- and 4-byte characters, plus anything (including lone surrogates).
MULTIBYTE = st.sampled_from("az é ß € 中 😀 𝄞")
ANY_CHAR = st.one_of(
    MULTIBYTE, st.characters(exclude_categories=()), st.characters(categories=["Cs"])
)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def event(ts: int, message: str) -> tuple:
    return (ts, message, utf8_len(message))


def cost(batch) -> int:
    return sum(e[2] + EVENT_OVERHEAD for e in batch)


# ---------------------------------------------------------------- measure


@pytest.mark.parametrize(
    "message, expected, nbytes",
    [
        ("hello", "hello", 5),
        (" ", " ", 1),
        ("é", "é", 2),
        ("€", "€", 3),
        ("😀", "😀", 4),
        ("a€😀é", "a€😀é", 10),
        ("", EMPTY_MESSAGE, len(EMPTY_MESSAGE)),
        ("\ud800", "\ufffd", 3),
        ("x\udfffy", "x\ufffdy", 5),
        ("\ud83d\ude00", "\ufffd\ufffd", 6),  # a pair split into code points is still invalid
        ("é\udc80", "é\ufffd", 5),
    ],
)
def test_measure_examples(message, expected, nbytes):
    assert measure(message) == (expected, nbytes)


@FAST
@given(st.text(ANY_CHAR, max_size=60))
def test_measure_property(message):
    clean, nbytes = measure(message)
    expected = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in message)
    assert clean == (expected or EMPTY_MESSAGE)
    assert nbytes == len(clean.encode("utf-8", errors="strict")) >= 1


# ---------------------------------------------------------------- fit_event


def check_truncated(original: tuple, result: list, max_event_bytes: int) -> None:
    limit = max_event_bytes - EVENT_OVERHEAD
    assert len(result) == 1
    ts, text, nbytes = result[0]
    assert ts == original[0]
    assert nbytes == len(text.encode("utf-8", errors="strict")) <= limit
    match = MARKER_RE.search(text)
    assert match, text[-60:]
    head = text[: match.start()]
    assert original[1].startswith(head)
    head_bytes = utf8_len(head)
    assert int(match.group(1)) == original[2] - head_bytes  # names exactly the bytes cut
    # Keeps as much as fits: at most a partial character (3 bytes) more could have gone in.
    assert head_bytes >= limit - len(truncation_marker(original[2])) - 3


def check_split(original: tuple, result: list, max_event_bytes: int) -> None:
    limit = max_event_bytes - EVENT_OVERHEAD
    assert len(result) >= 2
    assert "".join(piece[1] for piece in result) == original[1]
    for i, (ts, text, nbytes) in enumerate(result):
        assert ts == original[0]
        assert 0 < nbytes == len(text.encode("utf-8", errors="strict")) <= limit
        if i < len(result) - 1:  # greedy: only a cut character's bytes are left out
            assert nbytes > limit - 4


@pytest.mark.parametrize("policy", ["truncate", "split", "drop"])
@pytest.mark.parametrize("max_event_bytes", [SMALL_MAX, API_MAX_EVENT_BYTES])
def test_fit_event_leaves_fitting_events_alone(policy, max_event_bytes):
    limit = max_event_bytes - EVENT_OVERHEAD
    for message in ["x", "é" * (limit // 2), "a" * limit, "a" * (limit - 3) + "€"]:
        ev = event(NOW, message)
        assert fit_event(ev, policy, max_event_bytes) == [ev]


@pytest.mark.parametrize("max_event_bytes", [SMALL_MAX, API_MAX_EVENT_BYTES])
@pytest.mark.parametrize("filler", ["a", "é", "€", "😀"])
@pytest.mark.parametrize("extra", [1, 2, 3, 1000])
def test_fit_event_one_byte_over_and_more(max_event_bytes, filler, extra):
    limit = max_event_bytes - EVENT_OVERHEAD
    body = filler * (limit // utf8_len(filler))
    ev = event(NOW, "b" * (limit - utf8_len(body) + extra) + body)
    assert ev[2] == limit + extra
    check_truncated(ev, fit_event(ev, "truncate", max_event_bytes), max_event_bytes)
    check_split(ev, fit_event(ev, "split", max_event_bytes), max_event_bytes)
    assert fit_event(ev, "drop", max_event_bytes) == []


def test_truncate_marker_text():
    assert truncation_marker(1234) == " [... truncated 1234 bytes]"
    ev = event(NOW, "a" * 1000)
    [(_, text, _)] = fit_event(ev, "truncate", SMALL_MAX)
    head = text[: MARKER_RE.search(text).start()]
    assert text == head + truncation_marker(1000 - len(head))


@FAST
@given(
    text=st.text(MULTIBYTE | st.characters(exclude_categories=("Cs",)), min_size=1, max_size=400),
    max_event_bytes=st.integers(256, 600),
    ts=st.integers(0, 2 * NOW),
)
def test_fit_event_property(text, max_event_bytes, ts):
    ev = event(ts, text)
    limit = max_event_bytes - EVENT_OVERHEAD
    if ev[2] <= limit:
        for policy in ("truncate", "split", "drop"):
            assert fit_event(ev, policy, max_event_bytes) == [ev]
        return
    check_truncated(ev, fit_event(ev, "truncate", max_event_bytes), max_event_bytes)
    check_split(ev, fit_event(ev, "split", max_event_bytes), max_event_bytes)
    assert fit_event(ev, "drop", max_event_bytes) == []


# ---------------------------------------------------------------- plan_batches


def classify(ts: int, now: int, max_age_ms: int):
    """The service's verdict on one timestamp: a drop reason, or None to keep."""
    if ts < now - MAX_AGE_MS:
        return "too_old"
    if ts < now - max_age_ms:
        return "expired"
    if ts > now + MAX_FUTURE_MS:
        return "too_new"
    return None


def run_plan(events, now=NOW, *, max_count=API_MAX_BATCH_COUNT, max_bytes=API_MAX_BATCH_BYTES,
             max_age_ms=MAX_AGE_MS):
    """Plan a copy of ``events`` and check every rule and invariant; return the plan."""
    work = list(events)
    batches, drops = plan_batches(work, now, max_count=max_count, max_bytes=max_bytes,
                                  max_age_ms=max_age_ms)
    assert [e[0] for e in work] == sorted(e[0] for e in events)  # documented: sorts in place

    verdicts = [classify(e[0], now, max_age_ms) for e in events]
    expected_drops = Counter(v for v in verdicts if v)
    assert drops == dict(expected_drops)  # no zero entries either
    kept = sorted((e for e, v in zip(events, verdicts) if v is None), key=lambda e: e[0])
    assert [e for batch in batches for e in batch] == kept  # stable order, nothing lost

    for batch in batches:
        assert 1 <= len(batch) <= max_count
        assert cost(batch) <= max_bytes
        stamps = [e[0] for e in batch]
        assert stamps == sorted(stamps)
        assert stamps[-1] - stamps[0] < DAY_MS
        assert all(now - max_age_ms <= t <= now + MAX_FUTURE_MS for t in stamps)
    for k, (batch, following) in enumerate(zip(batches, batches[1:])):  # greedy: closed only when it had to
        if batch[-1][0] == following[0][0]:
            # Chained: only a batch that is all one millisecond may end inside a run of equal timestamps.
            assert {e[0] for e in batch} == {following[0][0]}
            run = following[:1]
        else:
            # Ended before a run of equal timestamps: the whole run (which may go on into the batches
            # after) would not have fitted.
            later = [e for b in batches[k + 1:] for e in b]
            run = list(itertools.takewhile(lambda e: e[0] == following[0][0], later))  # noqa: B023 (used at once)
        assert (len(batch) + len(run) > max_count
                or cost(batch) + cost(run) > max_bytes
                or run[0][0] - batch[0][0] >= DAY_MS)
    grouped = chains(batches)
    assert [b for chain in grouped for b in chain] == batches
    for chain in grouped:
        assert all(a[-1][0] == b[0][0] for a, b in zip(chain, chain[1:]))
    for a, b in zip(grouped, grouped[1:]):  # separate chains never share a timestamp
        assert a[-1][-1][0] < b[0][0][0]
    return batches, drops


@st.composite
def plan_inputs(draw):
    max_age_ms = draw(st.one_of(st.just(MAX_AGE_MS), st.integers(0, MAX_AGE_MS),
                                st.sampled_from([DAY_MS, 3 * DAY_MS, 7 * DAY_MS])))
    special = [-MAX_AGE_MS - 1, -MAX_AGE_MS, -max_age_ms - 1, -max_age_ms,
               MAX_FUTURE_MS, MAX_FUTURE_MS + 1, 0]
    offsets = st.one_of(
        st.integers(-30 * DAY_MS, 10 * DAY_MS),  # 40 days around now
        st.sampled_from(special),
        st.tuples(st.integers(-14, 0), st.sampled_from([-1, 0, 1])).map(lambda t: t[0] * DAY_MS + t[1]),
        st.integers(-48, 2).map(lambda h: h * HOUR_MS),  # equal timestamps and exact 24 h gaps
    )
    rows = draw(st.lists(st.tuples(offsets, st.text(MULTIBYTE, max_size=40)), max_size=60))
    events = [event(NOW + off, f"{i}:{text}") for i, (off, text) in enumerate(rows)]
    biggest = max((e[2] + EVENT_OVERHEAD for e in events), default=EVENT_OVERHEAD + 1)
    max_count = draw(st.one_of(st.integers(1, 8), st.just(API_MAX_BATCH_COUNT)))
    max_bytes = draw(st.one_of(st.integers(biggest, 6 * biggest), st.just(API_MAX_BATCH_BYTES)))
    return events, dict(max_count=max_count, max_bytes=max_bytes, max_age_ms=max_age_ms)


@FAST
@given(plan_inputs())
def test_plan_batches_property(case):
    events, limits = case
    run_plan(events, **limits)


def test_plan_batches_empty():
    assert plan_batches([], NOW) == ([], {})


@pytest.mark.parametrize(
    "offset, max_age_ms, reason",
    [
        (-MAX_AGE_MS, MAX_AGE_MS, None),
        (-MAX_AGE_MS - 1, MAX_AGE_MS, "too_old"),
        (-DAY_MS, DAY_MS, None),
        (-DAY_MS - 1, DAY_MS, "expired"),
        (-MAX_AGE_MS, DAY_MS, "expired"),
        (-MAX_AGE_MS - 1, DAY_MS, "too_old"),
        (MAX_FUTURE_MS, DAY_MS, None),
        (MAX_FUTURE_MS + 1, MAX_AGE_MS, "too_new"),
        (0, 0, None),
        (-MAX_AGE_MS, 30 * DAY_MS, None),  # a longer max age never keeps what the service refuses
        (-MAX_AGE_MS - 1, 30 * DAY_MS, "too_old"),
        (-1, 0, "expired"),
    ],
)
def test_plan_batches_timestamp_boundaries(offset, max_age_ms, reason):
    ev = event(NOW + offset, "m")
    batches, drops = run_plan([ev], max_age_ms=max_age_ms)
    assert (batches, drops) == (([], {reason: 1}) if reason else ([[ev]], {}))


@pytest.mark.parametrize("gap, n_batches", [(DAY_MS - 1, 1), (DAY_MS, 2), (DAY_MS + 1, 2)])
def test_plan_batches_24h_span_edge(gap, n_batches):
    start = NOW - 3 * DAY_MS
    events = [event(start, "a"), event(start + gap // 2, "b"), event(start + gap, "c")]
    batches, _ = run_plan(events)
    assert len(batches) == n_batches
    if n_batches == 2:
        assert batches[1] == [events[2]]


@pytest.mark.parametrize("extra, n_batches", [(0, 1), (1, 2)])
def test_plan_batches_byte_limit_edge(extra, n_batches):
    events = [event(NOW, "a" * 74), event(NOW, "b" * 74)]  # 100 bytes each with overhead
    batches, _ = run_plan(events, max_bytes=200 - extra)
    assert len(batches) == n_batches


def test_plan_batches_count_limit_and_stable_order():
    events = [event(NOW - i % 2, f"m{i}") for i in range(5)]
    batches, _ = run_plan(events, max_count=2)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [e[1] for b in batches for e in b] == ["m1", "m3", "m0", "m2", "m4"]


# ---------------------------------------------------------------- rejected_by_reason

OLD, EXP, NEW = "tooOldLogEventEndIndex", "expiredLogEventEndIndex", "tooNewLogEventStartIndex"


def brute_rejected(info, count):
    counts = Counter()
    for i in range(count):
        if i < info.get(OLD, 0):
            counts["too_old"] += 1
        elif i < info.get(EXP, 0):
            counts["expired"] += 1
        elif i >= info.get(NEW, count):
            counts["too_new"] += 1
    return dict(counts)


@pytest.mark.parametrize(
    "info, count, expected",
    [
        ({}, 5, {}),
        ({}, 0, {}),
        ({OLD: 2}, 5, {"too_old": 2}),
        ({EXP: 3}, 5, {"expired": 3}),
        ({NEW: 3}, 5, {"too_new": 2}),
        ({NEW: 0}, 5, {"too_new": 5}),
        ({NEW: 5}, 5, {}),
        ({OLD: 2, EXP: 4}, 5, {"too_old": 2, "expired": 2}),
        ({OLD: 4, EXP: 2}, 5, {"too_old": 4}),
        ({OLD: 3, EXP: 3}, 5, {"too_old": 3}),
        ({OLD: 2, NEW: 0}, 5, {"too_old": 2, "too_new": 3}),
        ({OLD: 1, EXP: 2, NEW: 4}, 5, {"too_old": 1, "expired": 1, "too_new": 1}),
        ({OLD: 10}, 5, {"too_old": 5}),
        ({EXP: 10, NEW: 2}, 5, {"expired": 5}),
        ({NEW: 10}, 5, {}),
        ({NEW: -3}, 5, {"too_new": 5}),
        ({OLD: -1}, 5, {}),
    ],
)
def test_rejected_by_reason_table(info, count, expected):
    assert rejected_by_reason(info, count) == expected


@FAST
@given(
    info=st.dictionaries(st.sampled_from([OLD, EXP, NEW]), st.integers(-3, 30)),
    count=st.integers(0, 25),
)
def test_rejected_by_reason_property(info, count):
    result = rejected_by_reason(info, count)
    assert result == brute_rejected(info, count)
    assert set(result) <= {"too_old", "expired", "too_new"}
    assert all(n > 0 for n in result.values())
    assert sum(result.values()) <= count


# ---------------------------------------------------------------- request_events


def test_request_events_shape():
    batch = [event(NOW, "first"), event(NOW, "é€"), event(NOW + 5, "last")]
    assert request_events(batch) == [
        {"timestamp": NOW, "message": "first"},
        {"timestamp": NOW, "message": "é€"},
        {"timestamp": NOW + 5, "message": "last"},
    ]
    assert request_events([]) == []
    assert all(type(item) is dict and set(item) == {"timestamp", "message"}
               for item in request_events(batch))


def test_request_body_is_the_json_botocore_would_send():
    import json

    batch = [event(NOW, "first"), event(NOW + 5, "é€ \x00")]
    body = request_body("grp", "str", batch)
    assert json.loads(body.decode("utf-8")) == {
        "logGroupName": "grp",
        "logStreamName": "str",
        "logEvents": request_events(batch),
    }
    assert "é€".encode("utf-8") in body  # compact UTF-8, not \u escapes


# Text that exercises every escaping route: plain, the characters escaped over the whole body
# (quotes, backslashes, newlines, tabs, carriage returns), other control characters, the
# placeholder character itself, non-ASCII text and JSON-looking text.
_TRICKY = st.text(alphabet=st.sampled_from(list('ab "\\\n\r\t\x00\x01\x07\x1f\x7fé€😀{}:,u0')) | st.characters(
    blacklist_categories=("Cs",)), min_size=1, max_size=40)


# Text with only the characters escaped in bulk, so that whole batches take that route.
_BULKY = st.text(alphabet=st.sampled_from(list('ab "\\\n\r\té€')), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**45), _TRICKY), min_size=1, max_size=30)
       | st.lists(st.tuples(st.integers(0, 2**45), _BULKY), min_size=1, max_size=30))
def test_request_body_equals_the_json_module_for_any_text(pairs):
    import json

    batch = [(ts, msg, len(msg.encode("utf-8"))) for ts, msg in sorted(pairs)]
    body = request_body("grp", "a/b:c", batch)
    expected = {"logGroupName": "grp", "logStreamName": "a/b:c", "logEvents": request_events(batch)}
    assert json.loads(body.decode("utf-8")) == expected
    # Byte for byte what the json module writes for the same document (compact, UTF-8 kept).
    assert body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
