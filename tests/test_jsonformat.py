"""JsonFormatter: field shape, options, dictConfig, and the never-raise guarantee."""
from __future__ import annotations

import io
import json
import logging
import logging.config
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cwlhandler
from cwlhandler.jsonformat import CORE_FIELDS, DEFAULT_FIELDS, RESERVED_ATTRS, JsonFormatter
from helpers import subprocess_env

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name}")


def loads(text: str) -> Dict[str, Any]:
    """Strict parse: one line, no NaN/Infinity, encodable as UTF-8 (what CloudWatch needs)."""
    assert isinstance(text, str)
    assert "\n" not in text
    text.encode("utf-8")
    obj = json.loads(text, parse_constant=_no_constants)
    assert isinstance(obj, dict)
    return obj


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture():
    """A private logger whose records are kept for formatting in the test."""
    logger = logging.Logger("jsonfmt.test", logging.DEBUG)  # not registered: no global state
    handler = _Collect()
    logger.addHandler(handler)

    def last() -> logging.LogRecord:
        return handler.records[-1]

    logger.last = last  # type: ignore[attr-defined]
    return logger


def fmt(record: logging.LogRecord, **options: Any) -> Dict[str, Any]:
    return loads(JsonFormatter(**options).format(record))


def bare_record(msg: Any = "m", args: Any = None, **attrs: Any) -> logging.LogRecord:
    record = logging.LogRecord("bare", logging.INFO, __file__, 7, msg, args, None)
    record.__dict__.update(attrs)
    return record


# -- fields --------------------------------------------------------------------------------------


def test_every_default_field(capture):
    capture.warning("hello %s", "world"); line = sys._getframe().f_lineno  # noqa: E702
    record = capture.last()
    out = fmt(record)
    assert list(out) == ["timestamp", "level", "logger", "message", "module", "function", "line",
                         "process", "thread"]
    assert TS_RE.match(out["timestamp"])
    assert out["level"] == "WARNING"
    assert out["logger"] == "jsonfmt.test"
    assert out["message"] == "hello world"
    assert out["module"] == "test_jsonformat"
    assert out["function"] == "test_every_default_field"
    assert out["line"] == line
    assert out["process"] == os.getpid()
    assert out["thread"] == threading.current_thread().name
    assert record.message == "hello world"  # set like logging.Formatter.format does


def test_defaults_and_constants():
    assert "thread_id" in CORE_FIELDS and "thread_id" not in DEFAULT_FIELDS
    assert {"message", "asctime", "taskName", "msg", "args", "exc_info"} <= RESERVED_ATTRS


def test_thread_id_and_field_selection(capture):
    capture.info("x")
    out = fmt(capture.last(), fields=["message", "thread_id", "level"])
    assert out == {"message": "x", "thread_id": threading.get_ident(), "level": "INFO"}
    assert list(out) == ["message", "thread_id", "level"]


def test_output_is_compact_single_line(capture):
    capture.info("a\nb")
    text = JsonFormatter().format(capture.last())
    assert ", " not in text and '": ' not in text
    assert loads(text)["message"] == "a\nb"


# -- timestamp -----------------------------------------------------------------------------------


