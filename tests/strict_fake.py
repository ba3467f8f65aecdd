"""A strict, fault-injecting fake of the CloudWatch Logs JSON 1.1 API, served over real HTTP on 127.0.0.1.

botocore talks to it through ``endpoint_url``. Unlike moto it enforces the PutLogEvents limits (batch bytes,
event bytes, count, order, 24-hour span, lone surrogates) and reports ``rejectedLogEventsInfo`` with the
service's index semantics. Faults (errors, connection resets, delays, hangs, applied-then-failed requests)
can be queued per operation or applied to every request (outage).
CreateLogGroup's settings (tags, KMS key, class, deletion protection) and PutLogEvents' ``entity`` are
validated by the API model's rules and recorded (``create_log_group_requests``, ``put_requests[i]["entity"]``);
``Fault.reject_entity`` answers an accepted PutLogEvents with ``rejectedEntityInfo``.
The ``x-amzn-logs-format`` header is validated (only ``json/emf``) and recorded per PutLogEvents request
(``put_requests[i]["log_format"]``); in such a request, an event that is not a JSON object with an ``_aws``
member is stored, as the service stores it, and counted in ``emf_parse_errors`` (the service's
``EMFParsingErrors`` metric).
With ``tls=`` (an ``ssl.SSLContext`` for the server side) it speaks HTTPS instead and counts handshakes;
``keep_alive=False`` closes every connection after its answer (so each request costs a new TLS handshake).
"""
from __future__ import annotations

import bisect
import collections
import json
import re
import socket
import ssl
import struct
import threading
import time
import unicodedata
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

TARGET_PREFIX = "Logs_20140328."
EVENT_OVERHEAD = 26
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_FUTURE_MS = 2 * HOUR_MS
MAX_AGE_MS = 14 * DAY_MS
RETENTION_DAYS = frozenset({1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                            2192, 2557, 2922, 3288, 3653})
_GROUP_NAME = re.compile(r"[A-Za-z0-9_\-/.#]{1,512}\Z")
_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")
# CreateLogGroup and PutLogEvents settings (botocore's logs model, shapes Tags, KmsKeyId, LogGroupClass, Entity).
MAX_TAGS, TAG_KEY_CHARS, TAG_VALUE_CHARS = 50, 128, 256
TAG_PUNCTUATION = frozenset("_.:/=+-@")
LOG_GROUP_CLASSES = ("STANDARD", "INFREQUENT_ACCESS", "DELIVERY")
ENTITY_KEY_NAMES = frozenset({"Type", "ResourceType", "Identifier", "Name", "Environment"})
_KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+\Z")
_MEMBERS = {
    "CreateLogGroup": {"logGroupName", "kmsKeyId", "tags", "logGroupClass", "deletionProtectionEnabled"},
    "PutLogEvents": {"logGroupName", "logStreamName", "logEvents", "sequenceToken", "entity"},
}
INVALID = "InvalidParameterException"
NOT_FOUND = "ResourceNotFoundException"
LOG_FORMATS = ("json/emf",)  # the values of x-amzn-logs-format the service accepts
ALREADY_EXISTS = "ResourceAlreadyExistsException"


@dataclass(frozen=True)
class Fault:
    """One injected fault. Build with the constructors below."""
    # "error" | "reset" | "delay" | "hang" | "apply_then_error" | "apply_then_hang" | "reject_entity"
    kind: str
    code: str = ""
    status: int = 400
    message: str = "Injected fault."
    seconds: float = 0.0

    @classmethod
    def error(cls, code: str, status: int = 400, message: str = "Injected fault.") -> "Fault":
        return cls("error", code=code, status=status, message=message)

    @classmethod
    def reset(cls) -> "Fault":
        return cls("reset")

    @classmethod
    def delay(cls, seconds: float) -> "Fault":
        return cls("delay", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float) -> "Fault":
        return cls("hang", seconds=seconds)

    @classmethod
    def apply_then_error(cls, code: str = "InternalFailure", status: int = 500,
                         message: str = "Injected fault after applying the request.") -> "Fault":
        return cls("apply_then_error", code=code, status=status, message=message)

    @classmethod
    def apply_then_hang(cls, seconds: float) -> "Fault":
        """Store the request, then answer nothing for ``seconds`` and reset: a lost answer."""
        return cls("apply_then_hang", seconds=seconds)

    @classmethod
    def reject_entity(cls, error_type: str = "InvalidEntity") -> "Fault":
        """Apply the request, then answer with ``rejectedEntityInfo`` (the events are still accepted)."""
        return cls("reject_entity", code=error_type)


