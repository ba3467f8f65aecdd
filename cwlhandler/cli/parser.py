"""What the user types and what they are told: the argument parser, exit statuses and one-line errors.

Errors are reported as one line on stderr with a non-zero exit status, never a
traceback: 1 for failures (credentials, region, endpoint, missing group, drops),
2 for bad arguments or settings.  ``explain`` turns an exception from boto3 or
botocore into that line.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable, Mapping, Optional, Tuple

from ..config import ON_FULL, OVERSIZE

PROG = "cwlhandler"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_SINCE = re.compile(r"\s*(\d+)\s*([smhd])\s*\Z", re.IGNORECASE)
_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Command = Callable[[argparse.Namespace], int]


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


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The parser of every command; ``commands`` maps each name to the function that runs it (``args.run``)."""
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
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    demo = subparsers.add_parser(
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
    demo.set_defaults(run=commands["demo"])

    ship = subparsers.add_parser(
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
    ship.set_defaults(run=commands["ship"])

    tail = subparsers.add_parser(
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
    tail.set_defaults(run=commands["tail"])
    return parser


# -- errors -------------------------------------------------------------------------------------------------------
def fail(command: str, message: str, status: int) -> int:
    """Write ``cwlhandler COMMAND: error: MESSAGE`` as one line on stderr; returns ``status``."""
    line = " ".join(str(message).split())  # one line, whatever the message held
    try:
        sys.stderr.write(f"{PROG} {command}: error: {line}\n")
        sys.stderr.flush()
    except Exception:
        pass
    return status


def silence_stdout() -> None:
    """After a broken pipe: no second error when the interpreter flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except Exception:
        pass


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
