"""The ``cwlhandler`` command line (also ``python -m cwlhandler``).

* ``cwlhandler demo``: log a realistic workload through ``dictConfig``, the
  handler and ``JsonFormatter`` into an embedded emulator (or ``--endpoint-url``),
  read it back and print what arrived.
* ``cwlhandler ship --group G --stream S [FILE...]``: ship lines from stdin or
  files, one event per line, like ``tee`` into CloudWatch Logs.
* ``cwlhandler tail --group G [--stream S] [--since 10m] [--follow]``: print events.

Errors are reported as one line on stderr with a non-zero exit status, never a
traceback: 1 for failures (credentials, region, endpoint, missing group, drops),
2 for bad arguments or settings.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .config import ON_FULL, OVERSIZE
from .planner import API_MAX_BATCH_BYTES as BATCH_BYTES_LIMIT
from .planner import API_MAX_BATCH_COUNT as BATCH_COUNT_LIMIT
from .planner import EVENT_OVERHEAD

PROG = "cwlhandler"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_SINCE = re.compile(r"\s*(\d+)\s*([smhd])\s*\Z", re.IGNORECASE)
_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# tail --follow: how far before the newest event each poll looks again (events
# of parallel senders can arrive slightly out of order); already printed events
# are recognised by their eventId and not printed twice.
FOLLOW_LOOKBACK_MS = 5_000
FOLLOW_INTERVAL = 1.0


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- arguments ----------------------------------------------------------------------------------------------------
def _since(text: str) -> int:
    """``30s``, ``10m``, ``2h``, ``1d`` -> milliseconds."""
    match = _SINCE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s, 10m, 2h or 1d, got {text!r}")
    return int(match.group(1)) * _SINCE_UNITS[match.group(2).lower()] * 1000


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    aws = argparse.ArgumentParser(add_help=False)
    group = aws.add_argument_group("AWS connection")
    group.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION or the profile's region)")
    group.add_argument("--endpoint-url", metavar="URL",
                       help="CloudWatch Logs endpoint, e.g. an emulator at http://127.0.0.1:5000")
    group.add_argument("--profile", help="named profile from the AWS config files (default: AWS_PROFILE)")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ship Python logging (and lines of text) to AWS CloudWatch Logs.",
        epilog="Run '%(prog)s COMMAND --help' for a command's options.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", parents=[aws], help="log a realistic workload into an embedded emulator and show what arrived",
        description="Start an embedded CloudWatch Logs emulator on 127.0.0.1 (moto's server; unless "
        "--endpoint-url is given), configure logging with dictConfig (CloudWatchLogsHandler + JsonFormatter), "
        "log an imaginary web service's records from several threads, close the handler, read the events back "
        "and print a summary. Exits 0 only if every record not counted as dropped was delivered.",
    )
    demo.add_argument("--records", type=_positive_int, default=50_000, help="records to log (default: 50000)")
    demo.add_argument("--threads", type=_positive_int, default=4, help="logging threads (default: 4)")
    demo.add_argument("--group", default="cwlhandler-demo", help="log group (default: cwlhandler-demo)")
    demo.add_argument("--stream", help="log stream (default: a new one per run, demo-<UTC time>-<pid>)")
    demo.add_argument("--shutdown-timeout", type=_seconds, default=30.0,
                      help="seconds close() may take to deliver what is buffered (default: 30)")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the workload (default: 1)")
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="progress bar on stderr (default: only when stderr is a terminal)")
    demo.set_defaults(run=cmd_demo)

    ship = commands.add_parser(
        "ship", parents=[aws], help="ship lines from stdin or files, one event per line (like tee)",
        description="Read lines from stdin (or the FILEs, '-' meaning stdin) and ship each line, without its "
        "line ending, as one event to the log stream. Empty lines are shipped too (as a placeholder text, the "
        "service refuses empty messages); bytes that are not UTF-8 become U+FFFD. On end of input, SIGINT or "
        "SIGTERM, what was read is delivered within --shutdown-timeout, and a summary line goes to stderr. "
        "Exit status: 0 if nothing was dropped, 1 otherwise or on errors, 2 for bad arguments.",
    )
    ship.add_argument("files", nargs="*", metavar="FILE", help="files to read instead of stdin ('-' is stdin)")
    ship.add_argument("--group", required=True, help="log group (created if missing, unless --no-create)")
    ship.add_argument("--stream", required=True, help="log stream (created if missing, unless --no-create)")
    ship.add_argument("--tee", action="store_true", help="also copy the input to stdout as it is read")
    ship.add_argument("--no-create", action="store_true",
                      help="do not create the group or stream: fail if they do not exist")
    ship.add_argument("--shutdown-timeout", type=_seconds, default=10.0,
                      help="seconds to deliver what was read at the end (default: 10)")
    ship.add_argument("--flush-interval", type=_seconds, default=1.0,
                      help="seconds a line may wait before it is sent (default: 1)")
    ship.add_argument("--on-full", choices=ON_FULL, default="block",
                      help="when the buffer is full: wait for room (default) or drop lines")
    ship.add_argument("--oversize", choices=OVERSIZE, default="truncate",
                      help="lines longer than an event may be (1 MiB): truncate (default), split or drop")
    ship.set_defaults(run=cmd_ship)

    tail = commands.add_parser(
        "tail", parents=[aws], help="print a log group's or stream's events, oldest first",
        description="Print the events of a log group (all streams, with FilterLogEvents) or of one stream "
        "(GetLogEvents) since a time, oldest first, one 'TIMESTAMP  [STREAM  ]MESSAGE' line each (the stream "
        "name is shown when the group has several streams and no --stream is given). With --follow, poll for "
        "new events every second until interrupted (Ctrl-C exits 0).",
    )
    tail.add_argument("--group", required=True, help="log group")
    tail.add_argument("--stream", help="only this log stream")
    tail.add_argument("--since", type=_since, default=_since("10m"), metavar="DURATION",
                      help="start this long ago: 30s, 10m, 2h, 1d (default: 10m)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C stops)")
    tail.add_argument("--limit", "-n", type=_positive_int, metavar="N",
                      help="print only the last N events of the period (with --follow: then every new one)")
    tail.set_defaults(run=cmd_tail)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except Exception:
                pass
    # No "No handlers could be found"/lastResort output from libraries: errors are ours to report.
    logging.getLogger().addHandler(logging.NullHandler())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        return _fail(args.command, exc.message, exc.status)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILURE
    except Exception as exc:  # one line, never a traceback
        message, status = explain(exc, getattr(args, "group", None), getattr(args, "stream", None))
        return _fail(args.command, message, status)


def _fail(command: str, message: str, status: int) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message held
    try:
        sys.stderr.write(f"{PROG} {command}: error: {line}\n")
        sys.stderr.flush()
    except Exception:
        pass
    return status


def _silence_stdout() -> None:
    """After a broken pipe: no second error when the interpreter flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except Exception:
        pass