error, reset, delay, hang, apply_then_error, apply_then_hang, reject_entity = (
    Fault.error, Fault.reset, Fault.delay, Fault.hang, Fault.apply_then_error, Fault.apply_then_hang,
    Fault.reject_entity)


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _require_str(req: Dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(INVALID, f"1 validation error detected: Value at '{key}' failed to satisfy "
                                "constraint: Member must not be null and must have length greater than or equal to 1")
    return value


def _violation(where: str, value: Any, constraint: str) -> ApiError:
    return ApiError(INVALID, f"1 validation error detected: Value {value!r} at '{where}' failed to satisfy "
                             f"constraint: {constraint}")


def _string_map(value: Any, where: str, items: Tuple[int, int], key_chars: Tuple[int, int],
                value_chars: Tuple[int, int], chars_ok: Callable[[str], bool] = lambda _: True) -> Dict[str, str]:
    """A JSON object of strings within the model's bounds: entries, key and value lengths (and characters)."""
    if not isinstance(value, dict):
        raise _violation(where, value, "Member must be a map")
    if not items[0] <= len(value) <= items[1]:
        raise _violation(where, value, f"Member must have between {items[0]} and {items[1]} entries")
    for key, text in value.items():
        for part, kind, (low, high) in ((key, "key", key_chars), (text, "value", value_chars)):
            if not isinstance(part, str) or not low <= len(part) <= high or not chars_ok(part):
                raise _violation(f"{where}.{kind}", part, f"Member must be a string of {low} to {high} "
                                 "characters that satisfies the member's pattern")
    return value


def _tag_text(text: str) -> bool:
    """The Tags pattern [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*: letters, separators, numbers and a few marks."""
    return all(ch in TAG_PUNCTUATION or unicodedata.category(ch)[0] in "LZN" for ch in text)


def _check_members(operation: str, req: Dict[str, Any]) -> None:
    unknown = sorted(set(req) - _MEMBERS[operation])
    if unknown:
        raise ApiError("SerializationException", f"Unknown member(s) {unknown} in a {operation} request.")


def _validate_entity(entity: Any) -> None:
    """PutLogEvents' ``entity`` by the model: keyAttributes 2-4 of the five key names, attributes 0-10."""
    if not isinstance(entity, dict) or set(entity) - {"keyAttributes", "attributes"}:
        raise _violation("entity", entity, "Member must be a structure of keyAttributes and attributes")
    if "keyAttributes" in entity:
        keys = _string_map(entity["keyAttributes"], "entity.keyAttributes", (2, 4), (1, 32), (1, 512))
        if set(keys) - ENTITY_KEY_NAMES:
            raise _violation("entity.keyAttributes", keys, f"Member keys must be among {sorted(ENTITY_KEY_NAMES)}")
    if "attributes" in entity:
        _string_map(entity["attributes"], "entity.attributes", (0, 10), (1, 256), (1, 512))


def _message_size(event: Any) -> int:
    """utf8 bytes + 26, tolerant of junk (for the request log only)."""
    msg = event.get("message") if isinstance(event, dict) else None
    text = msg if isinstance(msg, str) else ""
    return len(text.encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD


def _looks_like_emf(message: str) -> bool:
    """What the service needs to even try extracting metrics: a JSON object with an ``_aws`` member."""
    try:
        document = json.loads(message)
    except ValueError:
        return False
    return isinstance(document, dict) and "_aws" in document


def _valid_event(index: int, event: Any) -> Tuple[int, str]:
    """Return (timestamp, message) or raise the service's refusal for a malformed event."""
    where = f"logEvents.{index + 1}.member"
    if not isinstance(event, dict):
        raise ApiError(INVALID, f"1 validation error detected: Value at '{where}' failed to satisfy constraint: "
                                "Member must be a structure")
    ts, msg = event.get("timestamp"), event.get("message")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ApiError(INVALID, f"1 validation error detected: Value {ts!r} at '{where}.timestamp' failed to "
                                "satisfy constraint: Member must be a long integer and not null")
    if not isinstance(msg, str) or not msg:
        raise ApiError(INVALID, f"1 validation error detected: Value {msg!r} at '{where}.message' failed to "
                                "satisfy constraint: Member must have length greater than or equal to 1")
    try:
        msg.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(INVALID, f"Log event at index {index} is not valid UTF-8: lone surrogate at "
                                f"character {exc.start}.") from None
    return ts, msg


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: "StrictFake"

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake first, when serving HTTPS."""
        if self.fake._tls is None:
            return super().finish_request(request, client_address)
        secure = self.fake._handshake(request)
        if secure is not None:
            try:
                super().finish_request(secure, client_address)
            except OSError:
                pass  # a client that went away mid-request (a process that ended): nothing to answer
            finally:
                secure.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.fake._handle(self, body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet; never echo headers
        pass

    def send_json(self, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        if not self.server.fake._keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def send_api_error(self, err: ApiError) -> None:
        self.send_json(err.status, {"__type": err.code, "message": err.message})

    def drop(self) -> None:
        """Close without answering; linger 0 makes the close a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class StrictFake:
    def __init__(self, *, max_event_bytes: int = 1_048_576, max_batch_bytes: int = 1_048_576,
                 max_batch_count: int = 10_000, now_ms: Optional[Callable[[], int]] = None,
                 access_key_ids: Optional[set] = None, tls: Optional[ssl.SSLContext] = None,
                 keep_alive: bool = True, kms_keys: Optional[set] = None) -> None:
        self.max_event_bytes, self.max_batch_bytes, self.max_batch_count = (
            max_event_bytes, max_batch_bytes, max_batch_count)
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._key_ids = frozenset(access_key_ids) if access_key_ids is not None else None
        self.kms_keys = set(kms_keys) if kms_keys is not None else None  # the keys that exist; None: any key ARN
        self._tls = tls
        self._keep_alive = keep_alive
        self.tls_handshakes = 0  # completed TLS handshakes (tls= only)
        self.tls_failures = 0    # handshakes that failed, e.g. a client that does not trust the certificate
        self._lock = threading.RLock()
        self._flight = threading.Condition()
        self._stopping = threading.Event()
        self._groups: Dict[str, Dict[str, Any]] = {}   # name -> {"retention", "created", "settings", "streams"}
        self._seq = 0
        self._faults: Dict[str, Deque[Fault]] = collections.defaultdict(collections.deque)
        self._outage: Optional[Fault] = None
        self._gate: Optional[threading.Event] = None
        self._in_flight = 0
        self.calls: collections.Counter = collections.Counter()
        self.put_requests: List[Dict[str, Any]] = []
        self.create_log_group_requests: List[Dict[str, Any]] = []  # each request's parameters, as received
        self.refusals: List[str] = []
        self.emf_parse_errors = 0
        self.max_in_flight = 0
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.endpoint_url = ""
        self._operations: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            "CreateLogGroup": self._create_log_group, "CreateLogStream": self._create_log_stream,
            "PutRetentionPolicy": self._put_retention_policy, "DescribeLogGroups": self._describe_log_groups,
            "DescribeLogStreams": self._describe_log_streams, "GetLogEvents": self._get_log_events,
            "PutLogEvents": self._put_log_events,
        }

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "StrictFake":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        scheme = "http" if self._tls is None else "https"
        self.endpoint_url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="strict-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._gate is not None:
                self._gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "StrictFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- assertions ------------------------------------------------------------------------------------------
    def events(self, group: str, stream: str) -> List[Tuple[int, str]]:
        with self._lock:
            return [(ts, msg) for ts, _seq, msg, _ingested in self._groups[group]["streams"][stream]]

    def streams(self, group: str) -> List[str]:
        with self._lock:
            return sorted(self._groups[group]["streams"])

    def groups(self) -> List[str]:
        with self._lock:
            return sorted(self._groups)

    def retention(self, group: str) -> Optional[int]:
        with self._lock:
            return self._groups[group]["retention"]

    def group_settings(self, group: str) -> Dict[str, Any]:
        """The CreateLogGroup settings the group was made with (kmsKeyId, tags, logGroupClass, ...)."""
        with self._lock:
            return dict(self._groups[group]["settings"])

    @property
    def in_flight(self) -> int:
        with self._flight:
            return self._in_flight

    def wait_for_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least `count` PutLogEvents requests are being processed (use with gate())."""
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight >= count, timeout)

    # ---- faults ----------------------------------------------------------------------------------------------
    def inject(self, operation: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[operation].extend(faults)

    def set_outage(self, fault: Optional[Fault]) -> None:
        with self._lock:
            self._outage = fault

    def gate(self) -> threading.Event:
        """Install a fresh, unset gate: PutLogEvents requests block until it is set."""
        with self._lock:
            self._gate = threading.Event()
            return self._gate

    def _next_fault(self, operation: str) -> Optional[Fault]:
        with self._lock:
            if self._outage is not None:
                return self._outage
            for key in (operation, "*"):
                if self._faults[key]:
                    return self._faults[key].popleft()
            return None

    # ---- request handling ------------------------------------------------------------------------------------
    def _handshake(self, sock: socket.socket) -> Optional[ssl.SSLSocket]:
        """The server side of a TLS handshake (10 s at most); None, counted, when it fails."""
        sock.settimeout(10)
        try:
            secure = self._tls.wrap_socket(sock, server_side=True)  # type: ignore[union-attr]
        except OSError:  # ssl.SSLError included
            with self._lock:
                self.tls_failures += 1
            sock.close()
            return None
        secure.settimeout(None)
        with self._lock:
            self.tls_handshakes += 1
        return secure

    def _handle(self, handler: _Handler, body: bytes) -> None:
        target = handler.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target
        with self._lock:
            self.calls[operation] += 1
        is_put = operation == "PutLogEvents"
        if is_put:
            self._enter_flight()
        try:
            if is_put:
                self._wait_gate()
            self._respond(handler, operation, body, self._next_fault(operation))
        finally:
            if is_put:
                self._leave_flight()

    def _enter_flight(self) -> None:
        with self._flight:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._flight.notify_all()

    def _leave_flight(self) -> None:
        with self._flight:
            self._in_flight -= 1
            self._flight.notify_all()

    def _wait_gate(self) -> None:
        with self._lock:
            gate = self._gate
        if gate is not None:
            gate.wait()

    def _respond(self, handler: _Handler, operation: str, body: bytes, fault: Optional[Fault]) -> None:
        if fault is not None and fault.kind in ("delay", "hang"):
            self._stopping.wait(fault.seconds)
        if fault is not None and fault.kind in ("reset", "hang"):
            return handler.drop()
        if fault is not None and fault.kind == "error":
            return handler.send_api_error(ApiError(fault.code, fault.message, fault.status))
        try:
            result: Optional[Dict[str, Any]] = self._execute(operation, handler.headers, body)
            failure: Optional[ApiError] = None
        except ApiError as exc:
            result, failure = None, exc
        if fault is not None and fault.kind == "apply_then_error":
            return handler.send_api_error(ApiError(fault.code, fault.message, fault.status))
        if fault is not None and fault.kind == "apply_then_hang":
            self._stopping.wait(fault.seconds)
            return handler.drop()
        if fault is not None and fault.kind == "reject_entity" and result is not None:
            result["rejectedEntityInfo"] = {"errorType": fault.code}
        if failure is not None:
            if failure.code == INVALID:
                with self._lock:
                    self.refusals.append(failure.message)
            return handler.send_api_error(failure)
        handler.send_json(200, result or {})

    def _execute(self, operation: str, headers: Any, body: bytes) -> Dict[str, Any]:
        self._check_credentials(headers.get("Authorization"))
        log_format = headers.get("x-amzn-logs-format")
        if log_format is not None and log_format not in LOG_FORMATS:
            raise ApiError(INVALID, f"Unsupported log format {log_format!r} in x-amzn-logs-format.")
        method = self._operations.get(operation)
        if method is None:
            raise ApiError("UnknownOperationException", f"Unknown operation {operation!r}.")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("SerializationException", "Request body is not valid JSON.") from None
        if not isinstance(request, dict):
            raise ApiError("SerializationException", "Request body must be a JSON object.")
        if operation == "PutLogEvents":
            return self._put_log_events(request, log_format)
        return method(request)

    def _check_credentials(self, authorization: Optional[str]) -> None:
        if self._key_ids is None:
            return
        match = _KEY_ID.search(authorization or "")
        if match is None or match.group(1) not in self._key_ids:
            raise ApiError("UnrecognizedClientException", "The security token included in the request is invalid.")

    # ---- lookups (call with self._lock held) -----------------------------------------------------------------
    def _group(self, name: str) -> Dict[str, Any]:
        if name not in self._groups:
            raise ApiError(NOT_FOUND, "The specified log group does not exist.")
        return self._groups[name]

    def _stream(self, group: str, stream: str) -> List[Tuple[int, int, str, int]]:
        streams = self._group(group)["streams"]
        if stream not in streams:
            raise ApiError(NOT_FOUND, "The specified log stream does not exist.")
        return streams[stream]

    # ---- control plane ---------------------------------------------------------------------------------------
    def _create_log_group(self, req: Dict[str, Any]) -> Dict[str, Any]:
        with self._lock:
            self.create_log_group_requests.append(dict(req))
        _check_members("CreateLogGroup", req)
        name = _require_str(req, "logGroupName")
        if not _GROUP_NAME.match(name) or name.startswith("aws/"):
            raise ApiError(INVALID, f"Invalid log group name {name!r}: must be 1-512 characters of "
                                    "[\\.\\-_/#A-Za-z0-9] and must not start with 'aws/'.")
        settings = {key: req[key] for key in ("kmsKeyId", "tags", "logGroupClass", "deletionProtectionEnabled")
                    if key in req}
        self._validate_group_settings(name, settings)
        with self._lock:
            if name in self._groups:
                raise ApiError(ALREADY_EXISTS, "The specified log group already exists")
            self._groups[name] = {"retention": None, "created": self._now_ms(), "settings": settings, "streams": {}}
        return {}

    def _validate_group_settings(self, name: str, settings: Dict[str, Any]) -> None:
        if "tags" in settings:
            tags = _string_map(settings["tags"], "tags", (1, MAX_TAGS), (1, TAG_KEY_CHARS), (0, TAG_VALUE_CHARS),
                               _tag_text)
            reserved = [key for key in tags if key.lower().startswith("aws:")]
            if reserved:
                raise ApiError(INVALID, f"Tag keys must not start with 'aws:' (reserved for AWS use): {reserved}")
        if "kmsKeyId" in settings:
            key = settings["kmsKeyId"]
            if not isinstance(key, str) or len(key) > 256 or not _KMS_KEY_ARN.match(key):
                raise _violation("kmsKeyId", key, "Member must be the ARN of a KMS key, at most 256 characters")
            if self.kms_keys is not None and key not in self.kms_keys:
                raise ApiError(INVALID, f"The specified KMS key does not exist or is not allowed to be used with "
                                        f"Arn 'arn:aws:logs:us-east-1:123456789012:log-group:{name}'")
        if "logGroupClass" in settings and settings["logGroupClass"] not in LOG_GROUP_CLASSES:
            raise _violation("logGroupClass", settings["logGroupClass"],
                             f"Member must satisfy enum value set: {list(LOG_GROUP_CLASSES)}")
        if "deletionProtectionEnabled" in settings and not isinstance(settings["deletionProtectionEnabled"], bool):
            raise _violation("deletionProtectionEnabled", settings["deletionProtectionEnabled"],
                             "Member must be a boolean")

    def _create_log_stream(self, req: Dict[str, Any]) -> Dict[str, Any]:
        group, name = _require_str(req, "logGroupName"), _require_str(req, "logStreamName")
        if len(name) > 512 or ":" in name or "*" in name:
            raise ApiError(INVALID, f"Invalid log stream name {name!r}: must be 1-512 characters without ':' or '*'.")
        with self._lock:
            streams = self._group(group)["streams"]
            if name in streams:
                raise ApiError(ALREADY_EXISTS, "The specified log stream already exists")
            streams[name] = []
        return {}

    def _put_retention_policy(self, req: Dict[str, Any]) -> Dict[str, Any]:
        group, days = _require_str(req, "logGroupName"), req.get("retentionInDays")
        if isinstance(days, bool) or days not in RETENTION_DAYS:
            raise ApiError(INVALID, f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to "
                                    f"satisfy constraint: Member must satisfy enum value set: {sorted(RETENTION_DAYS)}")
        with self._lock:
            self._group(group)["retention"] = days
        return {}

    def _describe_log_groups(self, req: Dict[str, Any]) -> Dict[str, Any]:
        prefix = req.get("logGroupNamePrefix") or ""
        with self._lock:
            found = [{"logGroupName": name, "creationTime": g["created"], "storedBytes": 0,
                      "arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{name}:*",
                      "logGroupClass": g["settings"].get("logGroupClass", "STANDARD"),
                      "deletionProtectionEnabled": g["settings"].get("deletionProtectionEnabled", False),
                      **({"kmsKeyId": g["settings"]["kmsKeyId"]} if "kmsKeyId" in g["settings"] else {}),
                      **({"retentionInDays": g["retention"]} if g["retention"] else {})}
                     for name, g in sorted(self._groups.items()) if name.startswith(prefix)]
        return {"logGroups": found}

    def _describe_log_streams(self, req: Dict[str, Any]) -> Dict[str, Any]:
        group, prefix = _require_str(req, "logGroupName"), req.get("logStreamNamePrefix") or ""
        with self._lock:
            streams = self._group(group)["streams"]
            found = [{"logStreamName": name, "storedBytes": 0,
                      **({"firstEventTimestamp": evs[0][0], "lastEventTimestamp": evs[-1][0]} if evs else {})}
                     for name, evs in sorted(streams.items()) if name.startswith(prefix)]
        return {"logStreams": found}

    # ---- data plane ------------------------------------------------------------------------------------------
    def _get_log_events(self, req: Dict[str, Any]) -> Dict[str, Any]:
        group, stream = _require_str(req, "logGroupName"), _require_str(req, "logStreamName")
        limit = req.get("limit", 10_000)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ApiError(INVALID, "limit must be between 1 and 10000.")
        start, end = req.get("startTime"), req.get("endTime")
        with self._lock:
            stored = [e for e in self._stream(group, stream)
                      if (start is None or e[0] >= start) and (end is None or e[0] < end)]
        forward, pos = self._parse_token(req.get("nextToken"), bool(req.get("startFromHead")), len(stored))
        lo, hi = (pos, min(pos + limit, len(stored))) if forward else (max(0, pos - limit), pos)
        page = [{"timestamp": ts, "message": msg, "ingestionTime": ingested} for ts, _s, msg, ingested in stored[lo:hi]]
        return {"events": page, "nextForwardToken": f"f/{hi:056d}", "nextBackwardToken": f"b/{lo:056d}"}

    @staticmethod
    def _parse_token(token: Any, from_head: bool, size: int) -> Tuple[bool, int]:
        """Return (reading forward?, position) for a GetLogEvents token; tokens are f/<pos> or b/<pos>."""
        if token is None:
            return (True, 0) if from_head else (False, size)
        match = re.fullmatch(r"([fb])/(\d{1,56})", token) if isinstance(token, str) else None
        if match is None or int(match.group(2)) > size:
            raise ApiError(INVALID, "The specified nextToken is invalid.")
        return match.group(1) == "f", int(match.group(2))

    def _put_log_events(self, req: Dict[str, Any], log_format: Optional[str] = None) -> Dict[str, Any]:
        raw = req.get("logEvents")
        events = raw if isinstance(raw, list) else []
        timestamps = [e.get("timestamp") for e in events if isinstance(e, dict)]
        record = {"group": req.get("logGroupName"), "stream": req.get("logStreamName"), "count": len(events),
                  "bytes": sum(_message_size(e) for e in events), "first_ts": timestamps[0] if timestamps else None,
                  "last_ts": timestamps[-1] if timestamps else None, "entity": req.get("entity"), "outcome": "ok",
                  "log_format": log_format}
        try:
            result = self._store_batch(req)
            if log_format == "json/emf":
                errors = sum(not _looks_like_emf(e.get("message")) for e in events)
                with self._lock:
                    self.emf_parse_errors += errors
            return result
        except ApiError as exc:
            record["outcome"] = exc.code
            raise
        finally:
            with self._lock:
                self.put_requests.append(record)

    def _store_batch(self, req: Dict[str, Any]) -> Dict[str, Any]:
        _check_members("PutLogEvents", req)
        group, stream = _require_str(req, "logGroupName"), _require_str(req, "logStreamName")
        if "entity" in req:
            _validate_entity(req["entity"])
        batch = self._validate_batch(req.get("logEvents"))
        with self._lock:
            stored = self._stream(group, stream)
            now = self._now_ms()
            first, end, rejected = self._classify([ts for ts, _ in batch], now, self._group(group)["retention"])
            kept = batch[first:end]
            if kept and kept[-1][0] - kept[0][0] > DAY_MS:
                raise ApiError(INVALID, "The batch of log events in a single PutLogEvents request cannot span "
                                        "more than 24 hours.")
            for ts, msg in kept:
                self._seq += 1
                bisect.insort(stored, (ts, self._seq, msg, now))
            result: Dict[str, Any] = {"nextSequenceToken": f"{self._seq:056d}"}
        if rejected:
            result["rejectedLogEventsInfo"] = rejected
        return result

    def _validate_batch(self, events: Any) -> List[Tuple[int, str]]:
        if not isinstance(events, list) or not events:
            raise ApiError(INVALID, "1 validation error detected: Value at 'logEvents' failed to satisfy "
                                    "constraint: Member must have length greater than or equal to 1")
        if len(events) > self.max_batch_count:
            raise ApiError(INVALID, f"1 validation error detected: Value at 'logEvents' failed to satisfy "
                                    f"constraint: Member must have length less than or equal to {self.max_batch_count}")
        batch, total = [], 0
        for index, event in enumerate(events):
            ts, msg = _valid_event(index, event)
            size = len(msg.encode("utf-8")) + EVENT_OVERHEAD
            if size > self.max_event_bytes:
                raise ApiError(INVALID, f"Log event too large: {size} bytes exceeds limit of {self.max_event_bytes}")
            total += size
            batch.append((ts, msg))
        if total > self.max_batch_bytes:
            raise ApiError(INVALID, f"Upload too large: {total} bytes exceeds limit of {self.max_batch_bytes}")
        if any(later[0] < earlier[0] for earlier, later in zip(batch, batch[1:])):
            raise ApiError(INVALID, "Log events in a single PutLogEvents request must be in chronological order.")
        return batch

    @staticmethod
    def _classify(timestamps: List[int], now: int, retention_days: Optional[int]) -> Tuple[int, int, Dict[str, int]]:
        """For sorted timestamps return (first kept index, end of kept, rejectedLogEventsInfo)."""
        too_new = next((i for i, ts in enumerate(timestamps) if ts > now + MAX_FUTURE_MS), len(timestamps))
        too_old = sum(1 for ts in timestamps if ts < now - MAX_AGE_MS)
        expired = sum(1 for ts in timestamps if ts < now - retention_days * DAY_MS) if retention_days else 0
        info = {key: value for key, value, applies in (
            ("tooNewLogEventStartIndex", too_new, too_new < len(timestamps)),
            ("tooOldLogEventEndIndex", too_old, too_old > 0),
            ("expiredLogEventEndIndex", expired, expired > 0)) if applies}
        return max(too_old, expired), too_new, info
