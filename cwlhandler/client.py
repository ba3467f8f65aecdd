"""The boto3 client of one process: made, hooked, rehearsed, forked; and the gate that keeps it out of forks.

Hooks on the handler's own client: the prepared PutLogEvents body (``before-call``),
the ``x-amzn-logs-format`` header of EMF batches (``before-sign``), and connections
that say when a request goes on the wire (see :func:`observe_wire`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ._compat import http_session, pool_classes, set_request_body
from .planner import request_body
from .threadstate import thread_state


def _send_prepared_body(params: Dict[str, Any], **_: Any) -> None:
    """botocore ``before-call`` hook: swap in the body the worker encoded itself."""
    body = thread_state.body
    if body is not None:
        set_request_body(params, body)
        thread_state.body = None


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


def session_for(boto3_session: Any, region_name: Optional[str]) -> Any:
    """The boto3 session that makes the handler's client; a ValueError if no region is to be had.

    boto3 (and with it ``ssl``) is imported here, not when cwlhandler is: gevent must be able to patch
    ``ssl`` before it is first imported.
    """
    import boto3

    session = boto3_session or boto3.session.Session()
    if not (region_name or session.region_name):
        raise ValueError("region_name: no AWS region given or configured (set region_name, AWS_DEFAULT_REGION "
                         "or a profile's region)")
    return session


def make_client(session: Any, region_name: Optional[str], endpoint_url: Optional[str], concurrency: int) -> Any:
    """A logs client of ``session`` (see :func:`session_for`) whose pool fits the workers and which leaves
    retries to us.

    Parameter validation is off because the planner guarantees valid requests
    and validation costs several microseconds per event.  botocore's config (and
    with it ``ssl``) is imported here, not when cwlhandler is: gevent must be able
    to patch ``ssl`` before it is first imported.
    """
    import botocore.config

    config = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=concurrency,
        connect_timeout=5,
        read_timeout=20,
        parameter_validation=False,
        user_agent_extra="cwlhandler",
    )
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
        # Calls through this client wait here while the process forks (see ForkGate).
        self.fork_gate = ForkGate()

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