# -- AWS ----------------------------------------------------------------------------------------------------------
def explain(exc: BaseException, group: Optional[str] = None, stream: Optional[str] = None) -> Tuple[str, int]:
    """One line (never credentials) and an exit status for an exception from boto3/botocore."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ("no usable AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or use a profile (--profile or AWS_PROFILE)"), EXIT_FAILURE
    if isinstance(exc, bx.ProfileNotFound):
        return f"AWS profile {exc.kwargs.get('profile', '?')!r} not found in the AWS config files", EXIT_FAILURE
    if isinstance(exc, bx.NoRegionError):
        return "no AWS region given: pass --region or set AWS_DEFAULT_REGION (or a profile's region)", EXIT_FAILURE
    if isinstance(exc, bx.EndpointConnectionError):
        return f"cannot connect to the endpoint {exc.kwargs.get('endpoint_url', '')}", EXIT_FAILURE
    if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"timed out talking to {exc.kwargs.get('endpoint_url', 'the endpoint')}", EXIT_FAILURE
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "") or ""
        operation = getattr(exc, "operation_name", "") or "the request"
        if code == "ResourceNotFoundException":
            if stream and operation in ("GetLogEvents", "CreateLogStream", "PutLogEvents"):
                return f"log stream {stream!r} or its log group {group!r} does not exist", EXIT_FAILURE
            return f"log group {group!r} does not exist", EXIT_FAILURE
        return f"{operation} failed: {code}: {message}".rstrip(": "), EXIT_FAILURE
    if isinstance(exc, bx.BotoCoreError):
        return f"{type(exc).__name__}: {exc}", EXIT_FAILURE
    return f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILURE


def make_session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.session.Session(profile_name=args.profile, region_name=args.region)


def make_client(session: Any, endpoint_url: Optional[str]) -> Any:
    """A client for the CLI's own calls: few, quick retries so a dead endpoint fails in seconds."""
    import botocore.config

    config = botocore.config.Config(
        retries={"total_max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="cwlhandler-cli",
    )
    try:
        return session.client("logs", endpoint_url=endpoint_url, config=config)
    except ValueError as exc:  # "Invalid endpoint: ..."
        raise CliError(f"--endpoint-url: {exc}", EXIT_USAGE) from None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def ensure_destination(client: Any, group: str, stream: str, create: bool) -> None:
    """Check credentials, endpoint and names with one call; create the group and stream if allowed.

    Without permission to create streams (``AccessDenied``) the stream may still
    exist: the handler is left to try, and reports on stderr if it cannot.
    """
    from botocore.exceptions import ClientError

    if not create:
        try:
            found = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream, limit=1)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise CliError(f"log group {group!r} does not exist") from None
            raise
        if not any(s.get("logStreamName") == stream for s in found.get("logStreams", [])):
            raise CliError(f"log stream {stream!r} does not exist in log group {group!r}")
        return
    for attempt in range(2):
        try:
            client.create_log_stream(logGroupName=group, logStreamName=stream)
            return
        except ClientError as exc:
            code = _code(exc)
            if code == "ResourceAlreadyExistsException":
                return
            if code in ("AccessDeniedException", "AccessDenied"):
                return
            if code != "ResourceNotFoundException" or attempt:
                raise
        try:
            client.create_log_group(logGroupName=group)
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise


