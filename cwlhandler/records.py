"""The vocabulary: what a log record becomes on its way out, and what can become of it.

docs/architecture.md ("Glossary") defines each word; this module names the
tuple fields and the drop reasons once, for every module that uses them.

A *record* (a ``logging.LogRecord``) is formatted by ``emit`` into an *item*:
``(timestamp_ms, message, nbytes, key)``, where ``nbytes`` is the message's UTF-8
size and ``key`` the ``(group, stream)`` it goes to (plus ``"json/emf"`` for a
metrics document).  The planner works on *events*, the first three fields.
Plain tuples, not named tuples: one is made per record on the application's
thread, and a tuple costs a third of a named tuple to make.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Final, Tuple

Key = Tuple[str, ...]  # (group, stream) or (group, stream, log format)
Event = Tuple[int, str, int]  # (timestamp_ms, message, nbytes)
Item = Tuple[int, str, int, Key]  # an event and where it goes

# Final: mypy then knows each field's type where it is indexed.
TIMESTAMP: Final = 0
MESSAGE: Final = 1
NBYTES: Final = 2
KEY: Final = 3
timestamp_of, message_of, nbytes_of, key_of = (itemgetter(i) for i in (TIMESTAMP, MESSAGE, NBYTES, KEY))


class Drop:
    """Every reason ``stats()["dropped_by_reason"]`` can give; the README's guarantees table lists each."""

    TOO_OLD = "too_old"  # older than 14 days when sent (or said so by rejectedLogEventsInfo)
    TOO_NEW = "too_new"  # more than 2 hours ahead when sent
    EXPIRED = "expired"  # older than retention_days
    OVERSIZE = "oversize"  # over max_event_bytes with oversize="drop"
    REJECTED = "rejected"  # refused by the service as invalid, alone after halving
    BUFFER_FULL = "buffer_full"  # per on_full
    SHUTDOWN = "shutdown"  # never written before the shutdown deadline: certainly not stored
    SHUTDOWN_IN_FLIGHT = "shutdown_in_flight"  # written, unanswered at the deadline: may have been stored
    CLOSED = "closed"  # emitted after close()
    NO_THREADS = "no_threads"  # the handler's threads could not start
    METRICS_OVERFLOW = "metrics_overflow"  # more metric values in one interval than the aggregate holds
    ERROR = "error"  # a bug inside cwlhandler (reported on stderr)


DROP_REASONS = tuple(value for name, value in vars(Drop).items() if name.isupper())