def test_timestamp_is_utc_iso_with_millis(capture):
    capture.info("x")
    record = capture.last()
    stamp = fmt(record)["timestamp"]
    assert TS_RE.match(stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert int(parsed.timestamp() * 1000) == math.floor(record.created * 1000)


@pytest.mark.parametrize("created, expected", [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (1795670513.123456, "2026-11-26T05:21:53.123Z"),
    (1795670513.999, "2026-11-26T05:21:53.999Z"),
    (1795670514.0005, "2026-11-26T05:21:54.000Z"),
])
def test_timestamp_known_values(created, expected):
    record = bare_record()
    record.created = created
    assert fmt(record)["timestamp"] == expected


def test_timestamp_cache_tracks_seconds():
    formatter = JsonFormatter()
    stamps = []
    for created in (100.001, 100.999, 101.5, 100.25):
        record = bare_record()
        record.created = created
        stamps.append(loads(formatter.format(record))["timestamp"])
    assert stamps == ["1970-01-01T00:01:40.001Z", "1970-01-01T00:01:40.999Z",
                      "1970-01-01T00:01:41.500Z", "1970-01-01T00:01:40.250Z"]


# -- exceptions and stack_info -------------------------------------------------------------------


class CustomError(Exception):
    pass


def test_exception_fields(capture):
    try:
        raise ValueError("bad value")
    except ValueError:
        capture.exception("failed")
    record = capture.last()
    out = fmt(record)
    exc = out["exception"]
    assert exc["type"] == "ValueError"
    assert exc["message"] == "bad value"
    assert exc["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise ValueError("bad value")' in exc["traceback"]
    assert exc["traceback"].endswith("ValueError: bad value")
    assert out["message"] == "failed" and out["level"] == "ERROR"
    assert record.exc_text == exc["traceback"]  # cached like logging.Formatter does


def test_exception_type_is_module_qualified(capture):
    try:
        raise CustomError("x")
    except CustomError:
        capture.error("e", exc_info=True)
    assert fmt(capture.last())["exception"]["type"] == f"{__name__}.CustomError"


def test_exception_instance_as_exc_info(capture):
    capture.error("e", exc_info=KeyError("k"))
    exc = fmt(capture.last())["exception"]
    assert exc["type"] == "KeyError" and exc["message"] == "'k'"


def test_exc_info_without_active_exception(capture):
    capture.error("e", exc_info=True)  # outside except: (None, None, None)
    assert "exception" not in fmt(capture.last())


def test_exc_text_only_record():
    # What a SocketHandler peer rebuilds: exc_info dropped, exc_text kept.
    record = logging.makeLogRecord({"msg": "m", "exc_text": "Traceback ...\nOSError: x"})
    assert fmt(record)["exception"] == {"traceback": "Traceback ...\nOSError: x"}


def test_stack_info(capture):
    capture.info("where", stack_info=True)
    out = fmt(capture.last())
    assert out["stack_info"].startswith("Stack (most recent call last):")
    assert "test_stack_info" in out["stack_info"]
    assert "stack_info" not in fmt(bare_record())


# -- extras and collisions -----------------------------------------------------------------------


def test_extras_at_top_level_in_order(capture):
    capture.info("x", extra={"user_id": 42, "tags": ["a", "b"], "ctx": {"k": {"n": 1.5}}, "none": None})
    out = fmt(capture.last())
    assert list(out)[-4:] == ["user_id", "tags", "ctx", "none"]
    assert out["user_id"] == 42 and out["tags"] == ["a", "b"]
    assert out["ctx"] == {"k": {"n": 1.5}} and out["none"] is None


def test_record_factory_attributes_are_extras():
    record = bare_record(otelTraceID="abc")
    assert fmt(record)["otelTraceID"] == "abc"


def test_extra_colliding_with_core_is_prefixed(capture):
    capture.info("x", extra={"level": "mine", "timestamp": 1, "exception": "not one"})
    out = fmt(capture.last())
    assert out["level"] == "INFO" and TS_RE.match(out["timestamp"])
    assert out["extra_level"] == "mine" and out["extra_timestamp"] == 1
    # reserved even when this record has no exception: queries see a stable name
    assert "exception" not in out and out["extra_exception"] == "not one"


def test_repeated_collisions_lose_nothing(capture):
    capture.info("x", extra={"level": 1, "extra_level": 2})
    out = fmt(capture.last())
    assert out["level"] == "INFO"
    assert {out["extra_level"], out["extra_extra_level"]} == {1, 2}


def test_omitted_core_name_is_free_for_extras(capture):
    capture.info("x", extra={"line": "custom"})
    assert fmt(capture.last(), omit=["line"])["line"] == "custom"


def test_non_str_key_on_record():
    record = bare_record()
    record.__dict__[5] = "five"
    record.__dict__[("a", 1)] = "tuple"
    out = fmt(record)
    assert out["5"] == "five" and out["('a', 1)"] == "tuple"


# -- dict messages -------------------------------------------------------------------------------


def test_dict_message_merged_without_message(capture):
    capture.info({"user": 1, "action": "login"})
    out = fmt(capture.last())
    assert out["user"] == 1 and out["action"] == "login"
    assert "message" not in out
    assert out["level"] == "INFO"


def test_dict_message_key_becomes_message(capture):
    capture.info({"message": "logged in", "user": 1})
    out = fmt(capture.last())
    assert out["message"] == "logged in" and out["user"] == 1
    assert "extra_message" not in out
    assert capture.last().message == "logged in"


def test_dict_msg_key_becomes_message(capture):
    capture.info({"msg": "logged in", "user": 1})
    out = fmt(capture.last())
    assert out["message"] == "logged in" and "msg" not in out


def test_dict_with_both_keys_keeps_msg_as_field(capture):
    capture.info({"message": "a", "msg": "b"})
    out = fmt(capture.last())
    assert out["message"] == "a" and out["msg"] == "b"


def test_dict_message_collisions_and_extras(capture):
    capture.info({"level": "x", "user": 1}, extra={"user": 2})
    out = fmt(capture.last(), static={"service": "api"})
    assert out["level"] == "INFO" and out["extra_level"] == "x"
    assert out["user"] == 1 and out["extra_user"] == 2 and out["service"] == "api"


def test_dict_message_nested_and_non_str_keys(capture):
    capture.info({1: "one", "nested": {"a": [1, 2]}})
    out = fmt(capture.last())
    assert out["1"] == "one" and out["nested"] == {"a": [1, 2]}


def test_dict_message_with_non_str_message_value(capture):
    capture.info({"message": 123})
    out = fmt(capture.last())
    assert out["message"] == 123 and capture.last().message == "123"


# -- rename / omit / static / options ------------------------------------------------------------


def test_rename(capture):
    capture.info("hi", extra={"severity": "mine"})
    out = fmt(capture.last(), rename={"message": "msg", "level": "severity", "timestamp": "@timestamp"})
    assert out["msg"] == "hi" and out["severity"] == "INFO" and TS_RE.match(out["@timestamp"])
    assert "message" not in out and "level" not in out
    assert out["extra_severity"] == "mine"


def test_rename_nested_exception_field(capture):
    try:
        raise OSError("disk")
    except OSError:
        capture.exception("x")
    out = fmt(capture.last(), rename={"exception": "error"})
    assert out["error"]["type"] == "OSError"


def test_omit(capture):
    capture.info("x")
    out = fmt(capture.last(), omit=["process", "thread", "module"])
    assert not {"process", "thread", "module"} & set(out)
    assert out["message"] == "x"


def test_static_fields(capture):
    capture.info("x", extra={"env": "override?"})
    out = fmt(capture.last(), static={"service": "api", "env": "prod"})
    assert out["service"] == "api" and out["env"] == "prod"
    assert out["extra_env"] == "override?"


def test_static_values_are_copied():
    static = {"service": "api"}
    formatter = JsonFormatter(static=static)
    static["service"] = "changed"
    assert loads(formatter.format(bare_record()))["service"] == "api"


@pytest.mark.parametrize("options", [
    {"static": {"level": "x"}},
    {"static": {"msg": "x"}, "rename": {"message": "msg"}},
    {"static": {1: "x"}},
    {"rename": {"nope": "x"}},
    {"omit": ["nope"]},
    {"fields": ["message", "nope"]},
    {"rename": {"message": "level"}},
    {"rename": {"message": ""}},
])
def test_bad_configuration_fails_at_construction(options):
    with pytest.raises(ValueError):
        JsonFormatter(**options)


def test_static_may_reuse_an_omitted_core_name():
    out = loads(JsonFormatter(omit=["process"], static={"process": "worker"}).format(bare_record()))
    assert out["process"] == "worker"


def test_sort_keys_and_ensure_ascii():
    record = bare_record("héllo ☃", zeta=1, alpha=2)
    text = JsonFormatter(sort_keys=True, ensure_ascii=True).format(record)
    assert text.isascii()
    out = loads(text)
    assert list(out) == sorted(out) and out["message"] == "héllo ☃"
    assert "héllo ☃" in JsonFormatter().format(record)  # default keeps UTF-8 readable


def test_boolean_options_given_as_text():
    """dictConfig passes what a settings file says: "false" must not be a true (non-empty) string."""
    record = bare_record("héllo", zeta=1, alpha=2)
    text = JsonFormatter(sort_keys="false", ensure_ascii="false").format(record)
    assert "héllo" in text and list(loads(text))[-2:] == ["zeta", "alpha"]
    text = JsonFormatter(sort_keys="true", ensure_ascii="yes").format(record)
    assert text.isascii() and list(loads(text)) == sorted(loads(text))
    for option in ("sort_keys", "ensure_ascii"):
        with pytest.raises(ValueError, match=option):
            JsonFormatter(**{option: "maybe"})


# -- dictConfig ----------------------------------------------------------------------------------


def _dictconfig_roundtrip(factory: str, **options: Any) -> Dict[str, Any]:
    stream = io.StringIO()
    name = f"jsonfmt.dictconfig.{factory}"
    # dictConfig flushes and closes every existing handler: hide the ones other tests own.
    saved_list, saved_named = logging._handlerList[:], dict(logging._handlers)  # type: ignore[attr-defined]
    del logging._handlerList[:]  # type: ignore[attr-defined]
    try:
        _apply_dictconfig(name, factory, stream, options)
    finally:
        logging._handlerList[:0] = saved_list  # type: ignore[attr-defined]
        logging._handlers.update(saved_named)  # type: ignore[attr-defined]
    logger = logging.getLogger(name)
    try:
        logger.info("configured %d", 1, extra={"req": "r-1"})
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    return loads(lines[0])


def _apply_dictconfig(name: str, factory: str, stream: io.StringIO, options: Dict[str, Any]) -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": factory, "static": {"service": "api"},
                                "rename": {"message": "msg"}, "omit": ["process"], **options}},
        "handlers": {"mem": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": stream}},
        "loggers": {name: {"handlers": ["mem"], "level": "INFO", "propagate": False}},
    })