def _template_literal(name: str) -> str:
    """The handler reads names as templates (``{hostname}``...): the CLI's names are literal."""
    return name.replace("{", "{{").replace("}", "}}")


def iso_utc(ms: int) -> str:
    when = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=int(ms))
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def read_stream(client: Any, group: str, stream: str, start_ms: Optional[int] = None,
                token: Optional[str] = None) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """Events of one stream, oldest first, by GetLogEvents paging; and the token to continue from.

    The end is reached when ``nextForwardToken`` equals the token passed in.
    """
    events: List[Dict[str, Any]] = []
    while True:
        kwargs: Dict[str, Any] = dict(logGroupName=group, logStreamName=stream, startFromHead=True)
        if start_ms is not None:
            kwargs["startTime"] = start_ms
        if token:
            kwargs["nextToken"] = token
        page = client.get_log_events(**kwargs)
        events += page.get("events", [])
        following = page.get("nextForwardToken")
        if not following or following == token:
            return events, token
        token = following


# -- demo ---------------------------------------------------------------------------------------------------------
PATHS = [
    ("GET", "/"), ("GET", "/api/products"), ("GET", "/api/products/{id}"), ("GET", "/api/search"),
    ("POST", "/api/cart"), ("GET", "/api/cart"), ("POST", "/api/checkout"), ("GET", "/api/orders/{id}"),
    ("POST", "/api/login"), ("GET", "/static/app.js"),
]
USERS = ["alice", "bob", "chloé", "d.müller", "eve", "山田太郎", "søren", "zoë", "ivan.petrov", "مريم", "guest"]
SEARCHES = ["café crème ☕", "naïve résumé", "Grüße aus Köln", "東京 ラーメン", "pão de queijo", "smørrebrød",
            "running shoes", "ñandú 🐦", "usb-c cable", "crème brûlée 🍮"]


class PaymentDeclined(Exception):
    pass


def _charge(order_id: int, amount: float) -> None:
    raise PaymentDeclined(f"card declined for order {order_id} ({amount:.2f} EUR): insufficient funds")


