"""The private APIs cwlhandler relies on (cwlhandler/_compat.py) still exist and still behave.

A Python or botocore release that removes or changes one fails here, loudly,
instead of leaving the handler to degrade without a word.
"""
from __future__ import annotations

import json
import logging
import threading

import boto3
import botocore.config

from cwlhandler import _compat
from cwlhandler.client import rehearse
from cwlhandler.threadstate import thread_state


def test_threads_exit_hook_exists():
    """Without it, records would wait for logging.shutdown, after non-daemon threads were joined."""
    assert callable(getattr(threading, "_register_atexit", None))


def test_rlock_ownership_is_visible():
    lock = threading.RLock()
    assert _compat.holds(lock) is False
    with lock:
        assert _compat.holds(lock) is True
        assert not _owned_elsewhere(lock)


def _owned_elsewhere(lock) -> bool:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_compat.holds(lock)))
    thread.start()
    thread.join()
    return seen[0]


def test_the_logging_lock_is_an_rlock_whose_holder_we_can_tell():
    """dictConfig holds it while it closes handlers; close() must know (see CloudWatchLogsHandler.close)."""
    assert _compat.holds_logging_lock() is False
    with logging._lock:  # type: ignore[attr-defined]
        assert _compat.holds_logging_lock() is True


def test_json_string_encoder_is_the_c_one_and_keeps_utf8():
    assert json.encoder.c_encode_basestring is not None  # the C speedups are there
    assert _compat.encode_basestring('é"\n') == '"é\\"\\n"'


def _client():
    return boto3.client("logs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=botocore.config.Config(parameter_validation=False))


def test_a_client_has_an_http_session_with_pool_classes_by_scheme():
    client = _client()
    assert callable(getattr(_compat.http_session(client), "close", None))
    pools = _compat.pool_classes(client)
    assert pools is not None and set(pools) >= {"http", "https"}
    assert all(hasattr(pool.ConnectionCls, "send") and hasattr(pool.ConnectionCls, "connect")
               for pool in pools.values())


def test_the_body_a_before_call_hook_sets_is_the_body_sent():
    """The prepared-body path: botocore must send the request dict's "body" as it is."""
    client = _client()
    client.meta.events.register("before-call.cloudwatch-logs.PutLogEvents",
                                lambda params, **_: _compat.set_request_body(params, thread_state.body))
    assert rehearse(client) is True


def test_a_boto3_session_gives_its_botocore_sessions_logs_model():
    model = _compat.logs_service_model(boto3.session.Session(region_name="us-east-1"))
    assert "PutLogEvents" in model.operation_names