def test_dictconfig_module_path():
    out = _dictconfig_roundtrip("cwlhandler.jsonformat.JsonFormatter")
    assert out["msg"] == "configured 1" and out["service"] == "api" and out["req"] == "r-1"
    assert "process" not in out and out["level"] == "INFO"


@pytest.mark.skipif(not hasattr(cwlhandler, "JsonFormatter"), reason="not exported from cwlhandler yet")
def test_dictconfig_package_path():
    out = _dictconfig_roundtrip("cwlhandler.JsonFormatter")
    assert out["msg"] == "configured 1" and out["service"] == "api"


# -- never raise ---------------------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BrokenMapping(Mapping):
    def __getitem__(self, key):
        raise RuntimeError("broken")

    def __iter__(self):
        raise RuntimeError("broken")

    def __len__(self) -> int:
        return 1


def test_too_few_args(capture):
    capture.info("%s and %s", 1)
    out = fmt(capture.last())
    assert out["message"] == "%s and %s"
    assert out["format_error"].startswith("TypeError:") and "args=(1,)" in out["format_error"]


def test_too_many_args(capture):
    capture.info("no placeholders", 1, 2)
    out = fmt(capture.last())
    assert out["message"] == "no placeholders" and "TypeError" in out["format_error"]


def test_bad_format_spec(capture):
    capture.info("%d", "not a number")
    assert fmt(capture.last())["message"] == "%d"


