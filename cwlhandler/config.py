"""Settings: coercion and validation, so every mistake fails at construction.

``logging.config.dictConfig`` hands values over as written in a settings file,
often as strings, so numbers and booleans given as text are accepted too.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlparse

from .planner import API_MAX_BATCH_BYTES, API_MAX_BATCH_COUNT, API_MAX_EVENT_BYTES, DAY_MS, MAX_AGE_MS

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
ON_FULL = ("drop_oldest", "drop_newest", "block")
OVERSIZE = ("truncate", "split", "drop")
# Room for the truncation marker and some text.
MIN_EVENT_BYTES = 256
# Log-group settings and the entity: the rules of botocore's logs model (shapes Tags, KmsKeyId,
# LogGroupClass, Entity), so that no CreateLogGroup or PutLogEvents request fails for them.
LOG_GROUP_CLASSES = ("STANDARD", "INFREQUENT_ACCESS")
MAX_TAGS = 50
_TAG_MARKS = frozenset("_.:/=+-@")  # beside letters, numbers and spaces
_KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+\Z")
ENTITY_KEY_NAMES = ("Type", "ResourceType", "Identifier", "Name", "Environment")
# The API member each optional setting sends: a botocore older than the member cannot send it.
API_MEMBERS = {
    "log_group_tags": ("CreateLogGroup", "tags"),
    "kms_key_id": ("CreateLogGroup", "kmsKeyId"),
    "log_group_class": ("CreateLogGroup", "logGroupClass"),
    "deletion_protection": ("CreateLogGroup", "deletionProtectionEnabled"),
    "entity": ("PutLogEvents", "entity"),
}
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


def as_endpoint_url(endpoint_url: Any) -> Optional[str]:
    """An explicit endpoint may be http (an emulator, a VPC proxy); it must be a URL."""
    if endpoint_url in (None, ""):
        return None
    parsed = urlparse(str(endpoint_url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"endpoint_url: expected an http:// or https:// URL, got {endpoint_url!r}")
    return str(endpoint_url)


def one_of(setting: str, value: Any, choices: Tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{setting}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _unset(value: Any) -> bool:
    """No value: None, or what a settings file writes for none."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "none", "None"))


