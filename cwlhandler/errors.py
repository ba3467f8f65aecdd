"""What an error from a CloudWatch Logs call means: its kind, its one-line description, what to do.

The kinds (``OK``, ``RETRY``, ...) are what ``transport.CloudWatchTransport``
acts on; descriptions never include credentials or signatures.
"""
from __future__ import annotations

import re
import sys
from typing import Any, List, Optional, Set

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

OK, RETRY, OPERATOR, MISSING, INVALID, ERROR = "ok", "retry", "operator", "missing", "invalid", "error"
NO_CLIENT = "no_client"  # the client could not be made: retried slowly, like OPERATOR
_OPERATOR_CODES = {
    "UnrecognizedClientException", "AccessDeniedException", "AccessDenied", "ExpiredTokenException",
    "ExpiredToken", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationTokenException", "MissingAuthenticationToken",
    "RequestExpired", "UnauthorizedOperation", "KMSInvalidStateException", "LimitExceededException",
}
_DELIVERED_CODES = {"DataAlreadyAcceptedException", "InvalidSequenceTokenException"}
_INVALID_CODES = {"InvalidParameterException", "ValidationException", "SerializationException"}


class Unsent(Exception):
    """Raised on the way to the wire: the batch was counted as not sent, so it must not be sent."""


# Answers after which the service may still have stored the request (a failure inside it, a proxy timing out).
_UNCERTAIN_STATUS = {500, 502, 504}


def may_have_stored(error: Any) -> bool:
    """After a failed PutLogEvents: could the service have stored it all the same?

    An error the service answered with refused the request, except an internal
    failure; a connection reset or read timeout after the request was written
    leaves it unknown.
    """
    if isinstance(error, ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in _UNCERTAIN_STATUS
    return True


def already_exists(result: Any) -> bool:
    """A create call that a racing creator won: as good as ours."""
    return (isinstance(result, ClientError)
            and result.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException")


def classify(error: BaseException) -> str:
    """Map an exception from a CloudWatch Logs call to what to do about it."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        if code == "ResourceNotFoundException":
            return MISSING
        if code in _DELIVERED_CODES:
            return OK
        if code in _OPERATOR_CODES or status in (401, 403):
            return OPERATOR
        if code in _INVALID_CODES:
            return INVALID
        return RETRY  # throttling, 5xx, unknown transient codes
    if isinstance(error, (NoCredentialsError, PartialCredentialsError, NoRegionError)):
        return OPERATOR
    if isinstance(error, ParamValidationError):
        return INVALID
    if isinstance(error, (BotoCoreError, Unsent)):
        return RETRY  # connection errors, timeouts, truncated responses; Unsent: the deadline, retried never
    return ERROR


# Signature errors quote the canonical request (with the session token) after these words.
_QUOTES_REQUEST = re.compile(r"\s*The (Canonical String|String-to-Sign)\b.*", re.S)
_SECRETS = re.compile(r"(x-amz-security-token[:=]|Signature=|Credential=)\S*", re.I)


def describe(error: BaseException) -> str:
    """A one-line cause that names the error, never credentials or signatures."""
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        text = f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    else:
        text = f"{type(error).__name__}: {error}"
    text = _SECRETS.sub(r"\1<redacted>", _QUOTES_REQUEST.sub("", text))
    return " ".join(text.split())


def explain_client_failure(error: BaseException) -> str:
    """What to do when boto3 could not make the client: not the credentials, usually."""
    if isinstance(error, RecursionError) and "gevent.monkey" in sys.modules:
        return ("The boto3 client could not be made: gevent patched ssl after botocore had imported it, which "
                "breaks every new SSL context. Patch first (gevent.monkey.patch_all() before anything imports "
                "boto3 or botocore), or make the handler before gevent patches (gunicorn -k gevent: in "
                "logconfig_dict or the config file, not in the application)")
    return "The boto3 client could not be made (check the region, profile and endpoint settings)"


def detach(error: BaseException) -> BaseException:
    """Drop the tracebacks of ``error`` and of the errors it chains to.

    A caught botocore error's frames form reference cycles that keep the
    request (and its up-to-1-MiB body) alive until the cyclic GC runs; during
    an outage every attempt left one behind (about 20 MiB of RSS). Only the
    error's type and message are used, so the frames can go at once.
    """
    todo: List[Optional[BaseException]] = [error]
    seen: Set[int] = set()
    while todo:
        exc = todo.pop()
        if exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            todo += (exc.__cause__, exc.__context__)
    return error
