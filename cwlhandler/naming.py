"""Log group and stream names: templates, validation and routing of records."""
from __future__ import annotations

import datetime
import logging
import os
import re
import socket
import string
import sys
import uuid
from typing import Callable, Dict, Optional, Tuple

PROCESS_FIELDS = ("hostname", "program", "pid", "uuid")
RECORD_FIELDS = ("thread", "logger", "level", "date")
MAX_NAME = 512
_GROUP_BAD = re.compile(r"[^A-Za-z0-9_\-/.#]")
_STREAM_BAD = re.compile(r"[:*]")
_RECORD_VALUE: Dict[str, Callable[[logging.LogRecord, int], object]] = {
    "thread": lambda r, ms: r.threadName,
    "logger": lambda r, ms: r.name,
    "level": lambda r, ms: r.levelname,
    # From the timestamp emit computed (a broken record.created has been replaced there), as a
    # day number: cheap, and it keys the cache; it becomes a date once.
    "date": lambda r, ms: ms // 86_400_000,
}
_CACHE_LIMIT = 4096
# Names cached longer than this are forgotten at the next new name (yesterday's ``{date}``, a finished
# job's ``{thread}``).
_CACHE_AGE_MS = 3_600_000


def process_fields(handler_uuid: str) -> Dict[str, str]:
    """The placeholders that are fixed for a process (recomputed after fork)."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return {
        "hostname": socket.gethostname(),
        "program": program or "python",
        "pid": str(os.getpid()),
        "uuid": handler_uuid,
    }


def new_uuid() -> str:
    return uuid.uuid4().hex


def _day(day_number: object) -> str:
    try:
        return (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(day_number))).isoformat()  # type: ignore[call-overload, no-any-return]
    except (OverflowError, ValueError):  # a timestamp past year 9999: the planner drops it as too new
        return "invalid-date"


class NameTemplate:
    """A ``str.format`` template for a group or stream name.

    Substituted values are sanitised (characters the service refuses become
    ``_``) so a logger or thread name can never make a request fail; the
    literal text is validated at construction.
    """

    def __init__(self, setting: str, template: str, kind: str) -> None:
        if not isinstance(template, str) or not template:
            raise ValueError(f"{setting}: must be a non-empty string, got {template!r}")
        self.setting = setting
        self.template = template
        self.kind = kind
        fields = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"{setting}: invalid template {template!r}: {exc}") from None
        literal = ""
        for text, field, spec, conversion in parsed:
            literal += text
            if field is None:
                continue
            if field not in PROCESS_FIELDS and field not in RECORD_FIELDS:
                known = ", ".join("{%s}" % f for f in PROCESS_FIELDS + RECORD_FIELDS)
                raise ValueError(f"{setting}: unknown placeholder {{{field}}} in {template!r}; known: {known}")
            if spec or conversion:
                raise ValueError(f"{setting}: placeholders take no format spec or conversion: {template!r}")
            fields.append(field)
        self.record_fields = tuple(f for f in RECORD_FIELDS if f in fields)
        self.check(literal)
        if kind == "group" and template.startswith("aws/"):
            raise ValueError(f"{setting}: log group names must not start with 'aws/': {template!r}")

    def check(self, name: str) -> None:
        bad = (_GROUP_BAD if self.kind == "group" else _STREAM_BAD).findall(name)
        if bad:
            allowed = "A-Z a-z 0-9 _ - / . #" if self.kind == "group" else "anything but ':' and '*'"
            raise ValueError(
                f"{self.setting}: {name!r} has characters the service refuses: {''.join(sorted(set(bad)))!r} "
                f"(allowed: {allowed})"
            )
        if len(name) > MAX_NAME:
            raise ValueError(f"{self.setting}: {name!r} is longer than {MAX_NAME} characters")

    def render(self, values: Dict[str, object]) -> str:
        clean = {k: self.sanitise(k, v) for k, v in values.items()}
        return self.template.format_map(clean)[:MAX_NAME] or "_"

    def sanitise(self, field: str, value: object) -> str:
        text = _day(value) if field == "date" else str(value)
        return (_GROUP_BAD if self.kind == "group" else _STREAM_BAD).sub("_", text)


class Router:
    """Maps a record to its ``(group, stream)`` key, cheaply.

    Without per-record placeholders the key is computed once per process;
    otherwise it is cached by the record's placeholder values in a bounded
    dict, emptied when full or at a new name an hour after it was last
    emptied, so names that go idle (yesterday's ``{date}``) are forgotten.
    """

    def __init__(self, group: NameTemplate, stream: NameTemplate, handler_uuid: str) -> None:
        self.group = group
        self.stream = stream
        self.uuid = handler_uuid
        self.fields = tuple(f for f in RECORD_FIELDS if f in group.record_fields + stream.record_fields)
        self._getters = tuple(_RECORD_VALUE[f] for f in self.fields)
        self._cache: Dict[Tuple[object, ...], Tuple[str, str]] = {}
        self.static: Optional[Tuple[str, str]] = None
        self.reset()

    def reset(self, handler_uuid: Optional[str] = None) -> None:
        """Recompute process fields: a forked child has its own ``{pid}``, and its own ``{uuid}``."""
        if handler_uuid is not None:
            self.uuid = handler_uuid
        self._process = process_fields(self.uuid)
        self._cache = {}
        self._cache_since: Optional[int] = None  # the emit time (ms) of the cache's first name
        self.static = None if self.fields else self._render(())

    def _render(self, values: Tuple[object, ...]) -> Tuple[str, str]:
        fields: Dict[str, object] = dict(self._process)
        fields.update(zip(self.fields, values))
        return self.group.render(fields), self.stream.render(fields)

    def route(self, record: logging.LogRecord, timestamp_ms: int) -> Tuple[str, str]:
        static = self.static  # set when no placeholder depends on the record
        if static is not None:
            return static
        values = tuple(get(record, timestamp_ms) for get in self._getters)
        key = self._cache.get(values)
        if key is None:  # a new name: the only moment the cache is checked for size and age
            since = self._cache_since
            if len(self._cache) >= _CACHE_LIMIT or since is None or not 0 <= timestamp_ms - since < _CACHE_AGE_MS:
                self._cache, self._cache_since = {}, timestamp_ms
            key = self._cache[values] = self._render(values)
        return key