def string_map(setting: str, value: Any, entries: range, key_chars: range, value_chars: range) -> Dict[str, str]:
    """A plain-dict copy of a mapping of strings within bounds (dictConfig passes a ConvertingDict)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{setting}: expected a mapping of strings, got {value!r}")
    result = dict(value)
    if len(result) not in entries:
        raise ValueError(f"{setting}: must have {entries.start} to {entries.stop - 1} entries, got {len(result)}")
    for key, text in result.items():
        if not isinstance(key, str) or len(key) not in key_chars:
            raise ValueError(f"{setting}: keys must be strings of {key_chars.start} to {key_chars.stop - 1} "
                             f"characters, got {key!r}")
        if not isinstance(text, str) or len(text) not in value_chars:
            raise ValueError(f"{setting}: the value of {key!r} must be a string of {value_chars.start} to "
                             f"{value_chars.stop - 1} characters, got {text!r}")
    return result


def as_tags(value: Any) -> Optional[Dict[str, str]]:
    """Tags for CreateLogGroup: at most 50; keys 1-128 and values 0-256 characters of letters, numbers,
    spaces and ``_ . : / = + - @``; no key starting with ``aws:`` (reserved)."""
    if _unset(value):
        return None
    tags = string_map("log_group_tags", value, range(MAX_TAGS + 1), range(1, 129), range(257))
    for key, text in tags.items():
        if key.lower().startswith("aws:"):
            raise ValueError(f"log_group_tags: the key {key!r} starts with 'aws:', which is reserved for AWS")
        bad = [ch for ch in key + text if ch not in _TAG_MARKS and unicodedata.category(ch)[0] not in "LZN"]
        if bad:
            raise ValueError(f"log_group_tags: {bad[0]!r} in {key!r}: {text!r} is not allowed (letters, numbers, "
                             "spaces and _ . : / = + - @ only)")
    return tags or None


def as_kms_key_arn(value: Any) -> Optional[str]:
    if _unset(value):
        return None
    if not isinstance(value, str) or len(value) > 256 or not _KMS_KEY_ARN.match(value):
        raise ValueError("kms_key_id: expected the ARN of a KMS key (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID; "
                         f"CreateLogGroup takes neither a key id nor an alias), got {value!r}")
    return value


def as_log_group_class(value: Any) -> Optional[str]:
    if _unset(value):
        return None
    name = value.strip().upper() if isinstance(value, str) else value
    if name == "DELIVERY":
        raise ValueError("log_group_class: DELIVERY groups only take Lambda logs delivered to S3 or Firehose "
                         "(kept one day, no Logs Insights); use STANDARD or INFREQUENT_ACCESS")
    return str(one_of("log_group_class", name, LOG_GROUP_CLASSES))


def as_entity(value: Any) -> Optional[Dict[str, Dict[str, str]]]:
    """PutLogEvents' ``entity``: keyAttributes (2-4 of the five key names, Type among them) and attributes (0-10).

    Which key attributes a Type needs is the service's to judge: it stores the
    events all the same and says why in ``rejectedEntityInfo``.
    """
    if _unset(value):
        return None
    if not isinstance(value, Mapping) or "keyAttributes" not in value or set(value) - {"keyAttributes", "attributes"}:
        raise ValueError(f"entity: expected a mapping of 'keyAttributes' and optional 'attributes', got {value!r}")
    keys = string_map("entity: keyAttributes", value["keyAttributes"], range(2, 5), range(1, 33), range(1, 513))
    if "Type" not in keys or set(keys) - set(ENTITY_KEY_NAMES):
        raise ValueError(f"entity: keyAttributes must have 'Type' and may have only {', '.join(ENTITY_KEY_NAMES)}; "
                         f"got {sorted(keys)}")
    entity = {"keyAttributes": keys}
    if "attributes" in value:
        entity["attributes"] = string_map("entity: attributes", value["attributes"], range(11), range(1, 257),
                                          range(1, 513))
    return entity


def check_api_members(settings: "Settings", service_model: Any) -> None:
    """Refuse a setting that the botocore in use cannot send (its serialiser fails on unknown members)."""
    for setting, (operation, member) in API_MEMBERS.items():
        if getattr(settings, setting) and member not in service_model.operation_model(operation).input_shape.members:
            import botocore

            raise ValueError(f"{setting}: botocore {botocore.__version__} does not know {operation}'s {member!r}; "
                             "upgrade botocore (and boto3)")


@dataclass(frozen=True)
class Settings:
    """The validated behaviour settings of a handler (names are handled in naming.py)."""

    create_log_group: bool = True
    create_log_stream: bool = True
    retention_days: Optional[int] = None
    log_group_tags: Optional[Dict[str, str]] = None
    kms_key_id: Optional[str] = None
    log_group_class: Optional[str] = None
    deletion_protection: bool = False
    entity: Optional[Dict[str, Dict[str, str]]] = None
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
        if not _unset(self.retention_days):
            days = as_number("retention_days", self.retention_days, int, 1)
            fix("retention_days", one_of("retention_days", days, RETENTION_DAYS))
        else:
            fix("retention_days", None)
        fix("log_group_tags", as_tags(self.log_group_tags))
        fix("kms_key_id", as_kms_key_arn(self.kms_key_id))
        fix("log_group_class", as_log_group_class(self.log_group_class))
        fix("deletion_protection", as_bool("deletion_protection", self.deletion_protection))
        fix("entity", as_entity(self.entity))
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
    def create_group_params(self) -> Dict[str, Any]:
        """CreateLogGroup's parameters beside the name: only the settings given (so older botocores work)."""
        return {member: getattr(self, setting) for setting, (operation, member) in API_MEMBERS.items()
                if operation == "CreateLogGroup" and getattr(self, setting)}

    @property
    def max_age_ms(self) -> int:
        """How old an event may be when sent: 14 days, or less with a short retention."""
        if self.retention_days is None:
            return MAX_AGE_MS
        return min(MAX_AGE_MS, self.retention_days * DAY_MS)