def test_unprintable_message(capture):
    capture.info(Unprintable())
    out = fmt(capture.last())
    assert out["message"] == "<unprintable Unprintable>" and "RuntimeError" in out["format_error"]


def test_unprintable_extra_and_arg(capture):
    capture.info("%s", Unprintable(), extra={"obj": Unprintable(), "lst": [Unprintable()]})
    out = fmt(capture.last())
    assert out["obj"] == "<unprintable Unprintable>" and out["lst"] == ["<unprintable Unprintable>"]
    assert out["message"] == "%s"


def test_exception_with_unprintable_str(capture):
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("nope")

    try:
        raise Weird()
    except Weird:
        capture.exception("x")
    exc = fmt(capture.last())["exception"]
    assert exc["type"].endswith("Weird") and isinstance(exc["message"], str)
    assert "Traceback" in exc["traceback"]


def test_nested_non_str_keys(capture):
    capture.info("x", extra={"d": {(1, 2): "tuple", None: "none", 3: "int", frozenset(): "fs"}})
    out = fmt(capture.last())
    assert out["d"]["(1, 2)"] == "tuple" and out["d"]["3"] == "int"
    assert out["message"] == "x" and out["level"] == "INFO"


def test_nested_non_str_keys_with_sort_keys(capture):
    capture.info("x", extra={"d": {1: "a", "b": 2}})
    out = fmt(capture.last(), sort_keys=True)
    assert out["d"] == {"1": "a", "b": 2}


