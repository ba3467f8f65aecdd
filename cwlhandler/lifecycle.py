"""How handlers live through the ways a process forks and ends.

Every live handler is registered here.  The hooks below make each way out of a process deliver first:

- **normal exit**: ``threading``'s exit hook flushes while threads still run (also in ``multiprocessing``
  children, whose bootstrap runs it before ``os._exit``); ``logging.shutdown`` then closes.
- **SIGTERM** (``docker stop``, Kubernetes, systemd, ``Pool.terminate``): Python's default action runs no exit
  hook at all, so while nobody else handles SIGTERM, the handler installs :func:`_deliver_then_die`.
- **os._exit** without exit hooks (Celery's prefork children): Celery's ``worker_process_shutdown`` signal.
- **a frozen environment** (AWS Lambda between invocations): :func:`flush_on_return`.
- **fork**: ``os.register_at_fork`` and, for forks that run no Python hooks (uWSGI), a pid check on emit,
  give a child its own pipeline on its first record.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar, overload

from ._compat import register_before_threads_exit

if TYPE_CHECKING:
    from .handler import CloudWatchLogsHandler

F = TypeVar("F", bound=Callable[..., Any])

_HANDLERS: "weakref.WeakSet[CloudWatchLogsHandler]" = weakref.WeakSet()
# Held while a handler takes over in a forked child, so two threads of the child cannot both start a pipeline.
_adopting = threading.Lock()

# The request id of the Lambda invocation running in this context, while flush_on_return runs it (JsonFormatter's
# requestId).  A context variable, not a global: a record logged elsewhere meanwhile must not carry it.
lambda_request_id: "ContextVar[Optional[str]]" = ContextVar("cwlhandler_lambda_request_id", default=None)

# What a Lambda function keeps for itself after the flush: time to return its result.
LAMBDA_MARGIN = 0.5
# The longest a fork waits for the shipping threads' calls under way (see client.ForkGate).
FORK_WAIT = 1.0


def register(handler: "CloudWatchLogsHandler") -> None:
    """Track a new handler; install the exit paths it needs in this process."""
    _HANDLERS.add(handler)
    if handler.settings.handle_sigterm:
        install_sigterm_handler()
    connect_celery()


def unregister(handler: "CloudWatchLogsHandler") -> None:
    _HANDLERS.discard(handler)


def live_handlers() -> List["CloudWatchLogsHandler"]:
    return list(_HANDLERS)


def adopting() -> Any:
    """The lock a handler holds while it takes over in a forked child."""
    return _adopting


def flush_all(timeout: Optional[float] = None) -> bool:
    """Flush every live cwlhandler handler of this process; False if any did not finish in time.

    Each handler waits at most ``timeout`` seconds from this call (default: its
    ``shutdown_timeout``); so do the deliveries of handlers ``dictConfig`` closed.
    """
    start = time.monotonic()
    settled = True
    for handler in live_handlers():
        limit = handler.settings.shutdown_timeout if timeout is None else timeout
        settled = handler.flush(max(0.0, start + limit - time.monotonic())) and settled
    return _join_closing(None if timeout is None else start + timeout) and settled


# Deliveries of closed handlers finishing in the background (see finish_in_background): thread -> deadline.
_CLOSING: Dict[threading.Thread, float] = {}
_closing_lock = threading.Lock()


def finish_in_background(pipeline: Any, deadline: float) -> None:
    """Shut ``pipeline`` down by ``deadline`` on a thread of its own: for a close that must not wait.

    ``flush_all`` and the exit hook wait for it, so its records are delivered
    before the process ends as with any close.
    """
    def run() -> None:
        try:
            pipeline.shutdown(deadline)
        finally:
            with _closing_lock:
                _CLOSING.pop(thread, None)

    thread = threading.Thread(target=run, name="cwlhandler-close", daemon=True)
    with _closing_lock:
        _CLOSING[thread] = deadline
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: wait here, bounded all the same
        with _closing_lock:
            _CLOSING.pop(thread, None)
        pipeline.shutdown(deadline)


def _join_closing(deadline: Optional[float]) -> bool:
    """Wait for the background deliveries, each until its own deadline (or ``deadline``); all done?"""
    with _closing_lock:
        closing = list(_CLOSING.items())
    for thread, own in closing:
        # A shutdown ends by its deadline plus a moment for answers on the wire (pipeline.ANSWER_GRACE).
        until = own + 1.0 if deadline is None else min(deadline, own + 1.0)
        thread.join(max(0.0, until - time.monotonic()))
    return not any(thread.is_alive() for thread, _ in closing)


@overload
def flush_on_return(function: F) -> F: ...
@overload
def flush_on_return(function: None = None, *, timeout: float = 2.0) -> Callable[[F], F]: ...
def flush_on_return(function: Optional[F] = None, *, timeout: float = 2.0) -> Any:
    """Decorate an AWS Lambda function so every record it logged is delivered before it returns or raises.

    Lambda freezes the environment as soon as the function returns: the handler's threads do not run again
    until the next invocation, if there is one.  The flush waits at most ``timeout`` seconds, and never past
    the invocation's remaining time (``context.get_remaining_time_in_millis()``) less half a second.
    While the function runs, :class:`~cwlhandler.JsonFormatter` adds ``context.aws_request_id`` as ``requestId``.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
            request_id = getattr(context, "aws_request_id", None)
            token = lambda_request_id.set(request_id if isinstance(request_id, str) else None)
            try:
                return fn(event, context, *args, **kwargs)
            finally:
                lambda_request_id.reset(token)
                flush_all(_lambda_budget(context, timeout))

        return wrapper  # type: ignore[return-value]

    return decorate(function) if function is not None else decorate


