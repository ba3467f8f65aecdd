"""``cwlhandler ship --group G --stream S [FILE...]``: ship lines from stdin or files, one event per line.

Like ``tee`` into CloudWatch Logs: end of input, SIGINT or SIGTERM end the run, and
what was read is delivered within ``--shutdown-timeout``.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

from .aws import ensure_destination, make_client, make_session, template_literal
from .parser import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PROG, CliError, silence_stdout


class _ShipState:
    def __init__(self) -> None:
        self.stopping = False
        self.signal_name = ""
        self.in_emit = False
        self.closer: Optional[threading.Thread] = None


def run(args: argparse.Namespace) -> int:
    paths = args.files or ["-"]
    for path in paths:
        if path != "-" and (not os.path.exists(path) or os.path.isdir(path) or not os.access(path, os.R_OK)):
            reason = "no such file" if not os.path.exists(path) else (
                "is a directory" if os.path.isdir(path) else "not readable")
            raise CliError(f"{path}: {reason}", EXIT_USAGE)
    from ..handler import CloudWatchLogsHandler

    session = make_session(args)
    client = make_client(session, args.endpoint_url)  # NoRegionError, bad endpoint URL
    try:
        handler = CloudWatchLogsHandler(
            log_group=template_literal(args.group),
            log_stream=template_literal(args.stream),
            boto3_session=session,
            region_name=args.region,
            endpoint_url=args.endpoint_url,
            create_log_group=not args.no_create,
            create_log_stream=not args.no_create,
            flush_interval=max(args.flush_interval, 0.001),
            shutdown_timeout=args.shutdown_timeout,
            on_full=args.on_full,
            oversize=args.oversize,
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        ensure_destination(client, args.group, args.stream, create=not args.no_create)
    except BaseException:
        handler.close()
        raise
    logger = logging.getLogger("cwlhandler.cli.ship")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    state = _ShipState()
    restore = _install_ship_signals(state, handler)
    read_error = ""
    try:
        out = sys.stdout.buffer if args.tee else None
        for path in paths:
            if state.stopping:
                break
            try:
                if path == "-":
                    if sys.stdin is None:
                        raise OSError("stdin is closed")
                    out = _ship_fd(sys.stdin.fileno(), logger, state, out, restore.wake_fd)
                else:
                    with open(path, "rb") as f:
                        out = _ship_fd(f.fileno(), logger, state, out, restore.wake_fd)
            except OSError as exc:
                read_error = f"{path}: {exc.strerror or exc}"
                break
    except KeyboardInterrupt:  # only where no signal handler was installed
        state.signal_name = "SIGINT"
    finally:
        state.stopping = True  # a signal from now on changes nothing: close() is bounded anyway
        if state.closer is not None:
            state.closer.join()
        handler.close()  # (idempotent, if the closer already did)
        logger.removeHandler(handler)
        restore()
    stats = handler.stats()
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(stats["dropped_by_reason"].items()))
    summary = f"shipped {stats['sent']} lines, dropped {stats['dropped']}" + (f" ({reasons})" if reasons else "")
    if state.signal_name:
        summary += f"; stopped by {state.signal_name}"
    sys.stderr.write(f"{PROG} ship: {summary}\n")
    if read_error:
        sys.stderr.write(f"{PROG} ship: error: {read_error}\n")
    sys.stderr.flush()
    return EXIT_OK if stats["dropped"] == 0 and not read_error else EXIT_FAILURE


class _Restore:
    """Puts the signal dispositions back; ``wake_fd`` is readable once a signal arrived (or None)."""

    def __init__(self) -> None:
        self.wake_fd: Optional[int] = None
        self.actions: List[Callable[[], object]] = []

    def __call__(self) -> None:
        while self.actions:
            try:
                self.actions.pop()()
            except Exception:
                pass


def _install_ship_signals(state: _ShipState, handler: Any) -> _Restore:
    """SIGINT/SIGTERM end the input like EOF does.

    The Python-level handler never raises (a read or an emit is never cut in
    half); ``set_wakeup_fd`` wakes the ``select`` the reader waits in.  If the
    main thread is inside ``emit`` (waiting for room with ``on_full=block``
    while the endpoint is down), the handler is closed from another thread,
    which releases that wait.
    """
    restore = _Restore()
    if threading.current_thread() is not threading.main_thread() or os.name != "posix":
        return restore  # elsewhere Ctrl-C raises KeyboardInterrupt, which run() treats as the end of input

    def on_signal(signum: int, frame: Any) -> None:
        if state.stopping:
            return
        state.stopping = True
        state.signal_name = signal.Signals(signum).name
        if state.in_emit and state.closer is None:
            state.closer = threading.Thread(target=close_if_stuck, name="cwlhandler-cli-close", daemon=True)
            state.closer.start()

    def close_if_stuck() -> None:
        # An emit that is merely running finishes at once (the main thread then closes);
        # one still running after a moment waits for buffer room (on_full=block, endpoint
        # down): closing releases it.
        deadline = time.monotonic() + 1.0
        while state.in_emit and time.monotonic() < deadline:
            time.sleep(0.01)
        if state.in_emit:
            handler.close()

    for signum in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if signum is None:
            continue
        previous = signal.signal(signum, on_signal)
        restore.actions.append(functools.partial(signal.signal, signum, previous))
    if os.name == "posix":
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        restore.wake_fd = read_fd

        def close_wakeup() -> None:
            signal.set_wakeup_fd(previous_fd)
            os.close(read_fd)
            os.close(write_fd)

        restore.actions.insert(0, close_wakeup)
    return restore


def _chunks(fd: int, state: _ShipState, wake_fd: Optional[int]) -> Iterator[bytes]:
    """Bytes from ``fd`` as they arrive, until EOF or a stop signal."""
    if wake_fd is None:  # no select() on pipes (Windows): plain blocking reads
        while not state.stopping:
            data = os.read(fd, 65536)
            if not data:
                return
            yield data
        return
    import select

    while not state.stopping:
        ready, _, _ = select.select([fd, wake_fd], [], [])
        if wake_fd in ready:
            try:
                while os.read(wake_fd, 512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            if state.stopping:
                return
        if fd in ready:
            data = os.read(fd, 65536)
            if not data:
                return
            yield data


def _ship_fd(fd: int, logger: logging.Logger, state: _ShipState, out: Any, wake_fd: Optional[int]) -> Any:
    """Ship every line read from ``fd``; returns the tee output (None once it is gone)."""
    pending: List[bytes] = []  # the start of a line whose end has not arrived yet
    for data in _chunks(fd, state, wake_fd):
        lines = data.split(b"\n")
        if len(lines) == 1:
            pending.append(data)
            continue
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
        last = lines.pop()  # an incomplete last line waits for more
        pending = [last] if last else []
        for line in lines:
            out = _ship_line(line, b"\n", logger, state, out)
        out = _tee_flush(out)
    if pending:  # a last line without a line ending
        out = _ship_line(b"".join(pending), b"", logger, state, out)
        out = _tee_flush(out)
    return out


def _ship_line(line: bytes, ending: bytes, logger: logging.Logger, state: _ShipState, out: Any) -> Any:
    """Hand one line to the handler, then echo it (so what was echoed was handed over)."""
    text = (line[:-1] if line.endswith(b"\r") else line).decode("utf-8", "replace")
    state.in_emit = True
    try:
        logger.info(text)
    finally:
        state.in_emit = False
    if out is not None:
        try:
            out.write(line + ending)
        except BrokenPipeError:  # whoever read our copy is gone; keep shipping
            silence_stdout()
            out = None
    return out


def _tee_flush(out: Any) -> Any:
    if out is not None:
        try:
            out.flush()
        except BrokenPipeError:
            silence_stdout()
            return None
    return out