def test_circular_structures(capture):
    d: Dict[str, Any] = {"name": "d"}
    d["self"] = d
    lst: List[Any] = [1]
    lst.append(lst)
    capture.info("x", extra={"d": d, "l": lst})
    out = fmt(capture.last())
    assert out["d"]["name"] == "d" and out["d"]["self"] == "<circular reference>"
    assert out["l"] == [1, "<circular reference>"]


def test_shared_reference_is_not_circular(capture):
    shared = {"v": float("nan")}  # nan forces the sanitising pass
    capture.info("x", extra={"a": shared, "b": [shared, shared]})
    out = fmt(capture.last())
    assert out["a"] == {"v": "nan"} and out["b"] == [{"v": "nan"}, {"v": "nan"}]


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"),
])
def test_non_finite_floats_stay_strict_json(capture, value, expected):
    capture.info("x", extra={"f": value, "nested": [value]})
    out = fmt(capture.last())
    assert out["f"] == expected and out["nested"] == [expected]


def test_non_finite_float_in_args(capture):
    capture.info("%s", float("nan"))
    assert fmt(capture.last())["message"] == "nan"


def test_bytes_and_other_objects(capture):
    capture.info("x", extra={"b": b"\x00\xff", "s": {1, 2}, "c": complex(1, 2), "ba": bytearray(b"z")})
    out = fmt(capture.last())
    assert out["b"] == "b'\\x00\\xff'" and out["c"] == "(1+2j)" and out["ba"] == "bytearray(b'z')"


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_lone_surrogates(capture, ensure_ascii):
    capture.info("bad \ud800 text", extra={"k\udfff": "v\udc80"})
    text = JsonFormatter(ensure_ascii=ensure_ascii).format(capture.last())
    out = loads(text)  # valid JSON either way
    if not ensure_ascii:
        assert out["message"] == "bad \ufffd text" and out["k\ufffd"] == "v\ufffd"


def test_huge_int(capture):
    capture.info("x", extra={"n": 10 ** 5000, "ok": 10 ** 20})
    out = fmt(capture.last())
    # Pythons with an int-to-str digit limit make json refuse it; older ones just encode it.
    assert out["n"] == 10 ** 5000 or out["n"].startswith("<int of ")
    assert out["ok"] == 10 ** 20


