"""Settings: coercion and validation, so every mistake fails at construction.

``logging.config.dictConfig`` hands values over as written in a settings file,
often as strings, so numbers and booleans given as text are accepted too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .planner import API_MAX_BATCH_BYTES, API_MAX_BATCH_COUNT, API_MAX_EVENT_BYTES, DAY_MS, MAX_AGE_MS

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
ON_FULL = ("drop_oldest", "drop_newest", "block")
OVERSIZE = ("truncate", "split", "drop")
# Room for the truncation marker and some text.
MIN_EVENT_BYTES = 256
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def as_bool(setting: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{setting}: expected a boolean, got {value!r}")


def as_number(setting: str, value: Any, kind: type, low: float, high: Optional[float] = None) -> Any:
    """Coerce ``value`` to ``kind`` (int or float) within ``[low, high]``."""
    if isinstance(value, bool):
        raise ValueError(f"{setting}: expected a number, got {value!r}")
    try:
        number = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{setting}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is int and isinstance(value, float) and value != number:
        raise ValueError(f"{setting}: expected an integer, got {value!r}")
    if not (number >= low) or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{setting}: must be {bound}, got {value!r}")
    return number


def one_of(setting: str, value: Any, choices: Tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{setting}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The validated behaviour settings of a handler (names are handled in naming.py)."""

    create_log_group: bool = True
    create_log_stream: bool = True
    retention_days: Optional[int] = None
    flush_interval: float = 5.0
    max_batch_count: int = API_MAX_BATCH_COUNT
    max_batch_bytes: int = API_MAX_BATCH_BYTES
    max_event_bytes: int = API_MAX_EVENT_BYTES
    max_concurrency: int = 4
    max_buffer_records: int = 100_000
    max_buffer_bytes: int = 64 * 2**20
    on_full: str = "drop_oldest"
    oversize: str = "truncate"
    shutdown_timeout: float = 10.0
    handle_sigterm: bool = True

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        fix("create_log_group", as_bool("create_log_group", self.create_log_group))
        fix("create_log_stream", as_bool("create_log_stream", self.create_log_stream))
        if self.retention_days not in (None, "", "none", "None"):  # type: ignore[comparison-overlap]  # text from dictConfig
            days = as_number("retention_days", self.retention_days, int, 1)
            fix("retention_days", one_of("retention_days", days, RETENTION_DAYS))
        else:
            fix("retention_days", None)
        fix("flush_interval", as_number("flush_interval", self.flush_interval, float, 0.001, 3600))
        fix("max_batch_count", as_number("max_batch_count", self.max_batch_count, int, 1, API_MAX_BATCH_COUNT))
        fix("max_batch_bytes",
            as_number("max_batch_bytes", self.max_batch_bytes, int, MIN_EVENT_BYTES, API_MAX_BATCH_BYTES))
        fix("max_event_bytes",
            as_number("max_event_bytes", self.max_event_bytes, int, MIN_EVENT_BYTES, API_MAX_EVENT_BYTES))
        if self.max_event_bytes > self.max_batch_bytes:
            raise ValueError(
                f"max_event_bytes: must not exceed max_batch_bytes ({self.max_batch_bytes}), got {self.max_event_bytes}"
            )
        fix("max_concurrency", as_number("max_concurrency", self.max_concurrency, int, 1, 64))
        fix("max_buffer_records", as_number("max_buffer_records", self.max_buffer_records, int, 1))
        fix("max_buffer_bytes", as_number("max_buffer_bytes", self.max_buffer_bytes, int, MIN_EVENT_BYTES))
        fix("on_full", one_of("on_full", self.on_full, ON_FULL))
        fix("oversize", one_of("oversize", self.oversize, OVERSIZE))
        fix("shutdown_timeout", as_number("shutdown_timeout", self.shutdown_timeout, float, 0))
        fix("handle_sigterm", as_bool("handle_sigterm", self.handle_sigterm))

    @property
    def max_age_ms(self) -> int:
        """How old an event may be when sent: 14 days, or less with a short retention."""
        if self.retention_days is None:
            return MAX_AGE_MS
        return min(MAX_AGE_MS, self.retention_days * DAY_MS)
