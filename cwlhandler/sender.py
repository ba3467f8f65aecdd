"""The sender: the boto3 client, worker threads, retries and error handling.

Workers take planned batches from a queue and send each with PutLogEvents
(no sequence tokens, so batches of one stream may be in flight together).
Every batch is settled exactly once: acknowledged, or dropped with a reason.
"""
from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ParamValidationError,
    SSLError,
)

from .planner import Event, add_counts, rejected_by_reason, request_body, request_events
from .stats import Reporter, Stats


class _ThreadState(threading.local):
    """Per-thread state of the shipping threads.

    ``shipping`` marks them: records logged on them (botocore, urllib3) are
    never fed back into any cwlhandler handler.  Thread-local, so the mark dies
    with the thread (thread ids are reused).  Class-level defaults: a missing
    thread-local attribute would cost an exception per lookup.
    """

    shipping = False
    body: Optional[bytes] = None  # a PutLogEvents body encoded by this worker, for the hook
    log_format: Optional[str] = None  # the x-amzn-logs-format of the batch this worker sends, for the hook


thread_state = _ThreadState()


def _send_prepared_body(params: Dict[str, Any], **_: Any) -> None:
    """botocore ``before-call`` hook: swap in the body the worker encoded itself."""
    body = thread_state.body
    if body is not None:
        params["body"] = body
        thread_state.body = None


def _add_log_format(request: Any, **_: Any) -> None:
    """botocore ``before-sign`` hook: the ``x-amzn-logs-format`` header (signed) on a batch that asks for it.

    Keyed on the worker's thread-local state, so calls of a user's client made by anyone
    else, and our plain-log batches, never get it.  botocore's model has no member for it.
    """
    log_format = thread_state.log_format
    if log_format is not None:
        request.headers["x-amzn-logs-format"] = log_format