def _checkout(order_id: int, amount: float) -> None:
    try:
        _charge(order_id, amount)
    except PaymentDeclined as exc:
        raise RuntimeError(f"checkout of order {order_id} failed") from exc


def _workload(index: int, count: int, seed: int, progress: List[int], stop: threading.Event) -> None:
    """An imaginary shop's web workers: one log call per request (every call is one record)."""
    rng = random.Random(seed * 1009 + index)
    http = logging.getLogger("shop.http")
    search = logging.getLogger("shop.search")
    payments = logging.getLogger("shop.payments")
    for i in range(count):
        if stop.is_set():
            return
        method, path = PATHS[rng.randrange(len(PATHS))]
        path = path.replace("{id}", str(rng.randrange(1, 100_000)))
        user = USERS[rng.randrange(len(USERS))]
        latency = round(rng.lognormvariate(3.0, 0.8), 1)
        request_id = f"{index:02d}-{i:07d}"
        roll = rng.random()
        extra = {"path": path, "method": method, "user": user, "latency_ms": latency, "request_id": request_id}
        if roll < 0.004:
            order = rng.randrange(1, 10**6)
            extra.update(status=502, path="/api/checkout", method="POST")
            try:
                _checkout(order, rng.uniform(5, 500))
            except RuntimeError:
                payments.exception("payment failed for %s on order %d", user, order, extra=extra)
        elif roll < 0.03:
            extra["status"] = 429 if roll < 0.015 else 404
            http.warning("%s %s -> %d for %s", method, path, extra["status"], user, extra=extra)
        elif roll < 0.06:
            extra["latency_ms"] = latency = round(latency * 40, 1)
            extra["status"] = 200
            http.warning("slow request: %s %s took %.1f ms", method, path, latency, extra=extra)
        elif roll < 0.16:
            query = SEARCHES[rng.randrange(len(SEARCHES))]
            extra.update(status=200, path="/api/search", method="GET", query=query)
            search.info("search %r by %s: %d results", query, user, rng.randrange(0, 300), extra=extra)
        else:
            extra["status"] = 201 if method == "POST" else 200
            http.info("%s %s -> %d in %.1f ms", method, path, extra["status"], latency, extra=extra)
        progress[index] = i + 1


