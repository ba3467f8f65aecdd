"""Shared fixtures: real HTTP endpoints on 127.0.0.1 and handlers wired to them."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterator, List

import boto3
import botocore.config
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from strict_fake import StrictFake  # noqa: E402

from cwlhandler import CloudWatchLogsHandler  # noqa: E402
from cwlhandler.cli import read_stream  # noqa: E402
from cwlhandler.sender import RetryPolicy  # noqa: E402

# Dummy credentials only: nothing here ever reaches AWS.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05, slow=0.1)


@pytest.fixture
def fake() -> Iterator[StrictFake]:
    with StrictFake() as server:
        yield server


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def logs_client(endpoint_url: str):
    return boto3.client(
        "logs",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )


def read_events(endpoint_url: str, group: str, stream: str) -> List[tuple]:
    """Every (timestamp, message) of a stream, oldest first, through GetLogEvents paging."""
    events, _ = read_stream(logs_client(endpoint_url), group, stream)
    return [(e["timestamp"], e["message"]) for e in events]


@pytest.fixture
def make_handler(request):
    """Build handlers against an endpoint with fast retries; close them at teardown."""
    made: List[CloudWatchLogsHandler] = []

    def make(endpoint_url: str, **kwargs) -> CloudWatchLogsHandler:
        kwargs.setdefault("log_group", "test-group")
        kwargs.setdefault("log_stream", "test-stream")
        kwargs.setdefault("region_name", "us-east-1")
        kwargs.setdefault("flush_interval", 0.05)
        kwargs.setdefault("shutdown_timeout", 10)
        handler = CloudWatchLogsHandler(endpoint_url=endpoint_url, **kwargs)
        handler.retry_policy = FAST_RETRY
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


@pytest.fixture
def logger(request) -> Iterator[logging.Logger]:
    """A private logger that does not propagate to the root."""
    log = logging.getLogger(f"test.{request.node.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
