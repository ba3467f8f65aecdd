"""JSON log formatting shaped for CloudWatch Logs Insights.

Logs Insights discovers fields in JSON events automatically (nested ones as
``exception.type``), so one flat-ish JSON object per record makes every field
queryable without parse patterns.  A formatter runs inside ``Handler.emit``
for every record, so this one is built to be cheap (constant sets computed once,
no per-record regex) and to never raise: a log call must not fail because a
value could not be encoded.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from .config import as_bool
from .tracing import TRACE_FIELDS, TraceFields, parse_xray_header

__all__ = ["JsonFormatter", "CORE_FIELDS", "DEFAULT_FIELDS", "RESERVED_ATTRS", "TRACE_FIELDS", "parse_xray_header"]

#: Every core field the formatter knows, in default output order.
CORE_FIELDS: Tuple[str, ...] = (
    "timestamp", "level", "logger", "message", "module", "function", "line",
    "process", "thread", "thread_id", "exception", "stack_info", "format_error",
)
#: Core fields emitted when ``fields`` is not given (``thread_id`` is opt-in).
DEFAULT_FIELDS: Tuple[str, ...] = tuple(f for f in CORE_FIELDS if f != "thread_id")

#: LogRecord attributes that are not ``extra=`` fields.  Computed from a real
#: record so it follows the running Python; ``taskName`` is 3.12+, ``message``
#: and ``asctime`` are added by formatters.
RESERVED_ATTRS: FrozenSet[str] = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

# Fields read straight off the record.
_ATTR_FIELDS: Dict[str, str] = {
    "level": "levelname", "logger": "name", "module": "module", "function": "funcName",
    "line": "lineno", "process": "process", "thread": "threadName", "thread_id": "thread",
}
_MAX_DEPTH = 100
_SURROGATES = re.compile("[\ud800-\udfff]")
_LAST_RESORT = '{"message":"<unformattable log record>","format_error":"formatter failed"}'

def _safe_str(obj: Any) -> str:
    """``str(obj)`` that cannot raise: used as json's ``default`` and for messages."""
    try:
        return str(obj)
    except Exception:
        pass
    try:
        return repr(obj)
    except Exception:
        pass
    try:
        return f"<unprintable {type(obj).__qualname__}>"
    except Exception:
        return "<unprintable>"


def _describe(exc: BaseException) -> str:
    return f"{_safe_str(type(exc).__name__)}: {_safe_str(exc)}"


