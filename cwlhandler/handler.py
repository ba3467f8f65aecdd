"""``CloudWatchLogsHandler``: thin glue between ``logging`` and the pipeline."""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import lifecycle
from ._compat import holds, holds_logging_lock, logs_service_model
from .client import ForkGate, ProcessClient, make_client, session_for
from .config import Settings, as_endpoint_url, check_api_members
from .metrics import DEFAULT_METRICS_STREAM, Metrics, MetricsShipper, check_metrics_stream
from .naming import NameTemplate, Router, new_uuid
from .pipeline import Pipeline
from .planner import add_counts, measure
from .records import Drop, Item
from .stats import Reporter, Stats, combined, no_stats
from .threadstate import thread_state
from .transport import CloudWatchTransport, RetryPolicy

DEFAULT_STREAM = "{hostname}/{program}/{pid}"

_getpid = os.getpid
# After the handler's threads failed to start, how long records are dropped before it tries again.
THREAD_RETRY = 5.0


class CloudWatchLogsHandler(logging.Handler):
    """A logging handler that ships records to CloudWatch Logs in the background.

    ``emit`` formats the record on the caller's thread and appends it to a
    bounded buffer; a flusher thread plans valid PutLogEvents batches and a
    pool of workers sends them.  Every setting is validated at construction
    (``ValueError`` naming it); numbers and booleans may be strings (dictConfig).

    Args:
        log_group: group name; may use placeholders (``{hostname}``, ``{program}``, ``{pid}``,
            ``{uuid}``, ``{thread}``, ``{logger}``, ``{level}``, ``{date}``).
        log_stream: stream name template, same placeholders (default ``"{hostname}/{program}/{pid}"``).
        client: a boto3 ``logs`` client to use; default: one made from the next three.
        boto3_session: the session that makes the client (default: a new ``boto3.session.Session()``).
        region_name: the AWS Region; required unless the session or environment configures one.
        endpoint_url: an explicit ``http://`` or ``https://`` endpoint (an emulator, a proxy).
        create_log_group: create the group when a send says it is missing.
        create_log_stream: create the stream when a send says it is missing.
        retention_days: retention of a group this handler creates; older events are dropped as ``expired``.
        log_group_tags: tags of a group this handler creates.
        kms_key_id: ARN of the KMS key that encrypts a group this handler creates.
        log_group_class: ``STANDARD`` or ``INFREQUENT_ACCESS`` for a group this handler creates.
        deletion_protection: create the group with deletion protection on.
        entity: the PutLogEvents ``entity`` (``keyAttributes``, ``attributes``) sent with every request.
        metrics_stream: the stream of the EMF documents of :meth:`metrics`, in the handler's group
            (default ``"metrics/{hostname}/{program}/{pid}"``; only process placeholders and ``{date}``).
        flush_interval: seconds a buffered record may wait before a send starts.
        max_batch_count: events per request (at most the API's 10,000).
        max_batch_bytes: bytes per request, message bytes + 26 per event (at most 1 MiB).
        max_event_bytes: bytes per event, message bytes + 26 (at most 1 MiB).
        max_concurrency: PutLogEvents calls in flight at once.
        max_buffer_records: bound of the buffer in records, those being sent included.
        max_buffer_bytes: bound of the buffer in bytes, those being sent included.
        on_full: when the buffer is full: ``drop_oldest``, ``drop_newest`` or ``block``.
        oversize: an event over ``max_event_bytes``: ``truncate``, ``split`` or ``drop``.
        shutdown_timeout: the most ``close()``, exit or SIGTERM may wait to deliver.
        handle_sigterm: deliver on SIGTERM, then die of it, when SIGTERM has its default action.
        level: the handler's level, as for any ``logging.Handler``.

    The README's settings table says more of each; tests/test_defaults.py keeps
    this list, the signature, ``Settings`` and that table in agreement.
    """

    def __init__(
        self,
        log_group: str,
        log_stream: str = DEFAULT_STREAM,
        client: Any = None,
        boto3_session: Any = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        create_log_group: bool = True,
        create_log_stream: bool = True,
        retention_days: Optional[int] = None,
        log_group_tags: Optional[Dict[str, str]] = None,
        kms_key_id: Optional[str] = None,
        log_group_class: Optional[str] = None,
        deletion_protection: bool = False,
        entity: Optional[Dict[str, Dict[str, str]]] = None,
        flush_interval: float = 5.0,
        max_batch_count: int = 10_000,
        max_batch_bytes: int = 1_048_576,
        max_event_bytes: int = 1_048_576,
        max_concurrency: int = 4,
        max_buffer_records: int = 100_000,
        max_buffer_bytes: int = 64 * 2**20,
        on_full: str = "drop_oldest",
        oversize: str = "truncate",
        shutdown_timeout: float = 10.0,
        handle_sigterm: bool = True,
        level: Any = logging.NOTSET,
        metrics_stream: str = DEFAULT_METRICS_STREAM,
    ) -> None:
        # Validate everything before Handler.__init__ registers the handler with
        # logging, so a refused configuration leaves nothing behind for shutdown.
        given = locals()  # the keywords, as written: Settings takes its own from them (one list of names)
        self.settings = Settings(**{field.name: given[field.name] for field in dataclasses.fields(Settings)})
        self._router = Router(
            NameTemplate("log_group", log_group, "group"),
            NameTemplate("log_stream", log_stream, "stream"),
            new_uuid(),
        )
        self._metrics_stream = check_metrics_stream(metrics_stream)
        self.log_group = log_group
        self.log_stream = log_stream
        self._client = client
        self._session = boto3_session if client is not None else session_for(boto3_session, region_name)
        self._region_name = region_name
        self._endpoint_url = as_endpoint_url(endpoint_url)
        if self.settings.create_group_params or self.settings.entity:
            # The boto3 session's loader caches the model: the client made next loads it no second time.
            check_api_members(self.settings, client.meta.service_model if client is not None
                              else logs_service_model(self._session))
        super().__init__(level)
        self.retry_policy = RetryPolicy()
        self._reporter = Reporter(log_group)
        self._pipeline: Optional[Pipeline] = None
        self._append: Optional[Callable[[Item], None]] = None  # pipeline.buffer.append (or _ship_now), once started
        self._start_lock = threading.Lock()
        self._closed = False
        self._count_lock = threading.Lock()  # for the rare counts below (+= is not atomic without the GIL)
        self._refused: Dict[str, int] = {}  # records the handler dropped without a pipeline, by reason
        self._format_errors = 0
        self._threads_retry_at = 0.0  # after threads failed to start: when to try again
        self._stalled: Optional[Tuple[int, float]] = None  # (settled position, deadline) of a vain exit flush
        self._retired = no_stats()  # counters of pipelines that delivered and stopped (see _ship_now)
        self._metrics: Optional[MetricsShipper] = None  # made by the first metrics() call
        self._pid = _getpid()  # the process this handler's pipeline and client belong to
        self._clients = ProcessClient(self._make_client, own=client is None)
        self._prepare_client()
        lifecycle.register(self)

    # -- logging.Handler contract --------------------------------------------------------
    def handle(self, record: logging.LogRecord) -> Any:
        """Like ``Handler.handle`` but without the handler lock, which ``emit`` does not need.

        Records logged on the handler's own threads (botocore, urllib3) are
        refused here, before any lock, so shipping never feeds back into itself
        and a worker never waits for a lock that ``close()`` holds.
        """
        if thread_state.shipping:
            return False
        if not self.filters:
            self.emit(record)
            return True
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Format on the caller's thread and buffer; never raises, never does I/O."""
        try:
            if self._pid != _getpid():  # a fork that ran no Python fork hook (uWSGI)
                self._adopt_process()
            append = self._append or self._start()
            try:
                message = self.format(record)
            except Exception as exc:
                self.handleError(record)
                with self._count_lock:
                    self._format_errors += 1
                message = _unformattable(record, exc)
            if type(message) is str and message.isascii() and message:
                nbytes = len(message)  # the common case, without a call
            else:
                message, nbytes = measure(str(message))
            try:
                timestamp = int(record.created * 1000)
            except (TypeError, ValueError, OverflowError):  # NaN, inf, None: a broken clock or record
                timestamp = int(time.time() * 1000)
            router = self._router
            append((timestamp, message, nbytes, router.static or router.route(record, timestamp)))
        except Exception:
            self.handleError(record)

    def flush(self, timeout: Optional[float] = None) -> bool:  # type: ignore[override]
        """Wait until every record emitted before the call is acknowledged or dropped.

        Waits at most ``timeout`` seconds (default ``shutdown_timeout``) and
        returns False if that was not enough.  Metric values put before the call are included.
        """
        if thread_state.shipping:
            return self._current_pipeline() is None
        self._ship_metrics()
        pipeline = self._current_pipeline()
        if pipeline is None:
            return True
        if holds_logging_lock():  # dictConfig replacing handlers: it closes us next (see close)
            return pipeline.flush(time.monotonic())
        if timeout is None:
            deadline = self._default_deadline(pipeline)
        else:
            deadline = time.monotonic() + max(0.0, float(timeout))
        settled = pipeline.flush(deadline)
        if not settled and timeout is None and holds(self.lock):
            # The exit sequence (our exit hook, then logging.shutdown) holds our lock around each
            # step: the next keeps this deadline, so exit does not wait shutdown_timeout at every step.
            # A flush of the application's leaves nothing behind.
            self._stalled = (pipeline.buffer.settled, deadline)
        return settled

    def _flush_before_exit(self) -> None:
        """The exit hook's flush, under the handler's lock as ``logging.shutdown``'s: if it waits in vain,
        its deadline stands for the flush and close that ``logging.shutdown`` does next (see ``flush``)."""
        with self.lock:  # type: ignore[union-attr]
            self.flush()

    def close(self) -> None:
        """Deliver what can be delivered within ``shutdown_timeout``, then stop. Idempotent."""
        pipeline = self._current_pipeline()
        if self._metrics is not None:
            self._metrics.aggregator.close()  # first: a value put during the drain below is counted, not stranded
            self._ship_metrics()
            pipeline = self._pipeline  # the drain may have started it
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            self._append = None  # later records are counted as "closed"
        try:
            if pipeline is not None:
                deadline = self._default_deadline(pipeline)
                if holds_logging_lock():
                    # dictConfig closes replaced handlers holding the logging module lock. Waiting under
                    # it would hold up our workers (botocore's loggers take it on a cold level cache);
                    # releasing it would let another thread register a handler that dictConfig then
                    # drops from logging's list. The delivery finishes in the background instead.
                    lifecycle.finish_in_background(pipeline, deadline)
                else:
                    pipeline.shutdown(deadline)
        finally:
            lifecycle.unregister(self)
            super().close()

    def stats(self) -> Dict[str, Any]:
        """Counters: emitted, sent, dropped, dropped_by_reason, api_calls, retries, buffered..."""
        pipeline = self._current_pipeline()
        result = combined(pipeline.stats_snapshot() if pipeline is not None else no_stats(), self._retired)
        with self._count_lock:
            refused, result["format_errors"] = dict(self._refused), self._format_errors
        if self._metrics is not None:  # metric values dropped before any document: one event each
            add_counts(refused, self._metrics.aggregator.drop_counts())
        n = sum(refused.values())
        result["emitted"] += n
        result["dropped"] += n
        add_counts(result["dropped_by_reason"], refused)
        return result

    def metrics(self, namespace: str, dimensions: Optional[Mapping[str, str]] = None) -> Metrics:
        """Custom metrics for ``namespace``, shipped as EMF documents to ``metrics_stream`` (see the README).

        ``dimensions`` (name to value) go with every value put through the result.  A
        ``ValueError`` names what is wrong with the namespace or the dimensions.
        """
        self._current_pipeline()  # in a forked child, take over first
        with self._start_lock:
            if self._metrics is None:
                self._metrics = MetricsShipper(
                    self._router.group, self._metrics_stream, self._router.uuid, self.settings.flush_interval,
                    self.settings.max_event_bytes, self._reporter, self._metrics_waiting, self._current_pipeline)
                if self._pipeline is not None:
                    self._pipeline.tick = self._metrics.tick
                if self._closed:  # its values are dropped and counted, as records are
                    self._metrics.aggregator.close()
            shipper = self._metrics
        return shipper.metrics(namespace, dimensions)

    # -- internals -----------------------------------------------------------------------
    def _metrics_waiting(self) -> None:
        """The first metric value since the last drain: a pipeline must run, and its flusher time the interval."""
        if lifecycle.ships_at_once():  # uWSGI's master runs no thread of ours: flush() and close() ship them
            return
        self._append or self._start()
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.poke()

    def _ship_metrics(self) -> None:
        """Hand the metric values put so far to the buffer now, not at the end of their interval."""
        self._current_pipeline()  # in a forked child, take over first: the parent's values are not ours
        if self._metrics is not None:
            self._metrics.ship(self._append_documents)

    def _append_documents(self, items: List[Item]) -> None:
        append = self._append or self._start()
        pipeline = self._pipeline
        if pipeline is not None and append == pipeline.buffer.append:
            pipeline.buffer.append_due(items)
        else:  # uWSGI's master ships each at once; without a pipeline, each is counted as dropped
            for item in items:
                append(item)

    def _default_deadline(self, pipeline: Pipeline) -> float:
        """``shutdown_timeout`` from now, unless the exit hook's flush waited that long in vain.

        If nothing was acknowledged since (see ``flush``), its deadline stands.
        """
        stalled = self._stalled
        if stalled is not None and stalled[0] == pipeline.buffer.settled:
            return stalled[1]
        return time.monotonic() + self.settings.shutdown_timeout

    def _start(self) -> Callable[[Item], None]:
        """Make and start this process's pipeline on the first record; what takes the record.

        Without a pipeline (closed, or no thread could start), that counts the record as dropped.
        """
        with self._start_lock:
            if self._closed:
                return self._refuse(Drop.CLOSED)
            if self._pipeline is None:
                if time.monotonic() < self._threads_retry_at:
                    return self._refuse(Drop.NO_THREADS)
                self._prepare_client()  # on this thread, before any shipping thread of this process exists
                stats = Stats()
                transport = CloudWatchTransport(self._clients, self.settings, self.retry_policy, stats, self._reporter)
                pipeline = Pipeline(self.settings, transport, self._reporter, stats)
                pipeline.tick = self._metrics.tick if self._metrics is not None else None
                try:
                    pipeline.start()
                except RuntimeError as exc:  # "can't start new thread": a container's pids limit, or exit
                    self._threads_retry_at = time.monotonic() + THREAD_RETRY
                    self._reporter.problem(
                        "threads", f"cannot start the handler's threads ({exc}): records are dropped and counted "
                        f"as 'no_threads'; tried again every {THREAD_RETRY:g} s")
                    return self._refuse(Drop.NO_THREADS)
                self._pipeline = pipeline
                self._append = self._ship_now if lifecycle.ships_at_once() else pipeline.buffer.append
                lifecycle.check_threads_can_run(self._reporter)
            return self._append  # type: ignore[return-value]  # set while _pipeline is, unless closed

    def _ship_now(self, item: Item) -> None:
        """Append, deliver at once and stop: for uWSGI's master (see ``lifecycle.ships_at_once``).

        No thread of ours outlives the call (joined threads hold nothing), and
        nothing waits for an exit hook that never runs.  Slow, but a master logs little.
        """
        with self._start_lock:
            pipeline, self._pipeline, self._append = self._pipeline, None, None
        if pipeline is None:  # another thread is shipping it: start again
            self._start()(item)
            return
        pipeline.buffer.append(item)
        pipeline.shutdown(time.monotonic() + self.settings.shutdown_timeout)
        self._retired = combined(pipeline.stats_snapshot(), self._retired)

    def _refuse(self, reason: str) -> Callable[[Item], None]:
        def count(_item: Item) -> None:
            with self._count_lock:
                self._refused[reason] = self._refused.get(reason, 0) + 1
        return count

    def _prepare_client(self) -> None:
        """Make this process's client on the calling thread (see ``client.ProcessClient``)."""
        try:
            self._clients.get()
        except Exception:
            pass  # reported, and retried, by the first send

    def _make_client(self) -> Any:
        if self._client is not None:
            return self._client
        return make_client(self._session, self._region_name, self._endpoint_url, self.settings.max_concurrency)

    def _fork_gate(self) -> Optional[ForkGate]:
        """The gate that keeps this process's shipping threads out of OpenSSL around a fork (not a parent's)."""
        return self._clients.fork_gate if self._pid == _getpid() else None

    def _current_pipeline(self) -> Optional[Pipeline]:
        if self._pid != _getpid():
            self._adopt_process()
        return self._pipeline

    def _adopt_process(self) -> None:
        """In a forked child: forget the parent's pipeline; the child's first record starts its own.

        Runs from the fork hook, or from the child's first emit, flush or close
        when the fork ran no Python hook (uWSGI): then the parent's locks may
        have been copied held, so nothing of the parent's pipeline is touched.
        """
        with lifecycle.adopting():
            pid = _getpid()
            if self._pid == pid:
                return
            self._pipeline = None
            self._append = None
            self._start_lock = threading.Lock()
            self._reporter = Reporter(self.log_group)  # its lock may have been held by a parent thread
            self._count_lock = threading.Lock()
            self._refused = {}
            self._format_errors = 0
            self._threads_retry_at = 0.0
            self._stalled = None
            self._retired = no_stats()
            self._router.reset(new_uuid())
            if self._metrics is not None:
                self._metrics.reset(self._router.uuid, self._reporter)
            self._clients = self._clients.for_child()
            self._pid = pid  # last: a thread that sees it has nothing of the parent's left to use

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.log_group!r} {self.log_stream!r} ({logging.getLevelName(self.level)})>"


def _unformattable(record: logging.LogRecord, exc: Exception) -> str:
    """What to ship when a record cannot be formatted: enough to find the call site."""
    where = f"{record.name} {record.pathname}:{record.lineno}"
    try:
        return (f"[unformattable log record] {where} msg={record.msg!r} args={record.args!r}: "
                f"{type(exc).__name__}: {exc}")
    except Exception:
        return f"[unformattable log record] {where}: {type(exc).__name__}"
