"""Plumbing shared by the examples' ``if __name__ == "__main__":`` parts.

Not something to copy into an application: it only gives each example an
endpoint to talk to and prints what arrived there.

* ``ensure_endpoint()``: when ``CWL_ENDPOINT_URL`` is set (the tests point it
  at their emulator), return it.  Otherwise start the embedded emulator
  (``cwlhandler.local.LocalEmulator``, needs ``pip install 'cwlhandler[local]'``),
  run the same script again with ``CWL_ENDPOINT_URL`` pointing at it, and exit
  with that run's status.  Running the example in a child process means its
  logging configuration, read when the module is imported (a settings dict, a
  Lambda's module-level handler), sees the endpoint like it would see any
  other environment variable, and the emulator's own request log never reaches
  the example's handler.
* ``print_events(group)``: print every event of every stream of a log group,
  one ``<stream><TAB><message>`` line each (continuation lines of a multi-line
  message are indented).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import List, Tuple

import boto3

from cwlhandler.cli import read_stream

ENV = "CWL_ENDPOINT_URL"


def ensure_endpoint() -> str:
    url = os.environ.get(ENV)
    if url:
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return url
    from cwlhandler.local import LocalEmulator

    # The emulator's web server logs every request at INFO on "werkzeug".
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with LocalEmulator() as emulator:  # also sets dummy credentials and a region
        print(f"# embedded emulator at {emulator.endpoint_url}", flush=True)
        env = dict(os.environ, **{ENV: emulator.endpoint_url})
        status = subprocess.call([sys.executable] + sys.argv, env=env)
    sys.exit(status)


def _client():
    return boto3.client("logs", endpoint_url=os.environ[ENV], region_name=os.environ.get("AWS_DEFAULT_REGION"))


def events(group: str) -> List[Tuple[str, str]]:
    """``(stream, message)`` for every event of ``group``, streams by name, events oldest first."""
    client = _client()
    result: List[Tuple[str, str]] = []
    for page in client.get_paginator("describe_log_streams").paginate(logGroupName=group):
        for stream in page["logStreams"]:
            name = stream["logStreamName"]
            stored, _ = read_stream(client, group, name)
            result += [(name, e["message"]) for e in stored]
    return result


def print_events(group: str) -> None:
    found = events(group)
    print(f"# {len(found)} events in {group}")
    for stream, message in found:
        print(f"{stream}\t{message.rstrip()}".replace("\n", "\n    "))
    sys.stdout.flush()
