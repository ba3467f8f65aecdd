"""``cwlhandler tail --group G [--stream S] [--since 10m] [--follow]``: print events, oldest first."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .aws import error_code, iso_utc, make_client, make_session, read_stream
from .parser import EXIT_OK, CliError

# tail --follow: how far before the newest event each poll looks again (events
# of parallel senders can arrive slightly out of order); already printed events
# are recognised by their eventId and not printed twice.
FOLLOW_LOOKBACK_MS = 5_000
FOLLOW_INTERVAL = 1.0


def run(args: argparse.Namespace) -> int:
    session = make_session(args)
    client = make_client(session, args.endpoint_url)
    start_ms = int(time.time() * 1000) - args.since
    restore = _install_tail_signals()
    try:
        if args.stream:
            return _tail_stream(client, args, start_ms)
        return _tail_group(client, args, start_ms)
    finally:
        restore()


def _install_tail_signals() -> Callable[[], object]:
    """SIGTERM stops like Ctrl-C (KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return lambda: None

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _print_events(lines: List[str]) -> None:
    if lines:
        sys.stdout.write("".join(lines))
    sys.stdout.flush()


def _line(event: Dict[str, Any], stream: Optional[str]) -> str:
    message = event.get("message", "")
    if message.endswith("\n"):
        message = message[:-1]
    if stream is None:
        return f"{iso_utc(event['timestamp'])}  {message}\n"
    return f"{iso_utc(event['timestamp'])}  {stream}  {message}\n"


def _tail_stream(client: Any, args: argparse.Namespace, start_ms: int) -> int:
    from botocore.exceptions import ClientError

    try:
        events, token = read_stream(client, args.group, args.stream, start_ms)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        try:  # which one is missing?
            client.describe_log_streams(logGroupName=args.group, limit=1)
        except ClientError as inner:
            if error_code(inner) == "ResourceNotFoundException":
                raise CliError(f"log group {args.group!r} does not exist") from None
        raise CliError(f"log stream {args.stream!r} does not exist in log group {args.group!r}") from None
    if args.limit:
        events = events[-args.limit:]
    _print_events([_line(e, None) for e in events])
    if not args.follow:
        return EXIT_OK
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            events, token = read_stream(client, args.group, args.stream, start_ms, token)
            _print_events([_line(e, None) for e in events])
    except KeyboardInterrupt:
        return EXIT_OK


def _filter_group(client: Any, group: str, start_ms: int) -> List[Dict[str, Any]]:
    """Every event of the group since ``start_ms`` by FilterLogEvents paging, oldest first."""
    events: List[Dict[str, Any]] = []
    token = None
    while True:
        kwargs: Dict[str, Any] = dict(logGroupName=group, startTime=start_ms, interleaved=True)
        if token:
            kwargs["nextToken"] = token
        page = client.filter_log_events(**kwargs)
        events += page.get("events", [])
        token = page.get("nextToken")
        if not token:
            break
    events.sort(key=lambda e: e["timestamp"])  # stable: the service's order within a millisecond stays
    return events


def _tail_group(client: Any, args: argparse.Namespace, start_ms: int) -> int:
    from botocore.exceptions import ClientError

    try:
        several = len(client.describe_log_streams(logGroupName=args.group, limit=2).get("logStreams", [])) > 1
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise CliError(f"log group {args.group!r} does not exist") from None
        if error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
            raise
        several = True  # cannot tell: show stream names
    events = _filter_group(client, args.group, start_ms)
    streams = {e.get("logStreamName") for e in events}
    several = several or len(streams) > 1
    seen: Dict[Tuple[str, str], int] = {}  # (stream, eventId) -> timestamp, for --follow
    newest = None
    for e in events:
        seen[(e.get("logStreamName", ""), e.get("eventId", ""))] = e["timestamp"]
        newest = e["timestamp"] if newest is None else max(newest, e["timestamp"])
    shown = events[-args.limit:] if args.limit else events
    _print_events([_line(e, e.get("logStreamName", "") if several else None) for e in shown])
    if not args.follow:
        return EXIT_OK
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            since = start_ms if newest is None else max(start_ms, newest - FOLLOW_LOOKBACK_MS)
            fresh = []
            for e in _filter_group(client, args.group, since):
                key = (e.get("logStreamName", ""), e.get("eventId", ""))
                if key in seen:
                    continue
                seen[key] = e["timestamp"]
                fresh.append(e)
                streams.add(e.get("logStreamName"))
                newest = e["timestamp"] if newest is None else max(newest, e["timestamp"])
            several = several or len(streams) > 1
            _print_events([_line(e, e.get("logStreamName", "") if several else None) for e in fresh])
            if newest is not None:  # forget what the next poll cannot return again
                floor = newest - FOLLOW_LOOKBACK_MS
                for key in [k for k, ts in seen.items() if ts < floor]:
                    del seen[key]
    except KeyboardInterrupt:
        return EXIT_OK
