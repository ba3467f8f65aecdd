"""Shared fixtures (only fixtures: shared functions live in helpers.py): real HTTP endpoints on 127.0.0.1,
handlers wired to them, and logging put back as it was."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterator, List

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cwlhandler import CloudWatchLogsHandler  # noqa: E402
from helpers import FAST_RETRY  # noqa: E402
from strict_fake import StrictFake  # noqa: E402

# Dummy credentials only: nothing here ever reaches AWS.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)


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


@pytest.fixture
def restore_logging():
    """Put the root logger, and the loggers dictConfig may touch, back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {name: lg.disabled for name, lg in logging.Logger.manager.loggerDict.items()
                if isinstance(lg, logging.Logger)}
    try:
        yield
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                if isinstance(h, CloudWatchLogsHandler):
                    h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
        for name, value in disabled.items():
            lg = logging.Logger.manager.loggerDict.get(name)
            if isinstance(lg, logging.Logger):
                lg.disabled = value