def test_deep_nesting(capture):
    deep: Any = "leaf"
    for _ in range(20_000):
        deep = [deep]
    capture.info("x", extra={"deep": deep})
    out = fmt(capture.last())
    assert out["message"] == "x"
    depth, node = 0, out["deep"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert node == "<max depth exceeded>" and depth < 200


def test_mapping_that_raises(capture):
    capture.info("x", extra={"m": BrokenMapping()})  # json hands non-dict mappings to default=str
    out = fmt(capture.last())
    assert out["message"] == "x" and "BrokenMapping" in out["m"]
    capture.info("x", extra={"m": BrokenMapping(), "n": float("nan")})  # now the sanitising pass
    out = fmt(capture.last())
    assert out["m"].startswith("<unserializable BrokenMapping: RuntimeError: broken")


def test_broken_dict_message(capture):
    capture.info(BrokenMapping())
    out = fmt(capture.last(), static={"service": "api"})
    assert "RuntimeError: broken" in out["format_error"] and out["service"] == "api"


def test_garbage_record_falls_back_to_minimal_object():
    record = logging.makeLogRecord({"msg": "still here", "created": "not a time"})
    out = fmt(record, static={"service": "api"})
    assert out["message"] == "still here" and out["service"] == "api"
    assert out["format_error"].startswith("formatter failed:")


def test_formatter_through_a_real_handler_never_raises(capture):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.handleError = lambda record: pytest.fail("handler saw an error")  # type: ignore[assignment]
    capture.addHandler(handler)
    d: Dict[str, Any] = {}
    d["d"] = d
    capture.info("%s %s", 1, extra={"d": d, "u": Unprintable(), "n": float("nan"), "s": "\ud800"})
    capture.info(Unprintable())
    capture.info({"message": "\udcff", 1: float("inf")})
    for line in stream.getvalue().splitlines():
        loads(line)
    assert len(stream.getvalue().splitlines()) == 3


# -- property ------------------------------------------------------------------------------------

# Any text, with lone surrogates (category Cs) drawn often rather than almost never.
_any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=20)
_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    _any_text, st.binary(max_size=20),
)
_keys = st.one_of(_any_text, st.integers(), st.none(), st.tuples(st.integers()))
_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(_keys, children, max_size=4),
    ),
    max_leaves=15,
)
_extra_names = _any_text.filter(lambda k: k not in RESERVED_ATTRS)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.dictionaries(_extra_names, _values, max_size=6), message=_any_text,
       ensure_ascii=st.booleans(), sort_keys=st.booleans())
def test_arbitrary_extras_always_give_valid_json(extra, message, ensure_ascii, sort_keys):
    logger = logging.Logger("jsonfmt.property")
    record = logger.makeRecord("jsonfmt.property", logging.INFO, __file__, 1, message, None, None,
                               extra=extra)
    formatter = JsonFormatter(ensure_ascii=ensure_ascii, sort_keys=sort_keys, static={"service": "p"})
    out = loads(formatter.format(record))
    assert out["level"] == "INFO" and out["service"] == "p"
    assert "format_error" not in out
    expected = 9 + 1 + len(extra)  # nothing dropped, nothing overwritten
    if ensure_ascii or all(k.isascii() or _utf8_ok(k) for k in extra):
        assert len(out) == expected
    else:  # distinct keys with lone surrogates may all become the same U+FFFD key
        assert len(out) <= expected


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# -- trace correlation ---------------------------------------------------------------------------

from opentelemetry import trace  # noqa: E402  (the test extra; never a dependency of cwlhandler)
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags  # noqa: E402

from cwlhandler import flush_on_return  # noqa: E402
from cwlhandler.jsonformat import TRACE_FIELDS, parse_xray_header  # noqa: E402

OTEL_TRACE, OTEL_SPAN = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
XRAY_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
XRAY_IDS = {"traceId": "5759e988bd862e3fe1be46a994272793", "spanId": "53995c3f42cd8ad8"}


def otel_span(sampled: bool = True) -> NonRecordingSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(OTEL_TRACE, OTEL_SPAN, is_remote=False, trace_flags=flags))


def trace_fields(record: logging.LogRecord, **options: Any) -> Dict[str, Any]:
    return {k: v for k, v in fmt(record, **options).items() if k in TRACE_FIELDS}


@pytest.fixture
def outside_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)


