"""Trace correlation for ``JsonFormatter``: the ids of the current trace and Lambda request.

``traceId`` and ``spanId`` come from the active OpenTelemetry span, else (in
AWS Lambda) from the X-Ray trace header; ``requestId`` from the Lambda request
that ``flush_on_return`` runs.  Both trace sources give W3C hex ids (32 and 16
digits), the form CloudWatch's default ``traceId`` index and Transaction Search use.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Dict, Optional, Tuple

from .lifecycle import lambda_request_id

#: The fields trace correlation adds (``trace=True``), named as CloudWatch and Lambda name them.
TRACE_FIELDS: Tuple[str, ...] = ("traceId", "spanId", "requestId")
# Set by AWS Lambda (its runtime client rewrites it for every invocation), and only there.
_XRAY_ENV = "_X_AMZN_TRACE_ID"
_XRAY_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
# opentelemetry.trace.get_current_span, once the application has imported OpenTelemetry.
_current_span: Optional[Callable[[], Any]] = None
# The last span's ids, as ints and as text: a span logs many records, formatting them is half the cost.
_otel_last: Tuple[int, int, Tuple[str, str]] = (0, 0, ("", ""))


def _otel_ids() -> Optional[Tuple[str, str]]:
    """``(traceId, spanId)`` of the active OpenTelemetry span, if there is a valid one.

    OpenTelemetry is never imported here: a span can only be active if the
    application imported ``opentelemetry.trace``, so ``sys.modules`` says
    whether to look (a dict lookup per record) and nothing is loaded into an
    application that does not use it.  Checked on every record until found,
    so it also works when tracing is set up after logging.
    """
    global _current_span, _otel_last
    get_current_span = _current_span
    if get_current_span is None:
        module = sys.modules.get("opentelemetry.trace")
        if module is None:
            return None
        get_current_span = getattr(module, "get_current_span", None)
        if get_current_span is None:  # the module is still being imported
            return None
        _current_span = get_current_span
    try:
        context = get_current_span().get_span_context()
        if context.is_valid:  # INVALID_SPAN (no active span) has all-zero ids
            trace_id, span_id, ids = _otel_last
            if context.span_id != span_id or context.trace_id != trace_id:
                ids = format(context.trace_id, "032x"), format(context.span_id, "016x")
                _otel_last = (context.trace_id, context.span_id, ids)
            return ids
    except Exception:  # a broken or foreign "opentelemetry" must not break logging
        pass
    return None


def parse_xray_header(header: str) -> Optional[Tuple[str, Optional[str]]]:
    """``(traceId, spanId)`` from an X-Ray trace header, in OpenTelemetry's form, or None without a trace.

    ``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`` gives
    ``("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8")``: the X-Ray trace id is the
    W3C one with ``1-`` and a dash added.  Keys may come in any order; others (``Sampled``,
    ``Lineage``, ``Self``) are ignored.  No well-formed ``Root``: no trace; no well-formed
    ``Parent``: spanId is None.
    """
    fields: Dict[str, str] = {}
    for part in header.split(";"):
        key, _, value = part.partition("=")
        fields.setdefault(key.strip(), value.strip())
    root = _XRAY_ROOT.fullmatch(fields.get("Root", ""))
    if root is None:
        return None
    parent = fields.get("Parent", "")
    return (root[1] + root[2]).lower(), parent.lower() if _HEX16.fullmatch(parent) else None


class TraceFields:
    """What ``JsonFormatter(trace=True)`` adds to each record's fields."""

    def __init__(self) -> None:
        # Only Lambda sets the X-Ray variable; elsewhere, reading the environment on every
        # record would cost more than a tenth of the formatter's time, for nothing.
        self._xray = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
        # The last X-Ray header seen and what it gave: it changes once per invocation.
        self._xray_cache: Tuple[Optional[str], Optional[Tuple[str, Optional[str]]]] = (None, None)

    def add(self, out: Dict[str, Any]) -> None:
        """Add the fields of the current trace to ``out``; a record's own traceId, spanId or requestId wins."""
        if "traceId" not in out and "spanId" not in out:
            ids: Optional[Tuple[str, Optional[str]]] = _otel_ids()
            if ids is None and self._xray:
                ids = self._xray_ids()
            if ids is not None:
                out["traceId"] = ids[0]
                if ids[1] is not None:
                    out["spanId"] = ids[1]
        request_id = lambda_request_id.get()
        if request_id is not None and "requestId" not in out:
            out["requestId"] = request_id

    def _xray_ids(self) -> Optional[Tuple[str, Optional[str]]]:
        header = os.environ.get(_XRAY_ENV)
        if header is None:
            return None
        seen, ids = self._xray_cache
        if header != seen:
            ids = parse_xray_header(header)
            self._xray_cache = (header, ids)
        return ids
