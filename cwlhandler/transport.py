"""The CloudWatch Logs transport: how one batch is sent with PutLogEvents, retried, isolated and created for.

A :class:`scheduler.Deliverer`: the scheduler's workers call :meth:`CloudWatchTransport.deliver`.
Policy lives here (error kinds from ``errors.classify``, backoff, creating missing
groups and streams, halving refused batches, the body our encoder prepares); the
client and its hooks live in ``client.py``.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from botocore.exceptions import ClientError, SSLError

from .client import ProcessClient
from .config import Settings
from .errors import (
    ERROR,
    INVALID,
    MISSING,
    NO_CLIENT,
    OK,
    OPERATOR,
    already_exists,
    classify,
    describe,
    detach,
    explain_client_failure,
    may_have_stored,
)
from .planner import body_tail, rejected_by_reason, request_body, request_events
from .records import Drop, Event
from .scheduler import Batch, Scheduler
from .stats import Reporter, Stats
from .threadstate import thread_state

# How many extra calls one refused batch may cost to find the offending events.
MAX_ISOLATION_CALLS = 64


@dataclass
class RetryPolicy:
    """Backoff in seconds: ``base * 2**attempt`` capped at ``cap``, with jitter;
    ``slow`` between attempts when a person must act (credentials, permissions)."""

    base: float = 0.2
    cap: float = 20.0
    slow: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class CloudWatchTransport:
    """Delivers batches with PutLogEvents for a :class:`scheduler.Scheduler`; one per pipeline."""

    def __init__(self, clients: ProcessClient, settings: Settings, retry: RetryPolicy, stats: Stats,
                 reporter: Reporter) -> None:
        self._clients = clients
        self._settings = settings  # creation: create_log_group/stream, retention_days, create_group_params
        self.retry = retry
        self._entity = {"entity": settings.entity} if settings.entity else {}  # for botocore's serialiser
        self._body_tail = body_tail(settings.entity)  # for our own encoder
        self._stats = stats
        self._reporter = reporter
        self._create_locks = [threading.Lock() for _ in range(16)]

    def client(self) -> Any:
        return self._clients.get()

    def deliver(self, batch: Batch, scheduler: Scheduler) -> None:
        """Send ``batch`` until acknowledged, counting each answered part on the batch.

        A batch the service refuses as invalid is halved until the offending
        events are alone, so only they are dropped.  At the deadline it stops;
        the rest is counted when the batch is settled.
        """
        parts = [batch.events]
        attempt = 0
        isolation_calls = 0
        created = False
        while parts:
            events = parts[-1]
            if scheduler.aborted():
                return
            if attempt:
                self._stats.add("retries")
            kind, result = self._put(batch, events, scheduler)
            if kind != OK and not may_have_stored(result):
                scheduler.progress(batch, 0)  # a plain refusal: this part is not on the wire any more
            if kind == MISSING and not created:
                kind, result = self._create(batch, result)
                created = kind == OK
                if created:
                    continue
            if kind == OK:
                info = result.get("rejectedLogEventsInfo") if isinstance(result, dict) else None
                if isinstance(result, dict) and "rejectedEntityInfo" in result:
                    self._entity_rejected(result["rejectedEntityInfo"])
                rejected = rejected_by_reason(info or {}, len(events))
                scheduler.progress(batch, len(events) - sum(rejected.values()), rejected)
                parts.pop()
                attempt = 0
            elif kind == INVALID:
                parts.pop()
                if len(events) == 1 or isolation_calls >= MAX_ISOLATION_CALLS:
                    scheduler.progress(batch, 0, {Drop.REJECTED: len(events)})
                    self._reporter.problem(
                        "rejected", f"the service refused {len(events)} event(s) for {batch.group}/{batch.stream}: "
                        f"{describe(result)}; they were dropped and counted as 'rejected'",
                    )
                else:
                    isolation_calls += 2
                    half = len(events) // 2
                    parts += [events[half:], events[:half]]
                attempt = 0
            elif kind == ERROR:
                parts.pop()
                scheduler.progress(batch, 0, {Drop.ERROR: len(events)})
                self._reporter.problem("error", f"unexpected error while sending, events dropped: {describe(result)}")
            elif kind in (OPERATOR, MISSING, NO_CLIENT):
                advice = (explain_client_failure(result) if kind == NO_CLIENT else
                          "Check the credentials, region and IAM permissions (logs:PutLogEvents, "
                          "logs:CreateLogGroup, logs:CreateLogStream; with log-group settings also "
                          "logs:TagResource and the KMS key's policy)")
                self._reporter.problem(
                    "operator:" + describe(result)[:40],
                    f"cannot ship to log group {batch.group!r}, stream {batch.stream!r}: {describe(result)}. "
                    f"{advice}; records stay buffered within bounds and are retried every {self.retry.slow:g} s",
                )
                attempt += 1
                created = False
                scheduler.sleep(self.retry.slow)
            else:
                if isinstance(result, SSLError):  # retried (a proxy may be restarting), but said: often a CA bundle
                    self._reporter.problem(
                        "tls", f"TLS with the endpoint failed for {batch.group}/{batch.stream}: {describe(result)}. "
                        "If the certificate is not trusted, give boto3 the CA bundle (AWS_CA_BUNDLE, or ca_bundle in "
                        "the AWS config file); records stay buffered within bounds and are retried with backoff",
                    )
                scheduler.sleep(self.retry.delay(attempt))
                attempt += 1

    def _entity_rejected(self, info: Any) -> None:
        """The service stored the events without the entity: counted, and said once per error type."""
        self._stats.add("entity_rejected")
        error = info.get("errorType", "unknown") if isinstance(info, dict) else "unknown"
        self._reporter.once(
            "entity:" + str(error), f"the service rejected the entity sent with the log events ({error}) and "
            "stored the events without it; check the entity keyword (the key attributes its Type needs). "
            "Counted as 'entity_rejected' in stats()",
        )

    def _call(self, operation: str, sending: Optional[Tuple[Scheduler, Batch, int]] = None,
              **params: Any) -> Tuple[str, Any]:
        """One API call: (OK, response) or (kind, exception).

        ``sending`` names the batch a PutLogEvents carries, to be marked on the wire.
        """
        with self._clients.fork_gate:
            try:
                client = self.client()
            except Exception as exc:
                return NO_CLIENT, detach(exc)
            self._stats.add("api_calls")
            try:
                if sending is not None:
                    if self._clients.wire_observed:
                        thread_state.sending = sending  # for client._on_wire, when the bytes go out
                    else:  # a user's client: on the wire from the moment the call begins
                        sending[0].on_wire(sending[1], sending[2])
                return OK, getattr(client, operation)(**params)
            except Exception as exc:
                return classify(exc), detach(exc)
            finally:
                thread_state.sending = None

    def _put(self, batch: Batch, events: List[Event], scheduler: Scheduler) -> Tuple[str, Any]:
        """One PutLogEvents call, with the batch's log format header, if any."""
        thread_state.log_format = batch.log_format
        try:
            return self._put_events(batch, events, scheduler)
        finally:
            thread_state.log_format = None

    def _put_events(self, batch: Batch, events: List[Event], scheduler: Scheduler) -> Tuple[str, Any]:
        """One PutLogEvents call; the body is encoded here, not by botocore, when we can.

        Should botocore ever send its own body instead (``logEvents: []``), the
        service answers a request without the events: it is resent the plain
        way, and the plain way is kept when it works.
        """
        clients = self._clients
        if not clients.prepared_body:
            return self._put_call(scheduler, batch, len(events), logEvents=request_events(events), **self._entity)
        thread_state.body = request_body(batch.group, batch.stream, events, self._body_tail)
        kind, result = self._put_call(scheduler, batch, len(events), logEvents=[])
        skipped = thread_state.body is not None  # our hook never ran
        thread_state.body = None
        if not skipped:
            if kind == OK:
                clients.body_verified = True
            if kind != INVALID or clients.body_verified:
                return kind, result
        elif not (kind == OK or isinstance(result, ClientError)):
            return kind, result  # nothing answered yet: resent as it is
        # Answered without our body, or an unproven body refused as invalid: the plain way tells.
        kind, result = self._put_call(scheduler, batch, len(events), logEvents=request_events(events), **self._entity)
        if skipped or kind == OK:
            clients.prepared_body = False
        return kind, result

    def _put_call(self, scheduler: Scheduler, batch: Batch, n: int, **params: Any) -> Tuple[str, Any]:
        """The API call of ``_put``, marked on the wire (see ``client._on_wire``) when its bytes go out."""
        return self._call("put_log_events", (scheduler, batch, n), logGroupName=batch.group,
                          logStreamName=batch.stream, **params)

    def _create(self, batch: Batch, missing: BaseException) -> Tuple[str, Any]:
        """Create the stream (and the group when it is missing too), then report OK to resend.

        A racing process may create either first; ResourceAlreadyExists counts as success.
        """
        key = (batch.group, batch.stream)
        with self._create_locks[hash(key) % len(self._create_locks)]:
            if not self._settings.create_log_stream:
                return MISSING, missing
            kind, result = self._create_one("create_log_stream", logGroupName=batch.group, logStreamName=batch.stream)
            if kind != MISSING:
                return kind, result
            if not self._settings.create_log_group:
                return MISSING, result
            # The settings go with the create call: they apply to the group only if this call makes it.
            kind, result = self._call("create_log_group", logGroupName=batch.group,
                                      **self._settings.create_group_params)
            if kind == OK and self._settings.retention_days:  # only on a group this handler created, never a racer's
                self._set_retention(batch.group)
            if kind != OK and not already_exists(result):
                # Refused as invalid: a KMS key that does not exist or whose policy keeps CloudWatch Logs out.
                # A person must act; the events are not at fault, so they are not isolated and dropped.
                return (OPERATOR if kind == INVALID else kind), result
            return self._create_one("create_log_stream", logGroupName=batch.group, logStreamName=batch.stream)

    def _set_retention(self, group: str) -> None:
        """Retention is the group's, not the records': its failure is reported and holds up nothing."""
        days = self._settings.retention_days
        kind, result = self._call("put_retention_policy", logGroupName=group, retentionInDays=days)
        if kind != OK:
            self._reporter.problem(
                "retention", f"could not set the retention of the log group {group!r} it created to "
                f"{days} days: {describe(result)} (needs logs:PutRetentionPolicy); records are "
                "shipped all the same",
            )

    def _create_one(self, operation: str, **params: Any) -> Tuple[str, Any]:
        kind, result = self._call(operation, **params)
        return (OK, {}) if already_exists(result) else (kind, result)