@pytest.fixture
def in_lambda(monkeypatch):
    """What the Lambda runtime sets: the function's name, and the X-Ray header of the invocation."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)


class LambdaContext:
    def __init__(self, request_id: Any) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 100  # below the margin: the decorator's flush waits for nothing


@pytest.mark.parametrize("sampled", [True, False])
def test_active_opentelemetry_span_gives_trace_and_span_ids(outside_lambda, sampled):
    """A valid span context counts, recording or not, sampled or not: its ids still correlate logs."""
    with trace.use_span(otel_span(sampled)):
        out = fmt(bare_record())
    assert out["traceId"] == "0af7651916cd43dd8448eb211c80319c"  # W3C form: 32 lowercase hex digits
    assert out["spanId"] == "b7ad6b7169203331"
    assert list(out)[-2:] == ["traceId", "spanId"] and "requestId" not in out


def test_each_span_gives_its_own_ids(outside_lambda):
    """The formatter keeps the last span's ids as text: a new span, even with the same span id, is new."""
    formatter = JsonFormatter()
    seen = []
    for trace_id, span_id in [(1, 2), (1, 3), (4, 3), (1, 2)]:
        with trace.use_span(NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True))):
            out = loads(formatter.format(bare_record()))
        seen.append((int(out["traceId"], 16), int(out["spanId"], 16)))
    assert seen == [(1, 2), (1, 3), (4, 3), (1, 2)]


def test_no_trace_adds_nothing(outside_lambda):
    assert trace_fields(bare_record()) == {}
    with trace.use_span(INVALID_SPAN):  # what get_current_span() gives without an active span
        assert trace_fields(bare_record()) == {}


def test_span_of_another_thread_is_not_this_records(outside_lambda):
    records = []
    thread = threading.Thread(target=lambda: records.append(bare_record("from a thread")))
    with trace.use_span(otel_span()):
        thread.start()
        thread.join()
    assert trace_fields(records[0]) == {}


def test_xray_header_in_lambda(in_lambda):
    assert trace_fields(bare_record()) == XRAY_IDS


def test_opentelemetry_span_wins_over_xray_header(in_lambda):
    with trace.use_span(otel_span()):
        assert trace_fields(bare_record())["traceId"] == format(OTEL_TRACE, "032x")
    assert trace_fields(bare_record()) == XRAY_IDS  # no active span: the header again


def test_xray_header_followed_from_invocation_to_invocation(in_lambda, monkeypatch):
    formatter = JsonFormatter()
    assert loads(formatter.format(bare_record()))["traceId"] == XRAY_IDS["traceId"]
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-65f2a1b0-0123456789abcdef01234567;Sampled=0")
    out = loads(formatter.format(bare_record()))
    assert out["traceId"] == "65f2a1b00123456789abcdef01234567" and "spanId" not in out
    monkeypatch.delenv("_X_AMZN_TRACE_ID")
    assert "traceId" not in loads(formatter.format(bare_record()))


def test_xray_header_ignored_outside_lambda(outside_lambda, monkeypatch):
    """Only Lambda sets it: elsewhere the formatter does not read the environment for each record."""
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY_HEADER)
    assert trace_fields(bare_record()) == {}


@pytest.mark.parametrize("header, expected", [
    (XRAY_HEADER, tuple(XRAY_IDS.values())),
    # any order, other keys, spaces, upper case
    ("Sampled=0;Lineage=a87bd80c:1|68fd508a:5;Parent=53995C3F42CD8AD8;Root=1-5759E988-BD862E3FE1BE46A994272793",
     tuple(XRAY_IDS.values())),
    (" Root = 1-5759e988-bd862e3fe1be46a994272793 ; Self=1-67891234-12456789abcdef012345678",
     (XRAY_IDS["traceId"], None)),
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f", (XRAY_IDS["traceId"], None)),
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Root=1-00000001-000000000000000000000001",
     tuple(XRAY_IDS.values())),  # the first Root counts
    ("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", None),
    ("Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8", None),
    ("Root=1-5759e988bd862e3fe1be46a994272793", None),
    ("Parent=53995c3f42cd8ad8;Sampled=1", None),
    ("", None),
    ("garbage", None),
])
def test_parse_xray_header(header, expected):
    assert parse_xray_header(header) == expected


def test_request_id_while_flush_on_return_runs_the_function(outside_lambda):
    """The formatter runs in ``emit``, on the thread of the logging call, while the function runs."""
    seen = []

    @flush_on_return
    def function(event, context):
        seen.append(trace_fields(bare_record(event)))
        return "done"

    assert function("first", LambdaContext("8476a536-e9f4-11e8-9739-2dfe598c3fcd")) == "done"
    function("second", LambdaContext(None))  # a context without a request id
    seen.append(trace_fields(bare_record("after the invocation")))
    assert seen == [{"requestId": "8476a536-e9f4-11e8-9739-2dfe598c3fcd"}, {}, {}]