OK, RETRY, OPERATOR, MISSING, INVALID, ERROR = "ok", "retry", "operator", "missing", "invalid", "error"
NO_CLIENT = "no_client"  # the client could not be made: retried slowly, like OPERATOR
_OPERATOR_CODES = {
    "UnrecognizedClientException", "AccessDeniedException", "AccessDenied", "ExpiredTokenException",
    "ExpiredToken", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationTokenException", "MissingAuthenticationToken",
    "RequestExpired", "UnauthorizedOperation", "KMSInvalidStateException", "LimitExceededException",
}
_DELIVERED_CODES = {"DataAlreadyAcceptedException", "InvalidSequenceTokenException"}
_INVALID_CODES = {"InvalidParameterException", "ValidationException", "SerializationException"}
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
        return min(self.cap, self.base * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class Batch:
    __slots__ = ("group", "stream", "log_format", "events", "cut", "settled")

    def __init__(self, key: Tuple[str, ...], events: List[Event], cut: Any) -> None:
        self.group, self.stream = key[0], key[1]
        self.log_format = key[2] if len(key) > 2 else None  # "json/emf" for metric documents
        self.events = events
        self.cut = cut
        self.settled = False


class Chain:
    """Batches of one stream that one worker sends in order, then its successor, if any.

    The service stores equal timestamps in arrival order, so work that shares
    a timestamp with work still pending for the stream waits behind it; all
    other work of a stream goes out in parallel.
    """

    __slots__ = ("key", "batches", "first", "last", "successor")

    def __init__(self, batches: List[Batch]) -> None:
        self.key = (batches[0].group, batches[0].stream)
        self.batches = batches
        self.first = batches[0].events[0][0]
        self.last = batches[-1].events[-1][0]
        self.successor: Optional["Chain"] = None

    def shares_timestamp(self, other: "Chain") -> bool:
        low, high = max(self.first, other.first), min(self.last, other.last)
        if low > high:
            return False
        mine = {e[0] for b in self.batches for e in b.events if low <= e[0] <= high}
        return any(low <= e[0] <= high and e[0] in mine for b in other.batches for e in b.events)


def _already_exists(result: Any) -> bool:
    """A create call that a racing creator won: as good as ours."""
    return isinstance(result, ClientError) and result.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException"


def classify(error: BaseException) -> str:
    """Map an exception from a CloudWatch Logs call to what to do about it."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        if code == "ResourceNotFoundException":
            return MISSING
        if code in _DELIVERED_CODES:
            return OK
        if code in _OPERATOR_CODES or status in (401, 403):
            return OPERATOR
        if code in _INVALID_CODES:
            return INVALID
        return RETRY  # throttling, 5xx, unknown transient codes
    if isinstance(error, (NoCredentialsError, PartialCredentialsError, NoRegionError)):
        return OPERATOR
    if isinstance(error, ParamValidationError):
        return INVALID
    if isinstance(error, BotoCoreError):
        return RETRY  # connection errors, timeouts, truncated responses
    return ERROR


# Signature errors quote the canonical request (with the session token) after these words.
_QUOTES_REQUEST = re.compile(r"\s*The (Canonical String|String-to-Sign)\b.*", re.S)
_SECRETS = re.compile(r"(x-amz-security-token[:=]|Signature=|Credential=)\S*", re.I)


def describe(error: BaseException) -> str:
    """A one-line cause that names the error, never credentials or signatures."""
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        text = f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    else:
        text = f"{type(error).__name__}: {error}"
    text = _SECRETS.sub(r"\1<redacted>", _QUOTES_REQUEST.sub("", text))
    return " ".join(text.split())


def explain_client_failure(error: BaseException) -> str:
    """What to do when boto3 could not make the client: not the credentials, usually."""
    if isinstance(error, RecursionError) and "gevent.monkey" in sys.modules:
        return ("The boto3 client could not be made: gevent patched ssl after botocore had imported it, which "
                "breaks every new SSL context. Patch first (gevent.monkey.patch_all() before anything imports "
                "boto3 or botocore), or make the handler before gevent patches (gunicorn -k gevent: in "
                "logconfig_dict or the config file, not in the application)")
    return "The boto3 client could not be made (check the region, profile and endpoint settings)"


def detach(error: BaseException) -> BaseException:
    """Drop the tracebacks of ``error`` and of the errors it chains to.

    A caught botocore error's frames form reference cycles that keep the
    request (and its up-to-1-MiB body) alive until the cyclic GC runs; during
    an outage every attempt left one behind (about 20 MiB of RSS). Only the
    error's type and message are used, so the frames can go at once.
    """
    todo, seen = [error], set()
    while todo:
        exc = todo.pop()
        if exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            todo += (exc.__cause__, exc.__context__)
    return error


def make_client(session: Any, region_name: Optional[str], endpoint_url: Optional[str], concurrency: int) -> Any:
    """A logs client whose pool fits the workers and which leaves retries to us.

    Parameter validation is off because the planner guarantees valid requests
    and validation costs several microseconds per event.  boto3 (and with it
    ``ssl``) is imported here, not when cwlhandler is: gevent must be able to
    patch ``ssl`` before it is first imported.
    """
    import boto3
    import botocore.config

    config = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=concurrency,
        connect_timeout=5,
        read_timeout=20,
        parameter_validation=False,
        user_agent_extra="cwlhandler",
    )
    session = session or boto3.session.Session()
    return session.client("logs", region_name=region_name, endpoint_url=endpoint_url, config=config)


class _CannedBody:
    """The raw body of the rehearsal's answer (botocore reads ``stream()``)."""

    def stream(self, **_: Any) -> Any:
        yield b"{}"


def rehearse(client: Any) -> Optional[bool]:
    """Run one PutLogEvents through all of botocore without the network; did our body reach the wire?

    It loads, on the calling thread, everything botocore loads lazily on a first
    call (endpoint rules, signing, parsing): a cold shipping thread doing that
    while the application holds the GIL waited seconds for it, one file-system
    call at a time.  None when it could not tell (no credentials yet, say).
    """
    from botocore.awsrequest import AWSResponse

    wire: List[Any] = []

    def answer(request: Any, **_: Any) -> Any:
        wire.append(request.body)
        return AWSResponse(request.url, 200, {}, _CannedBody())

    event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.PutLogEvents"
    client.meta.events.register_first(event, answer, unique_id="cwlhandler-rehearsal")
    body = request_body("rehearsal", "rehearsal", [(0, "rehearsal", 9)])
    try:
        thread_state.body = body
        client.put_log_events(logGroupName="rehearsal", logStreamName="rehearsal", logEvents=[])
    except Exception:
        return None
    finally:
        thread_state.body = None
        client.meta.events.unregister(event, unique_id="cwlhandler-rehearsal")
    return bool(wire) and wire[0] == body


class ProcessClient:
    """The client of one process: made once, on a thread of the application, hooked and rehearsed.

    Never made on a shipping thread: a process that forks while one of its
    threads is inside OpenSSL (making SSL contexts, loading CA certificates)
    leaves the child a lock that no thread will release, and the child's own
    client then blocks forever (gunicorn's first worker did).  The factory runs
    on a shipping thread only as a retry after a failure.
    """

    def __init__(self, factory: Callable[[], Any], own: bool) -> None:
        self._factory = factory
        self._own = own
        self._client: Any = None
        self._lock = threading.Lock()
        # Our own encoder needs a client that does not validate parameters (ours);
        # a user's client may validate: then botocore must see the real events.
        self.prepared_body = own

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                client = self._factory()
                meta = getattr(client, "meta", None)  # None: a user's stand-in for a botocore client
                if meta is not None:  # on a user's client too: the hook only acts for our workers
                    service = meta.service_model.service_id.hyphenize()
                    meta.events.register(
                        f"before-sign.{service}.PutLogEvents", _add_log_format, unique_id="cwlhandler-log-format"
                    )
                if self._own:
                    client.meta.events.register(
                        f"before-call.{service}.PutLogEvents", _send_prepared_body, unique_id="cwlhandler-body"
                    )
                    self.prepared_body = rehearse(client) is not False
                self._client = client
            return self._client

    def for_child(self) -> "ProcessClient":
        """In a forked child: the parent's client, without the parent's pooled connections.

        Not a new client: under gevent, a worker that patched ``ssl`` after the
        master imported botocore cannot make SSL contexts any more
        (RecursionError), while the master's still work; and a child saves the
        client's making and rehearsal.  The fork gate kept the parent's
        shipping threads out of the client (its pool, its credentials) at the fork.
        """
        child = ProcessClient(self._factory, self._own)
        child.prepared_body = self.prepared_body
        client = self._client  # read without the lock, which a parent thread may have held at the fork
        if client is not None:
            http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
            try:
                http_session.close()  # the child's copies of the parent's sockets; the parent's stay open
            except Exception:
                pass
            child._client = client
        return child


class ForkGate:
    """Keeps the shipping threads out of botocore (and OpenSSL) while the process forks.

    A thread inside OpenSSL at the fork (a TLS handshake, a certificate check)
    may hold a global lock that the child inherits locked: the child's first
    SSL context would then wait forever.  Before a fork, new calls wait at the
    gate and the forking thread waits, a bounded time, for the calls under way.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._forking = False

    def __enter__(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._inside += 1

    def __exit__(self, *_: Any) -> None:
        with self._cond:
            self._inside -= 1
            if not self._inside:
                self._cond.notify_all()

    def close(self, deadline: float) -> None:
        """Before a fork: stop new calls, wait until ``deadline`` for the ones under way."""
        with self._cond:
            self._forking = True
            while self._inside:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def reopen(self) -> None:
        """After the fork, in the parent."""
        with self._cond:
            self._forking = False
            self._cond.notify_all()


class Sender:
    def __init__(
        self,
        clients: ProcessClient,
        *,
        concurrency: int,
        create_group: bool,
        create_stream: bool,
        retention_days: Optional[int],
        retry: RetryPolicy,
        stats: Stats,
        reporter: Reporter,
        on_settled: Callable[[Batch], None],
    ) -> None:
        self._clients = clients
        self.concurrency = concurrency
        self._create_group = create_group
        self._create_stream = create_stream
        self._retention_days = retention_days
        self.retry = retry
        self._stats = stats
        self._reporter = reporter
        self._on_settled = on_settled
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: Deque[Chain] = deque()
        self._pending: Dict[Tuple[str, str], List[Chain]] = {}  # per stream: queued, waiting or in flight
        self._queued = 0  # batches not yet started
        self._in_flight: Set[Batch] = set()
        self._create_locks = [threading.Lock() for _ in range(16)]
        self._abort = threading.Event()
        self.fork_gate = ForkGate()
        self._stopping = False
        self.threads: List[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._work_loop, name=f"cwlhandler-sender-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def free_slots(self) -> int:
        """Batches the flusher may still hand over: a queue as deep as the pool."""
        return 2 * self.concurrency - self._queued - len(self._in_flight)

    def submit(self, batches: List[Batch]) -> None:
        """Queue batches of one stream that one worker sends in order (see planner.chains)."""
        chain = Chain(batches)
        with self._lock:
            if not self._abort.is_set():
                pending = self._pending.setdefault(chain.key, [])
                blocker = next((c for c in reversed(pending) if c.shares_timestamp(chain)), None)
                pending.append(chain)
                self._queued += len(batches)
                if blocker is None:
                    self._queue.append(chain)
                    self._work.notify()
                else:
                    while blocker.successor is not None:
                        blocker = blocker.successor
                    blocker.successor = chain
                return
        for batch in batches:
            self._settle(batch, 0, {"shutdown": len(batch.events)})

    def stop(self) -> None:
        """Let workers exit once the queue is empty."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()

    def abort(self) -> None:
        """At the shutdown deadline: settle every batch not yet delivered as dropped."""
        self._abort.set()
        with self._lock:
            pending = [b for chains in self._pending.values() for chain in chains for b in chain.batches]
            self._queue.clear()
            self._pending.clear()
            self._queued = 0
        for batch in pending:
            self._settle(batch, 0, {"shutdown": len(batch.events)})
        self.stop()

    def client(self) -> Any:
        return self._clients.get()

    # -- workers -------------------------------------------------------------------------
    def _work_loop(self) -> None:
        thread_state.shipping = True
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._work.wait()
                if not self._queue:
                    return
                chain: Optional[Chain] = self._queue.popleft()
            while chain is not None:
                with self._lock:
                    self._queued -= len(chain.batches)
                    self._in_flight.update(chain.batches)
                for batch in chain.batches:
                    try:
                        sent, drops = self._deliver(batch)
                    except Exception as exc:  # a bug must not kill the worker or lose the count
                        self._reporter.problem("bug", f"unexpected error while sending, batch dropped: {describe(exc)}")
                        sent, drops = 0, {"error": len(batch.events)}
                    self._settle(batch, sent, drops)
                chain = self._finish(chain)

    def _finish(self, chain: Chain) -> Optional[Chain]:
        """Forget a sent chain (idle streams leave nothing behind); return what waited behind it."""
        with self._lock:
            pending = self._pending.get(chain.key)
            if pending is not None and chain in pending:
                pending.remove(chain)
                if not pending:
                    del self._pending[chain.key]
            return None if self._abort.is_set() else chain.successor

    def _settle(self, batch: Batch, sent: int, drops: Dict[str, int]) -> None:
        with self._lock:
            if batch.settled:
                return
            batch.settled = True
            self._in_flight.discard(batch)
        self._stats.add("sent", sent)
        self._stats.drop(drops)
        self._on_settled(batch)

    def _sleep(self, seconds: float) -> None:
        """Wait between attempts; the shutdown deadline cuts the wait short."""
        self._abort.wait(seconds)

    # -- one batch -----------------------------------------------------------------------
    def _deliver(self, batch: Batch) -> Tuple[int, Dict[str, int]]:
        """Send ``batch`` until acknowledged; returns (events accepted, drops by reason).

        A batch the service refuses as invalid is halved until the offending
        events are alone, so only they are dropped.
        """
        sent = 0
        drops: Dict[str, int] = {}
        parts = [batch.events]
        attempt = 0
        isolation_calls = 0
        created = False
        while parts:
            events = parts[-1]
            if self._abort.is_set():
                add_counts(drops, {"shutdown": sum(len(p) for p in parts)})
                return sent, drops
            if attempt:
                self._stats.add("retries")
            kind, result = self._put(batch, events)
            if kind == MISSING and not created:
                kind, result = self._create(batch, result)
                created = kind == OK
                if created:
                    continue
            if kind == OK:
                info = result.get("rejectedLogEventsInfo") if isinstance(result, dict) else None
                rejected = rejected_by_reason(info or {}, len(events))
                sent += len(events) - sum(rejected.values())
                add_counts(drops, rejected)
                parts.pop()
                attempt = 0
            elif kind == INVALID:
                parts.pop()
                if len(events) == 1 or isolation_calls >= MAX_ISOLATION_CALLS:
                    add_counts(drops, {"rejected": len(events)})
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
                add_counts(drops, {"error": len(events)})
                self._reporter.problem("error", f"unexpected error while sending, events dropped: {describe(result)}")
            elif kind in (OPERATOR, MISSING, NO_CLIENT):
                advice = (explain_client_failure(result) if kind == NO_CLIENT else
                          "Check the credentials, region and IAM permissions (logs:PutLogEvents, "
                          "logs:CreateLogGroup, logs:CreateLogStream)")
                self._reporter.problem(
                    "operator:" + describe(result)[:40],
                    f"cannot ship to log group {batch.group!r}, stream {batch.stream!r}: {describe(result)}. "
                    f"{advice}; records stay buffered within bounds and are retried every {self.retry.slow:g} s",
                )
                attempt += 1
                created = False
                self._sleep(self.retry.slow)
            else:
                if isinstance(result, SSLError):  # retried (a proxy may be restarting), but said: often a CA bundle
                    self._reporter.problem(
                        "tls", f"TLS with the endpoint failed for {batch.group}/{batch.stream}: {describe(result)}. "
                        "If the certificate is not trusted, give boto3 the CA bundle (AWS_CA_BUNDLE, or ca_bundle in "
                        "the AWS config file); records stay buffered within bounds and are retried with backoff",
                    )
                self._sleep(self.retry.delay(attempt))
                attempt += 1
        return sent, drops

    def _call(self, operation: str, **params: Any) -> Tuple[str, Any]:
        """One API call: (OK, response) or (kind, exception)."""
        with self.fork_gate:
            try:
                client = self.client()
            except Exception as exc:
                return NO_CLIENT, detach(exc)
            self._stats.add("api_calls")
            try:
                return OK, getattr(client, operation)(**params)
            except Exception as exc:
                return classify(exc), detach(exc)

    def _put(self, batch: Batch, events: List[Event]) -> Tuple[str, Any]:
        """One PutLogEvents call, with the batch's log format header, if any."""
        thread_state.log_format = batch.log_format
        try:
            return self._put_events(batch, events)
        finally:
            thread_state.log_format = None

    def _put_events(self, batch: Batch, events: List[Event]) -> Tuple[str, Any]:
        """The body is encoded here, not by botocore, when we can."""
        if self._clients.prepared_body:
            thread_state.body = request_body(batch.group, batch.stream, events)
            kind, result = self._call(
                "put_log_events", logGroupName=batch.group, logStreamName=batch.stream, logEvents=[]
            )
            unsent = thread_state.body is not None
            thread_state.body = None
            if not unsent or not (kind == OK or isinstance(result, ClientError)):
                return kind, result
            # The service answered a request without our body (a botocore change?): go the slow way.
            self._clients.prepared_body = False
        return self._call(
            "put_log_events",
            logGroupName=batch.group,
            logStreamName=batch.stream,
            logEvents=request_events(events),
        )

    def _create(self, batch: Batch, missing: BaseException) -> Tuple[str, Any]:
        """Create the stream (and the group when it is missing too), then report OK to resend.

        A racing process may create either first; ResourceAlreadyExists counts as success.
        """
        key = (batch.group, batch.stream)
        with self._create_locks[hash(key) % len(self._create_locks)]:
            if not self._create_stream:
                return MISSING, missing
            kind, result = self._create_one("create_log_stream", logGroupName=batch.group, logStreamName=batch.stream)
            if kind != MISSING:
                return kind, result
            if not self._create_group:
                return MISSING, result
            kind, result = self._call("create_log_group", logGroupName=batch.group)
            if kind == OK and self._retention_days:  # only on a group this handler created, never a racer's
                self._set_retention(batch.group)
            if kind != OK and not _already_exists(result):
                return kind, result
            return self._create_one("create_log_stream", logGroupName=batch.group, logStreamName=batch.stream)

    def _set_retention(self, group: str) -> None:
        """Retention is the group's, not the records': its failure is reported and holds up nothing."""
        kind, result = self._call("put_retention_policy", logGroupName=group, retentionInDays=self._retention_days)
        if kind != OK:
            self._reporter.problem(
                "retention", f"could not set the retention of the log group {group!r} it created to "
                f"{self._retention_days} days: {describe(result)} (needs logs:PutRetentionPolicy); records are "
                "shipped all the same",
            )

    def _create_one(self, operation: str, **params: Any) -> Tuple[str, Any]:
        kind, result = self._call(operation, **params)
        return (OK, {}) if _already_exists(result) else (kind, result)