class PutCounter:
    """Counts PutLogEvents requests (every attempt) and the events/bytes of acknowledged ones.

    Hooks on the session's botocore events, so it sees the handler's own client:
    ``before-send`` reads the request body that goes on the wire (however it was
    built), ``after-call`` on the same thread sees the response.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.calls = self.acknowledged = self.events = self.bytes = self.fullest = 0

    def register(self, session: Any) -> None:
        session.events.register("before-send.cloudwatch-logs.PutLogEvents", self._before_send)
        session.events.register("after-call.cloudwatch-logs.PutLogEvents", self._after_call)

    def _before_send(self, request: Any, **_: Any) -> None:
        count = nbytes = 0
        try:
            body = request.body
            events = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)["logEvents"]
            count = len(events)
            nbytes = sum(len(e["message"].encode("utf-8")) + EVENT_OVERHEAD for e in events)
        except Exception:
            pass
        self.local.batch = (count, nbytes)
        with self.lock:
            self.calls += 1
        return None  # a response here would replace the real one

    def _after_call(self, http_response: Any, **_: Any) -> None:
        count, nbytes = getattr(self.local, "batch", (0, 0))
        self.local.batch = (0, 0)
        if getattr(http_response, "status_code", 0) != 200:
            return
        with self.lock:
            self.acknowledged += 1
            self.events += count
            self.bytes += nbytes
            self.fullest = max(self.fullest, count)


def cmd_demo(args: argparse.Namespace) -> int:
    # The embedded server logs every request on "werkzeug"; it is not part of the demo.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    emulator = None
    endpoint = args.endpoint_url
    if endpoint is None:
        try:
            from .local import LocalEmulator

            emulator = LocalEmulator().start()  # also sets dummy credentials and a region if none are set
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        endpoint = emulator.endpoint_url
    try:
        return _demo(args, endpoint, embedded=emulator is not None)
    finally:
        if emulator is not None:
            emulator.stop()


def _demo(args: argparse.Namespace, endpoint: str, embedded: bool) -> int:
    import logging.config

    from .handler import CloudWatchLogsHandler

    session = make_session(args)
    client = make_client(session, endpoint)
    group = args.group
    stream = args.stream or f"demo-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
    ensure_destination(client, group, stream, create=True)
    counter = PutCounter()
    counter.register(session)  # before the handler makes its client from this session

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "cwlhandler.jsonformat.JsonFormatter", "static": {"service": "demo-shop", "env": "demo"}},
        },
        "handlers": {
            "cloudwatch": {
                "class": "cwlhandler.CloudWatchLogsHandler",
                "formatter": "json",
                "log_group": group,
                "log_stream": _template_literal(stream),
                "boto3_session": session,
                "region_name": args.region,
                "endpoint_url": endpoint,
                "flush_interval": 1.0,
                "shutdown_timeout": args.shutdown_timeout,
            },
        },
        "loggers": {"shop": {"level": "INFO", "handlers": ["cloudwatch"], "propagate": False}},
    }
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = exc.__cause__ or exc.__context__
        raise CliError(f"cannot configure logging: {exc}" + (f": {cause}" if cause else "")) from None
    handler = next(h for h in logging.getLogger("shop").handlers if isinstance(h, CloudWatchLogsHandler))

    total, nthreads = args.records, min(args.threads, args.records)
    shares = [total // nthreads + (1 if i < total % nthreads else 0) for i in range(nthreads)]
    progress = [0] * nthreads
    show = sys.stderr.isatty() if args.progress is None else args.progress
    stop = threading.Event()
    threads = [threading.Thread(target=_workload, args=(i, shares[i], args.seed, progress, stop),
                                name=f"shop-worker-{i}", daemon=True) for i in range(nthreads)]
    started = time.perf_counter()
    bar = _ProgressBar(total, handler, started) if show else None
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
                if bar:
                    bar.draw(sum(progress))
    except KeyboardInterrupt:  # stop logging and close while the emulator still runs: a quick exit
        stop.set()
        for thread in threads:
            thread.join()
        if bar:
            bar.end()
        handler.close()
        raise
    logged = sum(progress)
    if bar:
        bar.draw(logged, "closing")
    handler.close()
    elapsed = time.perf_counter() - started
    if bar:
        bar.draw(logged, "closed")
        bar.end()
    logging.getLogger("shop").removeHandler(handler)

    stats = handler.stats()
    events, _ = read_stream(client, group, stream)
    delivered = len(events)
    dropped = int(stats["dropped"])
    ok = delivered == logged - dropped
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(stats["dropped_by_reason"].items())) or "none"
    out = [
        f"cwlhandler demo: {logged} records from {nthreads} threads to {endpoint}"
        + (" (embedded emulator)" if embedded else ""),
        f"  log group / stream   {group} / {stream}",
        f"  logged               {logged}  (handler counted {stats['emitted']} emitted)",
        f"  delivered            {delivered}  (read back with GetLogEvents)",
        f"  dropped              {dropped}  ({reasons})",
        f"  PutLogEvents calls   {counter.calls}  ({counter.acknowledged} acknowledged; all API calls "
        f"{stats['api_calls']}, retries {stats['retries']})",
    ]
    if counter.acknowledged:
        out.append(
            f"  batch fill           {counter.events / counter.acknowledged:.1f} events and "
            f"{counter.bytes / counter.acknowledged / 1024:.1f} KiB per acknowledged call on average, fullest "
            f"{counter.fullest} events (limits: {BATCH_COUNT_LIMIT} events, {BATCH_BYTES_LIMIT // 1024} KiB)"
        )
    out.append(f"  throughput           {logged / elapsed if elapsed > 0 else 0:.0f} records/s  "
               f"({elapsed:.2f} s from the first record to close() returning)")
    if stats.get("format_errors"):
        out.append(f"  format errors        {stats['format_errors']}")
    samples = _samples([e["message"] for e in events])
    if samples:
        out.append("  sample events:")
        out += [f"    {iso_utc(ts)}  {_shorten(msg, 300)}" for ts, msg in
                ((events[i]["timestamp"], events[i]["message"]) for i in samples)]
    out.append("OK: delivered == logged - dropped" if ok else
               f"FAILED: delivered {delivered} != logged {logged} - dropped {dropped}")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return EXIT_OK if ok else EXIT_FAILURE


def _samples(messages: List[str]) -> List[int]:
    """Indexes of up to 3 telling events: the first, one with a traceback, one with non-ASCII text."""
    chosen: List[int] = []
    tests: List[Callable[[str], bool]] = [
        lambda m: True,
        lambda m: "Traceback" in m,
        lambda m: not m.isascii() or "\\u" in m,
        lambda m: "WARNING" in m,
    ]
    for test in tests:
        index = next((i for i, m in enumerate(messages) if i not in chosen and test(m)), None)
        if index is not None and len(chosen) < 3:
            chosen.append(index)
    return chosen


def _shorten(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


class _ProgressBar:
    def __init__(self, total: int, handler: Any, started: float, width: int = 30) -> None:
        self.total, self.handler, self.started, self.width = total, handler, started, width
        self.length = 0

    def draw(self, done: int, note: str = "") -> None:
        filled = int(self.width * done / self.total) if self.total else self.width
        rate = done / max(1e-9, time.perf_counter() - self.started)
        try:
            sent = self.handler.stats()["sent"]
        except Exception:
            sent = 0
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * done // max(1, self.total):3d}% "
                f"{done}/{self.total} logged, {sent} sent, {rate:.0f} rec/s {note}").rstrip()
        pad = " " * max(0, self.length - len(text))
        self.length = len(text)
        try:
            sys.stderr.write("\r" + text + pad)
            sys.stderr.flush()
        except Exception:
            pass

    def end(self) -> None:
        try:
            sys.stderr.write("\n")
            sys.stderr.flush()
        except Exception:
            pass


# -- ship ---------------------------------------------------------------------------------------------------------
class _ShipState:
    def __init__(self) -> None:
        self.stopping = False
        self.signal_name = ""
        self.in_emit = False
        self.closer: Optional[threading.Thread] = None


def cmd_ship(args: argparse.Namespace) -> int:
    paths = args.files or ["-"]
    for path in paths:
        if path != "-" and (not os.path.exists(path) or os.path.isdir(path) or not os.access(path, os.R_OK)):
            reason = "no such file" if not os.path.exists(path) else (
                "is a directory" if os.path.isdir(path) else "not readable")
            raise CliError(f"{path}: {reason}", EXIT_USAGE)
    from .handler import CloudWatchLogsHandler

    session = make_session(args)
    client = make_client(session, args.endpoint_url)  # NoRegionError, bad endpoint URL
    try:
        handler = CloudWatchLogsHandler(
            log_group=_template_literal(args.group),
            log_stream=_template_literal(args.stream),
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
        self.actions: List[Callable[[], None]] = []

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
        return restore  # elsewhere Ctrl-C raises KeyboardInterrupt, which cmd_ship treats as the end of input

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
        restore.actions.append(lambda s=signum, p=previous: signal.signal(s, p))
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
            _silence_stdout()
            out = None
    return out


def _tee_flush(out: Any) -> Any:
    if out is not None:
        try:
            out.flush()
        except BrokenPipeError:
            _silence_stdout()
            return None
    return out


# -- tail ---------------------------------------------------------------------------------------------------------
def cmd_tail(args: argparse.Namespace) -> int:
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


def _install_tail_signals() -> Callable[[], None]:
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
        if _code(exc) != "ResourceNotFoundException":
            raise
        try:  # which one is missing?
            client.describe_log_streams(logGroupName=args.group, limit=1)
        except ClientError as inner:
            if _code(inner) == "ResourceNotFoundException":
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
        if _code(exc) == "ResourceNotFoundException":
            raise CliError(f"log group {args.group!r} does not exist") from None
        if _code(exc) not in ("AccessDeniedException", "AccessDenied"):
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
