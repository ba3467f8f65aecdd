"""The sender: the boto3 client, worker threads, retries and error handling.

Workers take planned batches from a queue and send each with PutLogEvents
(no sequence tokens, so batches of one stream may be in flight together).
Every batch is settled exactly once: acknowledged, or dropped with a reason.
"""
from __future__ import annotations

import itertools
import random
import re
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    SSLError,
)

from ._compat import http_session, pool_classes, set_request_body
from .planner import Event, add_counts, body_tail, rejected_by_reason, request_body, request_events
from .stats import Reporter, Stats

_stamp = itemgetter(0)
_flatten = itertools.chain.from_iterable


class _ThreadState(threading.local):
    """Per-thread state of the shipping threads.

    ``shipping`` marks them: records logged on them (botocore, urllib3) are
    never fed back into any cwlhandler handler.  Thread-local, so the mark dies
    with the thread (thread ids are reused).  Class-level defaults: a missing
    thread-local attribute would cost an exception per lookup.
    """

    shipping = False
    body: Optional[bytes] = None  # a PutLogEvents body encoded by this worker, for the hook
    # The request this worker is about to send, until its bytes go out: (sender, batch, events in it).
    sending: Optional[Tuple["Sender", "Batch", int]] = None
    log_format: Optional[str] = None  # the x-amzn-logs-format of the batch this worker sends, for the hook


thread_state = _ThreadState()


def _send_prepared_body(params: Dict[str, Any], **_: Any) -> None:
    """botocore ``before-call`` hook: swap in the body the worker encoded itself."""
    body = thread_state.body
    if body is not None:
        set_request_body(params, body)
        thread_state.body = None


class Unsent(Exception):
    """Raised on the way to the wire: the batch was counted as not sent, so it must not be sent."""


def _on_wire() -> None:
    """Called by our connections just before a request's first byte leaves, once connected."""
    sending = thread_state.sending
    if sending is not None:
        thread_state.sending = None
        sending[0].on_wire(sending[1], sending[2])


_MARKED_POOLS: Dict[type, type] = {}


def _marked_pool(pool: type) -> type:
    """``pool`` with connections that call :func:`_on_wire` once connected, before each write.

    A connection refused, or still being made, at the deadline put nothing on
    the wire: its records are certainly not delivered (``shutdown``).  Once
    connected, the service may store what is written even if its answer never
    comes (``shutdown_in_flight``).  Made on first use: this imports urllib3 (and ssl).
    """
    marked = _MARKED_POOLS.get(pool)
    if marked is None:
        base = pool.ConnectionCls  # type: ignore[attr-defined]

        class Connection(base):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                _on_wire()

            def send(self, data: Any) -> None:
                if self.sock is not None:  # else http.client connects first, through connect() above
                    _on_wire()
                super().send(data)

        marked = _MARKED_POOLS[pool] = type(pool.__name__, (pool,), {"ConnectionCls": Connection})
    return marked


