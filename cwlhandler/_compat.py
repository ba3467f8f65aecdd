"""Every private API of Python or botocore that cwlhandler relies on, in one place.

Each has a test in tests/test_compat.py that fails, rather than letting the
handler degrade silently, when a release removes or changes it.
"""
from __future__ import annotations

import json.encoder
import logging
import threading
from typing import Any, Callable, Dict, Optional

# json's C string encoder: escapes a str into a JSON string literal, keeping UTF-8 text as is.
encode_basestring: Callable[[str], str] = json.encoder.encode_basestring


def register_before_threads_exit(hook: Callable[[], None]) -> bool:
    """Run ``hook`` when the main thread ends, before non-daemon threads are joined.

    ``threading._register_atexit`` (what concurrent.futures uses): later than
    the application, early enough that our threads still run. False when absent
    or too late; ``logging.shutdown`` then still closes the handlers.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return False
    try:
        register(hook)
    except RuntimeError:  # "can't register atexit after shutdown"
        return False
    return True


def holds(lock: Any) -> bool:
    """Does this thread hold ``lock``, an RLock (``RLock._is_owned``)?"""
    is_owned = getattr(lock, "_is_owned", None)
    return bool(is_owned is not None and is_owned())


def holds_logging_lock() -> bool:
    """Does this thread hold the logging module's lock (``logging._lock``), as ``dictConfig`` does?"""
    return holds(getattr(logging, "_lock", None))


def http_session(client: Any) -> Optional[Any]:
    """The botocore client's HTTP session (``client._endpoint.http_session``), if it has one."""
    return getattr(getattr(client, "_endpoint", None), "http_session", None)


def pool_classes(client: Any) -> Optional[Dict[str, type]]:
    """The connection-pool classes by scheme of the client's session (``_pool_classes_by_scheme``).

    The same dict serves the session's pool manager and any proxy manager it
    makes later, so a class replaced here is used for every connection.
    """
    pools = getattr(http_session(client), "_pool_classes_by_scheme", None)
    if not isinstance(pools, dict) or not all(hasattr(p, "ConnectionCls") for p in pools.values()):
        return None
    return pools


def set_request_body(params: Dict[str, Any], body: bytes) -> None:
    """In a ``before-call`` hook: the serialised request ``body`` botocore sends (the request dict's "body")."""
    params["body"] = body


def logs_service_model(boto3_session: Any) -> Any:
    """The ``logs`` service model through the boto3 session's botocore session (``Session._session``).

    Loaded through the session's own loader, which caches it: the client made
    next does not load it a second time (60-100 ms saved at construction).
    """
    return boto3_session._session.get_service_model("logs")