def test_request_id_reset_when_the_function_raises(outside_lambda):
    @flush_on_return
    def function(event, context):
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        function({}, LambdaContext("r-1"))
    assert trace_fields(bare_record()) == {}


@pytest.mark.parametrize("value", [False, "false", "off", "0", 0])
def test_trace_switched_off(in_lambda, value):
    @flush_on_return
    def function(event, context):
        with trace.use_span(otel_span()):
            return fmt(bare_record(), trace=value)

    assert not set(function({}, LambdaContext("r-1"))) & set(TRACE_FIELDS)


@pytest.mark.parametrize("value", ["maybe", 2, None])
def test_trace_switch_must_be_a_boolean(value):
    with pytest.raises(ValueError, match="trace"):
        JsonFormatter(trace=value)


def test_trace_switch_from_dictconfig(in_lambda):
    assert _dictconfig_roundtrip("cwlhandler.JsonFormatter", trace="true")["traceId"] == XRAY_IDS["traceId"]
    assert "traceId" not in _dictconfig_roundtrip("cwlhandler.JsonFormatter", trace="false")


@pytest.mark.parametrize("options, attrs, expected", [
    ({}, {"traceId": "mine"}, {"traceId": "mine", "requestId": "ours"}),  # and no spanId of another trace
    ({}, {"spanId": "mine"}, {"spanId": "mine", "requestId": "ours"}),
    ({"static": {"traceId": "static"}}, {}, {"traceId": "static", "requestId": "ours"}),
    ({}, {"requestId": "mine"}, {"requestId": "mine", **XRAY_IDS}),
])
def test_fields_the_record_has_win(in_lambda, options, attrs, expected):
    @flush_on_return
    def function(event, context):
        return trace_fields(bare_record(**attrs), **options)

    assert function({}, LambdaContext("ours")) == expected


def test_dict_message_trace_id_wins(in_lambda):
    assert trace_fields(bare_record({"message": "m", "traceId": "mine"})) == {"traceId": "mine"}


def test_broken_opentelemetry_is_no_trace(outside_lambda, monkeypatch):
    import cwlhandler.tracing as tracing

    def broken():
        raise RuntimeError("no context")

    monkeypatch.setattr(tracing, "_current_span", broken)
    out = fmt(bare_record())
    assert "traceId" not in out and "format_error" not in out and out["message"] == "m"


@pytest.mark.parametrize("blocked", [True, False])
def test_without_opentelemetry_imported(blocked):
    """Never imported by the formatter: not when it cannot be, not when the application did not.

    The X-Ray fallback still works, and the formatter finds OpenTelemetry once the application imports it.
    """
    script = textwrap.dedent(f"""
        import json, logging, os, sys
        if {blocked}:
            sys.modules["opentelemetry"] = None  # import opentelemetry raises ImportError
        os.environ.update(AWS_LAMBDA_FUNCTION_NAME="fn", _X_AMZN_TRACE_ID={XRAY_HEADER!r})
        from cwlhandler import JsonFormatter
        formatter = JsonFormatter()
        record = logging.LogRecord("x", logging.INFO, "x", 1, "m", None, None)
        print(formatter.format(record))
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])))
        if not {blocked}:
            from opentelemetry import trace
            from opentelemetry.trace import NonRecordingSpan, SpanContext
            with trace.use_span(NonRecordingSpan(SpanContext({OTEL_TRACE}, {OTEL_SPAN}, False))):
                print(formatter.format(record))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env=subprocess_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {k: v for k, v in loads(lines[0]).items() if k in TRACE_FIELDS} == XRAY_IDS
    assert json.loads(lines[1]) == []
    if not blocked:
        assert loads(lines[2])["traceId"] == format(OTEL_TRACE, "032x")