def _sanitize(obj: Any, depth: int, seen: Set[int]) -> Any:
    """Rebuild ``obj`` from JSON-safe parts only.

    Only used after a fast ``json.dumps`` attempt failed (circular structure,
    non-str keys json refuses, NaN/inf, absurd nesting, a container that raises),
    so it favours robustness over speed.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):  # json refuses ints past sys.get_int_max_str_digits()
        return obj if obj.bit_length() < 4096 else f"<int of {obj.bit_length()} bits>"
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _safe_str(float(obj))
    if depth >= _MAX_DEPTH:
        return "<max depth exceeded>"
    if isinstance(obj, (Mapping, list, tuple)):
        if id(obj) in seen:
            return "<circular reference>"
        seen.add(id(obj))
        try:
            if isinstance(obj, Mapping):
                out: Any = {}
                for key, value in list(obj.items()):
                    key = key if isinstance(key, str) else _safe_str(key)
                    out[key] = _sanitize(value, depth + 1, seen)
            else:
                out = [_sanitize(item, depth + 1, seen) for item in list(obj)]
            return out
        except Exception as exc:
            return f"<unserializable {_safe_str(type(obj).__name__)}: {_describe(exc)}>"
        finally:
            seen.discard(id(obj))
    return _safe_str(obj)


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON for CloudWatch Logs Insights.

    Core fields (``CORE_FIELDS``; the conditional ones only when they apply):

    ``timestamp``  ISO-8601 UTC with milliseconds, ``2026-11-26T05:21:53.123Z``
    ``level`` / ``logger`` / ``message``  levelname, logger name, rendered text
    ``module`` / ``function`` / ``line``  where the call was made
    ``process`` / ``thread``  pid and thread name (opt-in ``thread_id``: ident)
    ``exception``  ``{"type", "message", "traceback"}`` when exc_info is set
    ``stack_info``  when ``stack_info=True`` was passed
    ``format_error``  when ``msg % args`` failed; ``message`` is then the raw msg

    Options: ``fields`` picks and orders core fields (default ``DEFAULT_FIELDS``),
    ``omit`` drops some, ``rename`` maps core name -> output name, ``static``
    adds constant fields (``service``, ``env``) to every object.

    Collision rule: core fields always win.  A ``static`` key equal to an
    emitted core field's output name is a configuration error (``ValueError``
    at construction).  An ``extra=`` or dict-message key equal to an emitted
    core field's name (whether or not the field is present on this record, so a
    query sees a stable name), a static key, or a key already written is
    prefixed with ``COLLISION_PREFIX`` (``"extra_"``), repeatedly until unique:
    nothing is dropped or overwritten.  Keys are written in the order core,
    static, dict-message, ``extra=``, so a dict-message key beats an equal
    ``extra=`` key.  Non-str keys are converted with ``str``.

    Dict messages: ``logger.info({"user": 1, "action": "login"})`` merges the
    dict's keys at top level (``args`` are ignored).  ``message`` takes the
    dict's ``"message"`` key, else its ``"msg"`` key (that key is consumed),
    else the message field is omitted.

    Never raises: values json cannot encode go through ``str`` (then ``repr``);
    circular references, NaN/inf (emitted as strings, keeping the output strict
    JSON), non-str keys and runaway nesting trigger a sanitising second pass;
    lone surrogates become U+FFFD when ``ensure_ascii`` is false; any other
    failure yields a minimal object carrying ``format_error``.

    Trace correlation (``trace=True``, the default; ``trace=False`` or ``"false"``
    turns it off), added after every other field, only when there is something to add:

    ``traceId`` / ``spanId``  of the active OpenTelemetry span (only a valid span
        context, recording or not) when the application uses OpenTelemetry;
        else, in AWS Lambda, from the X-Ray header ``_X_AMZN_TRACE_ID`` (``Root``
        and ``Parent``, the segment the invocation runs in).  Both as lowercase
        hex, 32 and 16 digits, OpenTelemetry's (W3C) form whatever the source:
        ``traceId`` is one of CloudWatch Logs' default field indexes, Transaction
        Search stores spans (X-Ray ones too) under W3C ids, and the X-Ray console
        finds traces by either form, so one query matches logs and spans alike.
    ``requestId``  the Lambda request id while ``flush_on_return`` runs the
        function (the name Lambda's own JSON log format uses).

    Fields the record already has win: an ``extra=``, dict-message or static
    ``traceId`` or ``spanId`` keeps its value and neither trace field is added
    (so the two always belong to one trace); likewise for ``requestId``.

    dictConfig: ``{"()": "cwlhandler.JsonFormatter", "static": {"service": "api"}}``
    (dictConfig passes the other keys as keyword arguments).
    """

    COLLISION_PREFIX = "extra_"

    def __init__(
        self,
        fields: Optional[Iterable[str]] = None,
        rename: Optional[Mapping[str, str]] = None,
        omit: Optional[Iterable[str]] = None,
        static: Optional[Mapping[str, Any]] = None,
        ensure_ascii: bool = False,
        sort_keys: bool = False,
        trace: bool = True,
    ) -> None:
        super().__init__()
        chosen = list(DEFAULT_FIELDS if fields is None else fields)
        rename = dict(rename or {})
        omitted = set(omit or ())
        for name in [*chosen, *rename, *omitted]:
            if name not in CORE_FIELDS:
                raise ValueError(f"unknown field {name!r}; known fields: {', '.join(CORE_FIELDS)}")
        chosen = [f for i, f in enumerate(chosen) if f not in omitted and f not in chosen[:i]]
        names = {f: rename.get(f, f) for f in chosen}
        for out in names.values():
            if not isinstance(out, str) or not out:
                raise ValueError(f"field names must be non-empty strings, got {out!r}")
        if len(set(names.values())) != len(names):
            raise ValueError(f"rename makes two fields share a name: {names}")
        static = dict(static or {})
        for key in static:
            if not isinstance(key, str):
                raise ValueError(f"static field names must be strings, got {key!r}")
            if key in names.values():
                raise ValueError(f"static field {key!r} collides with a core field")

        self._names: Dict[str, str] = names
        self._static: Dict[str, Any] = static
        # Attribute-backed fields as (output name, record attribute), in order.
        self._plan: List[Tuple[str, Optional[str], str]] = [
            (names[f], _ATTR_FIELDS.get(f), f) for f in chosen
        ]
        self._reserved = frozenset(names.values()) | frozenset(static)
        self._ensure_ascii = as_bool("ensure_ascii", ensure_ascii)
        self._sort_keys = as_bool("sort_keys", sort_keys)
        # One encoder reused for every record (json.dumps would build one per call);
        # JSONEncoder keeps no per-call state, so sharing it across threads is safe.
        self._encoder = json.JSONEncoder(
            ensure_ascii=self._ensure_ascii, sort_keys=self._sort_keys,
            separators=(",", ":"), allow_nan=False, default=_safe_str,
        )
        self._ts_cache: Tuple[int, str] = (-1, "")
        self._trace = TraceFields() if as_bool("trace", trace) else None

    # -- public ---------------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single-line JSON object; never raises."""
        try:
            return self._encode(self.to_dict(record))
        except Exception as exc:
            return self._fallback(record, exc)

    def to_dict(self, record: logging.LogRecord) -> Dict[str, Any]:
        """The object ``format`` serialises (values not yet JSON-checked).

        Sets ``record.message`` like ``logging.Formatter.format`` does.
        """
        msg = record.msg
        structured: Optional[Mapping[str, Any]] = None
        format_error: Optional[str] = None
        text: Any = None
        has_text = True
        if type(msg) is not str and isinstance(msg, Mapping):
            structured = msg
            if "message" in msg:
                text = msg["message"]
            elif "msg" in msg:
                text = msg["msg"]
            else:
                has_text = False
        else:
            try:
                text = record.getMessage()
            except Exception as exc:
                text = _safe_str(msg)
                format_error = f"{_describe(exc)}; args={_safe_str(record.args)}"
        try:
            record.message = text if type(text) is str else _safe_str(text)
        except Exception:
            pass

        out: Dict[str, Any] = {}
        for name, attr, field in self._plan:
            if attr is not None:
                out[name] = getattr(record, attr, None)
            elif field == "message":
                if has_text:
                    out[name] = text
            elif field == "timestamp":
                out[name] = self._timestamp(record.created)
            elif field == "exception":
                if record.exc_info or record.exc_text:
                    exc_doc = self._exception(record)
                    if exc_doc is not None:
                        out[name] = exc_doc
            elif field == "stack_info":
                if record.stack_info:
                    out[name] = self.formatStack(record.stack_info)
            elif format_error is not None:  # field == "format_error"
                out[name] = format_error
        if self._static:
            out.update(self._static)
        if structured is not None:
            consumed = "message" if "message" in structured else "msg"
            for key, value in list(structured.items()):
                if key != consumed:
                    self._put(out, key, value)
        attrs = record.__dict__
        # Set difference runs in C; most records carry no extras at all.
        extra_keys = attrs.keys() - RESERVED_ATTRS
        if extra_keys:
            for key in [k for k in attrs if k in extra_keys]:  # keep extra= order
                self._put(out, key, attrs[key])
        if self._trace is not None:
            self._trace.add(out)
        return out

    # -- internals ------------------------------------------------------------

    def _put(self, out: Dict[str, Any], key: Any, value: Any) -> None:
        if not isinstance(key, str):
            key = _safe_str(key)
        while key in out or key in self._reserved:
            key = self.COLLISION_PREFIX + key
        out[key] = value

    def _timestamp(self, created: float) -> str:
        total_ms = math.floor(created * 1000)
        secs, ms = divmod(total_ms, 1000)
        cached_secs, prefix = self._ts_cache
        if secs != cached_secs:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
            self._ts_cache = (secs, prefix)
        return f"{prefix}.{ms:03d}Z"

    def _exception(self, record: logging.LogRecord) -> Optional[Dict[str, Any]]:
        exc_info = record.exc_info
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info and exc_info[0] is not None:
            etype, value = exc_info[0], exc_info[1]
            module = getattr(etype, "__module__", None)
            qualname = getattr(etype, "__qualname__", None) or _safe_str(etype)
            if module and module != "builtins":
                qualname = f"{module}.{qualname}"
            if not record.exc_text:
                try:
                    record.exc_text = self.formatException(exc_info)
                except Exception as exc:
                    record.exc_text = f"<traceback unavailable: {_describe(exc)}>"
            return {"type": qualname, "message": _safe_str(value), "traceback": record.exc_text}
        if record.exc_text:  # e.g. a record rebuilt from a SocketHandler pickle
            return {"traceback": record.exc_text}
        return None

    def _encode(self, obj: Dict[str, Any]) -> str:
        try:
            text = self._encoder.encode(obj)
        except Exception:
            text = self._encoder.encode(_sanitize(obj, 0, set()))
        if not self._ensure_ascii and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = _SURROGATES.sub("\ufffd", text)
        return text

    def _fallback(self, record: logging.LogRecord, exc: BaseException) -> str:
        """Minimal object for a record that could not be formatted at all."""
        try:
            names = self._names
            out: Dict[str, Any] = {}
            try:
                out[names.get("timestamp", "timestamp")] = self._timestamp(record.created)
            except Exception:
                pass
            out[names.get("level", "level")] = _safe_str(getattr(record, "levelname", None))
            out[names.get("logger", "logger")] = _safe_str(getattr(record, "name", None))
            out[names.get("message", "message")] = _safe_str(getattr(record, "msg", None))
            out[names.get("format_error", "format_error")] = f"formatter failed: {_describe(exc)}"
            for key, value in self._static.items():
                out.setdefault(key, value)
            return json.dumps(
                _sanitize(out, 0, set()), default=_safe_str, ensure_ascii=True,
                separators=(",", ":"), allow_nan=False,
            )
        except Exception:
            return _LAST_RESORT
