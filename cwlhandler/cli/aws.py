"""The CLI's AWS side: session and client, the destination's checks and creation, reading events back.

``read_stream`` is the one reader of a stream's events in the project: ``tail --stream``
and ``demo`` use it, and so do ``examples/_demo.py`` and the tests (``tests/helpers.py``).
"""
from __future__ import annotations

import argparse
import datetime
from typing import Any, Dict, List, Optional, Tuple

from .parser import EXIT_USAGE, CliError


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


def error_code(exc: BaseException) -> str:
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
            if error_code(exc) == "ResourceNotFoundException":
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
            code = error_code(exc)
            if code == "ResourceAlreadyExistsException":
                return
            if code in ("AccessDeniedException", "AccessDenied"):
                return
            if code != "ResourceNotFoundException" or attempt:
                raise
        try:
            client.create_log_group(logGroupName=group)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise


def template_literal(name: str) -> str:
    """The handler reads names as templates (``{hostname}``...): the CLI's names are literal."""
    return name.replace("{", "{{").replace("}", "}}")


def iso_utc(ms: int) -> str:
    when = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=int(ms))
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def read_stream(client: Any, group: str, stream: str, start_ms: Optional[int] = None,
                token: Optional[str] = None) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """Events of one stream, oldest first, by GetLogEvents paging; and the token to continue from.

    ``start_ms`` keeps events from that time on (all of them when None).  Passing the returned token
    back reads only what arrived since (``tail --follow``).  The end is reached when
    ``nextForwardToken`` equals the token passed in, not at an empty page (a page may be empty while
    more events follow).  The events are botocore's dicts (``timestamp``, ``message``, ``ingestionTime``).
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