def observe_wire(client: Any) -> bool:
    """Make ``client``'s connections mark their requests on the wire; False if this botocore has no such seam."""
    pools = pool_classes(client)
    if pools is None:
        return False
    for scheme, pool in list(pools.items()):
        pools[scheme] = _marked_pool(pool)
    return True


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
        return min(self.cap, self.base * 2.0 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class Batch:
    """Events of one stream for one PutLogEvents call, and what became of them so far.

    ``sent`` and ``drops`` grow as parts are answered (a refused batch is
    halved); ``on_wire`` is the number of events in a request written and not
    yet answered.  Whatever is neither when the batch is settled is counted by
    the reason its settling gives (see ``Sender._settle``).
    """

    __slots__ = ("group", "stream", "log_format", "events", "cut", "settled", "sent", "drops", "on_wire")

    def __init__(self, key: Tuple[str, ...], events: List[Event], cut: Any) -> None:
        self.group, self.stream = key[0], key[1]
        self.log_format = key[2] if len(key) > 2 else None  # "json/emf" for metric documents
        self.events = events
        self.cut = cut
        self.settled = False
        self.sent = 0
        self.drops: Dict[str, int] = {}
        self.on_wire = 0


class Chain:
    """Batches of one stream that one worker sends in order, then its successor, if any.

    The service stores equal timestamps in arrival order, so work that shares
    a timestamp with work still pending for the stream waits behind it; all
    other work of a stream goes out in parallel (docs/architecture.md, "Equal
    timestamps").
    """

    __slots__ = ("key", "batches", "first", "last", "successor", "_stamps")

    def __init__(self, batches: List[Batch]) -> None:
        self.key = (batches[0].group, batches[0].stream)
        self.batches = batches
        self.first = batches[0].events[0][0]
        self.last = batches[-1].events[-1][0]
        self.successor: Optional["Chain"] = None
        self._stamps: Optional[List[int]] = None

    def stamps(self, low: int, high: int) -> List[int]:
        """The chain's timestamps within ``[low, high]``, found by bisection: a chain is sorted (planner)."""
        stamps = self._stamps
        if stamps is None:  # made only when ranges overlap, which is rare
            stamps = self._stamps = list(map(_stamp, _flatten(b.events for b in self.batches)))
        return stamps[bisect_left(stamps, low):bisect_right(stamps, high)]

    def shares_timestamp(self, other: "Chain") -> bool:
        low, high = max(self.first, other.first), min(self.last, other.last)
        return low <= high and not set(self.stamps(low, high)).isdisjoint(other.stamps(low, high))


# Answers after which the service may still have stored the request (a failure inside it, a proxy timing out).
_UNCERTAIN_STATUS = {500, 502, 504}


def _may_have_stored(error: Any) -> bool:
    """After a failed PutLogEvents: could the service have stored it all the same?

    An error the service answered with refused the request, except an internal
    failure; a connection reset or read timeout after the request was written
    leaves it unknown.
    """
    if isinstance(error, ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in _UNCERTAIN_STATUS
    return True


def _already_exists(result: Any) -> bool:
    """A create call that a racing creator won: as good as ours."""
    return (isinstance(result, ClientError)
            and result.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException")


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
    if isinstance(error, (BotoCoreError, Unsent)):
        return RETRY  # connection errors, timeouts, truncated responses; Unsent: the deadline, retried never
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
    todo: List[Optional[BaseException]] = [error]
    seen: Set[int] = set()
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
        # Whether a prepared body was seen to reach the service (the rehearsal, or an answer to a real one).
        self.body_verified = False
        # Whether the client's connections say when a request goes on the wire (ours only:
        # a user's client is not altered). Without it, a call counts as on the wire once begun.
        self.wire_observed = False

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
                    rehearsed = rehearse(client)
                    self.prepared_body, self.body_verified = rehearsed is not False, rehearsed is True
                    self.wire_observed = observe_wire(client)
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
        child.prepared_body, child.body_verified = self.prepared_body, self.body_verified
        child.wire_observed = self.wire_observed
        client = self._client  # read without the lock, which a parent thread may have held at the fork
        if client is not None:
            try:
                # the child's copies of the parent's sockets; the parent's stay open
                http_session(client).close()  # type: ignore[union-attr]
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
        group_params: Dict[str, Any],
        entity: Optional[Dict[str, Dict[str, str]]],
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
        self._group_params = group_params  # CreateLogGroup's settings: tags, KMS key, class, deletion protection
        self._entity = {"entity": entity} if entity else {}  # for botocore's serialiser
        self._body_tail = body_tail(entity)  # for our own encoder
        self._stats = stats
        self._reporter = reporter
        self._on_settled = on_settled
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)  # after an abort: a batch on the wire was settled
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
            self._settle(batch, "shutdown")

    def stop(self) -> None:
        """Let workers exit once the queue is empty."""
        with self._lock:
            self._stopping = True
            self._work.notify_all()

    def abort(self, answer_by: float) -> None:
        """At the shutdown deadline: settle every batch not yet delivered.

        What is on the wire may still be answered: it is given until
        ``answer_by``, then counted as ``shutdown_in_flight`` (the service may
        have stored it).  Everything else never left: ``shutdown``.
        """
        self._abort.set()
        with self._lock:
            pending = [b for chains in self._pending.values() for chain in chains for b in chain.batches]
            self._queue.clear()
            self._pending.clear()
            self._queued = 0
        for batch in pending:
            if not batch.on_wire:
                self._settle(batch, "shutdown")
        with self._lock:
            while any(b.on_wire for b in self._in_flight):
                remaining = answer_by - time.monotonic()
                if remaining <= 0:
                    break
                self._answered.wait(remaining)
            unanswered = list(self._in_flight)
        for batch in unanswered:
            self._settle(batch, "shutdown")
        self.stop()

    def on_wire(self, batch: Batch, n: int) -> None:
        """A request of ``n`` events of ``batch`` is about to be written; refused once the batch is settled."""
        with self._lock:
            if batch.settled:
                raise Unsent("the shutdown deadline passed; the batch was counted as not sent")
            batch.on_wire = n

    def _progress(self, batch: Batch, sent: int, drops: Optional[Dict[str, int]] = None) -> None:
        """A part of ``batch`` was answered (or given up): count it on the batch."""
        with self._lock:
            batch.on_wire = 0
            batch.sent += sent
            if drops:
                add_counts(batch.drops, drops)

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
                    rest = "shutdown"  # what the deadline cut short
                    try:
                        self._deliver(batch)
                    except Exception as exc:  # a bug must not kill the worker or lose the count
                        self._reporter.problem("bug", f"unexpected error while sending, batch dropped: {describe(exc)}")
                        rest = "error"
                    self._settle(batch, rest)
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

    def _settle(self, batch: Batch, rest: str) -> None:
        """Count ``batch`` once: what was answered, what is on the wire, and the rest as ``rest``."""
        with self._lock:
            if batch.settled:
                return
            batch.settled = True
            self._in_flight.discard(batch)
            sent, drops = batch.sent, dict(batch.drops)
            unsettled = len(batch.events) - sent - sum(drops.values())
            if batch.on_wire:
                add_counts(drops, {"shutdown_in_flight": batch.on_wire})
                unsettled -= batch.on_wire
            if unsettled:
                add_counts(drops, {rest: unsettled})
            if self._abort.is_set():
                self._answered.notify_all()
        self._stats.add("sent", sent)
        self._stats.drop(drops)
        self._on_settled(batch)

    def _sleep(self, seconds: float) -> None:
        """Wait between attempts; the shutdown deadline cuts the wait short."""
        self._abort.wait(seconds)

    # -- one batch -----------------------------------------------------------------------
    def _deliver(self, batch: Batch) -> None:
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
            if self._abort.is_set():
                return
            if attempt:
                self._stats.add("retries")
            kind, result = self._put(batch, events)
            if kind != OK and not _may_have_stored(result):
                self._progress(batch, 0)  # a plain refusal: this part is not on the wire any more
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
                self._progress(batch, len(events) - sum(rejected.values()), rejected)
                parts.pop()
                attempt = 0
            elif kind == INVALID:
                parts.pop()
                if len(events) == 1 or isolation_calls >= MAX_ISOLATION_CALLS:
                    self._progress(batch, 0, {"rejected": len(events)})
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
                self._progress(batch, 0, {"error": len(events)})
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

    def _entity_rejected(self, info: Any) -> None:
        """The service stored the events without the entity: counted, and said once per error type."""
        self._stats.add("entity_rejected")
        error = info.get("errorType", "unknown") if isinstance(info, dict) else "unknown"
        self._reporter.once(
            "entity:" + str(error), f"the service rejected the entity sent with the log events ({error}) and "
            "stored the events without it; check the entity keyword (the key attributes its Type needs). "
            "Counted as 'entity_rejected' in stats()",
        )

    def _call(self, operation: str, sending: Optional[Tuple["Sender", Batch, int]] = None,
              **params: Any) -> Tuple[str, Any]:
        """One API call: (OK, response) or (kind, exception).

        ``sending`` names the batch a PutLogEvents carries, to be marked on the wire.
        """
        with self.fork_gate:
            try:
                client = self.client()
            except Exception as exc:
                return NO_CLIENT, detach(exc)
            self._stats.add("api_calls")
            try:
                if sending is not None:
                    if self._clients.wire_observed:
                        thread_state.sending = sending
                    else:  # a user's client: on the wire from the moment the call begins
                        self.on_wire(sending[1], sending[2])
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
        """One PutLogEvents call; the body is encoded here, not by botocore, when we can.

        Should botocore ever send its own body instead (``logEvents: []``), the
        service answers a request without the events: it is resent the plain
        way, and the plain way is kept when it works.
        """
        clients = self._clients
        if not clients.prepared_body:
            return self._put_call(batch, len(events), logEvents=request_events(events), **self._entity)
        thread_state.body = request_body(batch.group, batch.stream, events, self._body_tail)
        kind, result = self._put_call(batch, len(events), logEvents=[])
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
        kind, result = self._put_call(batch, len(events), logEvents=request_events(events), **self._entity)
        if skipped or kind == OK:
            clients.prepared_body = False
        return kind, result

    def _put_call(self, batch: Batch, n: int, **params: Any) -> Tuple[str, Any]:
        """The API call of ``_put``, marked on the wire (see :func:`_on_wire`) when its bytes go out."""
        try:
            return self._call("put_log_events", (self, batch, n), logGroupName=batch.group,
                              logStreamName=batch.stream, **params)
        finally:
            thread_state.sending = None

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
            # The settings go with the create call: they apply to the group only if this call makes it.
            kind, result = self._call("create_log_group", logGroupName=batch.group, **self._group_params)
            if kind == OK and self._retention_days:  # only on a group this handler created, never a racer's
                self._set_retention(batch.group)
            if kind != OK and not _already_exists(result):
                # Refused as invalid: a KMS key that does not exist or whose policy keeps CloudWatch Logs out.
                # A person must act; the events are not at fault, so they are not isolated and dropped.
                return (OPERATOR if kind == INVALID else kind), result
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