def _lambda_budget(context: Any, timeout: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    try:
        left = remaining() / 1000 - LAMBDA_MARGIN if callable(remaining) else timeout
    except Exception:  # a test's stand-in context, or a runtime without it
        left = timeout
    return max(0.0, min(timeout, left))


# -- SIGTERM ------------------------------------------------------------------------------------------------------
def install_sigterm_handler() -> bool:
    """Install :func:`_deliver_then_die` if SIGTERM has its default action; only the main thread may.

    A handler someone installed before us is left alone (their exit path runs ours); servers that install
    their own later and re-raise after restoring ours (uvicorn) reach ours at the end.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False
        signal.signal(signal.SIGTERM, _deliver_then_die)
    except (ValueError, OSError, AttributeError):  # a sub-interpreter, or no SIGTERM on this platform
        return False
    return True


def _deliver_then_die(signum: int, frame: Any) -> None:
    """Deliver what every handler holds (each within its ``shutdown_timeout``), then die of the signal.

    The default action is restored and the signal raised again, so the exit status stays "killed by
    SIGTERM" (143), as orchestrators expect.
    """
    try:
        flush_all()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


# -- os._exit without exit hooks ----------------------------------------------------------------------------------
def connect_celery() -> None:
    """Flush in Celery's prefork children, which end through ``os._exit`` and run no exit hook.

    Celery is never imported here: only an application that already did gets the connection.
    """
    if "celery" not in sys.modules:
        return
    try:
        from celery.signals import worker_process_shutdown
    except Exception:  # a partial or unrelated "celery" module
        return
    worker_process_shutdown.connect(_flush_before_os_exit, weak=False, dispatch_uid="cwlhandler")


def _flush_before_os_exit(*_: Any, **__: Any) -> None:
    flush_all()


# -- uWSGI --------------------------------------------------------------------------------------------------------
def _uwsgi_flag(options: Any, name: str) -> bool:
    value = options.get(name)
    if isinstance(value, list):  # an option given several times
        value = value[-1]
    if isinstance(value, bytes):
        return value.strip().lower() not in (b"", b"0", b"false", b"no", b"off")
    return bool(value)


def ships_at_once() -> bool:
    """Is this uWSGI's master, with the application loaded in it?

    It forks workers without Python's fork hooks (nothing resets the
    interpreter in the worker: a thread of ours that held the GIL at the fork
    leaves the worker waiting for it forever), and it runs no Python exit hook
    when it stops.  So no thread of ours may run there, and each record is
    delivered at once.
    """
    uwsgi = sys.modules.get("uwsgi")
    try:
        return uwsgi.worker_id() == 0 and _uwsgi_flag(uwsgi.opt, "master")  # type: ignore[union-attr]
    except Exception:  # not uWSGI, or a uWSGI without these
        return False


def check_threads_can_run(reporter: Any) -> None:
    """Say so once when uWSGI runs Python without threads: ours would run only while a request does."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is not None and getattr(uwsgi, "has_threads", 1) == 0:
        reporter.problem(
            "threads", "uWSGI runs Python without threads, so the handler's threads run only while a request is "
            "served and records wait in between: add --enable-threads (enable-threads = true)")


# -- normal exit and fork -----------------------------------------------------------------------------------------
def _flush_all_before_exit() -> None:
    """Runs when the main thread finishes, while threads still run (and in multiprocessing children)."""
    for handler in live_handlers():
        handler._flush_before_exit()
    _join_closing(None)


def _fork_gates() -> List[Any]:
    return [gate for gate in (handler._fork_gate() for handler in live_handlers()) if gate is not None]


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT
    for gate in _fork_gates():
        gate.close(deadline)


def _after_fork_in_parent() -> None:
    for gate in _fork_gates():
        gate.reopen()


def _after_fork_in_child() -> None:
    global _adopting, _closing_lock
    _adopting = threading.Lock()  # a parent thread may have held it at the fork
    _closing_lock = threading.Lock()
    _CLOSING.clear()  # the parent's threads: none of them runs here
    for handler in live_handlers():
        handler._adopt_process()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
register_before_threads_exit(_flush_all_before_exit)  # logging.shutdown still covers its absence
