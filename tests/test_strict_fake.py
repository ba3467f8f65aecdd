"""Tests proving tests/strict_fake.py is strict: each rule is refused the way CloudWatch Logs refuses it."""
from __future__ import annotations

import http.client
import json
import os
import sys
import threading

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

sys.path.insert(0, os.path.dirname(__file__))
from strict_fake import DAY_MS, HOUR_MS, Fault, StrictFake  # noqa: E402

NOW = 1_700_000_000_000
GROUP, STREAM = "app/group", "stream-1"
INVALID = "InvalidParameterException"


def make_client(fake: StrictFake, key_id: str = "testing", **config):
    return boto3.client(
        "logs", region_name="us-east-1", endpoint_url=fake.endpoint_url,
        aws_access_key_id=key_id, aws_secret_access_key="testing",
        config=botocore.config.Config(parameter_validation=False, retries={"total_max_attempts": 1}, **config))


@pytest.fixture
def fake():
    with StrictFake(now_ms=lambda: NOW) as f:
        yield f


@pytest.fixture
def client(fake):
    return make_client(fake)


@pytest.fixture
def stream(fake, client):
    client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return GROUP, STREAM


def put(client, events, group=GROUP, stream=STREAM):
    return client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def ev(ts, message="hello"):
    return {"timestamp": ts, "message": message}


def refused(client, events, code=INVALID):
    with pytest.raises(ClientError) as info:
        put(client, events)
    assert info.value.response["Error"]["Code"] == code
    return info.value.response["Error"]["Message"]


def read_all(client, limit):
    token, seen = None, []
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, startFromHead=True,
                                     limit=limit, **kwargs)
        seen.extend((e["timestamp"], e["message"]) for e in page["events"])
        if page["nextForwardToken"] == token:
            return seen
        token = page["nextForwardToken"]


# ---- accepted data --------------------------------------------------------------------------------------------
def test_valid_batch_is_stored_and_readable_with_pagination(fake, client, stream):
    resp = put(client, [ev(NOW - 5 + i, f"m{i}") for i in range(5)])
    assert "rejectedLogEventsInfo" not in resp and resp["nextSequenceToken"]
    put(client, [ev(NOW - 10, "early"), ev(NOW - 10, "early2")])   # no order rule across requests
    expected = [(NOW - 10, "early"), (NOW - 10, "early2")] + [(NOW - 5 + i, f"m{i}") for i in range(5)]
    assert fake.events(GROUP, STREAM) == expected
    assert read_all(client, limit=3) == expected
    assert fake.put_requests[0] == {"group": GROUP, "stream": STREAM, "count": 5, "bytes": 5 * (2 + 26),
                                    "first_ts": NOW - 5, "last_ts": NOW - 1, "entity": None, "outcome": "ok",
                                    "log_format": None}
    assert fake.refusals == [] and fake.calls["PutLogEvents"] == 2


def test_get_log_events_default_reads_latest_and_time_window(client, stream):
    put(client, [ev(NOW - 3, "a"), ev(NOW - 2, "b"), ev(NOW - 1, "c")])
    latest = client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, limit=2)
    assert [e["message"] for e in latest["events"]] == ["b", "c"]
    window = client.get_log_events(logGroupName=GROUP, logStreamName=STREAM, startTime=NOW - 2, endTime=NOW - 1)
    assert [e["message"] for e in window["events"]] == ["b"]
    assert window["events"][0]["ingestionTime"] == NOW


def test_describe_groups_and_streams(fake, client, stream):
    client.put_retention_policy(logGroupName=GROUP, retentionInDays=7)
    groups = client.describe_log_groups(logGroupNamePrefix="app/")["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [(GROUP, 7)]
    assert client.describe_log_groups(logGroupNamePrefix="other")["logGroups"] == []
    streams = client.describe_log_streams(logGroupName=GROUP)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [STREAM]
    assert fake.groups() == [GROUP] and fake.streams(GROUP) == [STREAM] and fake.retention(GROUP) == 7


# ---- refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("events", [[], None])
def test_empty_or_missing_batch_refused(fake, client, stream, events):
    kwargs = {} if events is None else {"logEvents": events}
    with pytest.raises(ClientError) as info:
        client.put_log_events(logGroupName=GROUP, logStreamName=STREAM, **kwargs)
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.put_requests[-1]["outcome"] == INVALID and len(fake.refusals) == 1


def test_too_many_events_refused(fake, client, stream):
    assert "less than or equal to 10000" in refused(client, [ev(NOW)] * 10_001)
    assert fake.events(GROUP, STREAM) == []
    put(client, [ev(NOW)] * 10_000)
    assert len(fake.events(GROUP, STREAM)) == 10_000


@pytest.mark.parametrize("bad", [{"message": "x"}, {"timestamp": 1.5, "message": "x"},
                                 {"timestamp": str(NOW), "message": "x"}, {"timestamp": True, "message": "x"}])
def test_event_without_int_timestamp_refused(client, stream, bad):
    assert "timestamp" in refused(client, [ev(NOW), bad])


@pytest.mark.parametrize("bad", [{"timestamp": NOW}, {"timestamp": NOW, "message": ""},
                                 {"timestamp": NOW, "message": 5}])
def test_event_without_non_empty_string_message_refused(client, stream, bad):
    assert "message" in refused(client, [bad])


def test_lone_surrogate_refused(fake, client, stream):
    assert "UTF-8" in refused(client, [ev(NOW, "ok"), ev(NOW, "bad \ud800 text")])
    assert fake.events(GROUP, STREAM) == []


def test_event_too_large_refused_at_exact_boundary(fake, client, stream):
    put(client, [ev(NOW, "x" * (1_048_576 - 26))])
    message = refused(client, [ev(NOW, "x" * (1_048_576 - 25))])
    assert message == "Log event too large: 1048577 bytes exceeds limit of 1048576"


def test_event_size_counts_utf8_bytes_not_characters():
    with StrictFake(max_event_bytes=100, now_ms=lambda: NOW) as fake:
        client = make_client(fake)
        client.create_log_group(logGroupName=GROUP)
        client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
        put(client, [ev(NOW, "\u20ac" * 24 + "xx")])            # 74 bytes + 26 = 100
        assert refused(client, [ev(NOW, "\u20ac" * 25)]) == "Log event too large: 101 bytes exceeds limit of 100"


def test_batch_too_large_refused_at_exact_boundary(fake, client, stream):
    half = 1_048_576 // 2 - 26
    put(client, [ev(NOW, "a" * half), ev(NOW, "b" * half)])
    message = refused(client, [ev(NOW, "a" * half), ev(NOW, "b" * (half + 1))])
    assert message == "Upload too large: 1048577 bytes exceeds limit of 1048576"
    assert fake.put_requests[-1]["bytes"] == 1_048_577


def test_out_of_order_refused_equal_timestamps_accepted(fake, client, stream):
    put(client, [ev(NOW - 1), ev(NOW - 1), ev(NOW)])
    message = refused(client, [ev(NOW), ev(NOW - 1)])
    assert message == "Log events in a single PutLogEvents request must be in chronological order."
    assert len(fake.events(GROUP, STREAM)) == 3


def test_span_over_24_hours_refused(fake, client, stream):
    put(client, [ev(NOW - DAY_MS), ev(NOW)])                   # exactly 24 h is fine
    message = refused(client, [ev(NOW - DAY_MS - 1), ev(NOW)])
    assert message == "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."


def test_span_ignores_events_rejected_as_too_new_or_too_old(fake, client, stream):
    events = [ev(NOW - 15 * DAY_MS, "old"), ev(NOW - 23 * HOUR_MS, "a"), ev(NOW, "b"), ev(NOW + 3 * HOUR_MS, "new")]
    resp = put(client, events)
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 3}
    assert [m for _, m in fake.events(GROUP, STREAM)] == ["a", "b"]


# ---- rejectedLogEventsInfo ------------------------------------------------------------------------------------
def test_too_new_events_dropped_from_start_index(fake, client, stream):
    limit = NOW + 2 * HOUR_MS
    resp = put(client, [ev(NOW, "a"), ev(limit, "edge"), ev(limit + 1, "n1"), ev(limit + 5, "n2")])
    assert resp["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 2}
    assert [m for _, m in fake.events(GROUP, STREAM)] == ["a", "edge"]


def test_too_old_events_dropped_before_end_index(fake, client, stream):
    limit = NOW - 14 * DAY_MS
    resp = put(client, [ev(limit - 5, "o1"), ev(limit - 1, "o2"), ev(limit, "edge"), ev(limit + 1, "a")])
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2}
    assert [m for _, m in fake.events(GROUP, STREAM)] == ["edge", "a"]


def test_expired_events_dropped_after_retention_policy(fake, client, stream):
    client.put_retention_policy(logGroupName=GROUP, retentionInDays=1)
    resp = put(client, [ev(NOW - DAY_MS - 1, "expired"), ev(NOW - DAY_MS, "edge"), ev(NOW, "a")])
    assert resp["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 1}
    assert [m for _, m in fake.events(GROUP, STREAM)] == ["edge", "a"]


def test_all_events_rejected_is_still_a_success(fake, client, stream):
    resp = put(client, [ev(NOW + 3 * HOUR_MS), ev(NOW + 4 * HOUR_MS)])
    assert resp["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 0}
    assert fake.events(GROUP, STREAM) == [] and fake.put_requests[-1]["outcome"] == "ok"


# ---- resources and names --------------------------------------------------------------------------------------
def test_missing_group_and_stream(fake, client):
    assert refused(client, [ev(NOW)], code="ResourceNotFoundException") == "The specified log group does not exist."
    client.create_log_group(logGroupName=GROUP)
    assert refused(client, [ev(NOW)], code="ResourceNotFoundException") == "The specified log stream does not exist."
    with pytest.raises(ClientError) as info:
        client.create_log_stream(logGroupName="nope", logStreamName=STREAM)
    assert info.value.response["Error"]["Message"] == "The specified log group does not exist."
    assert fake.put_requests[-1]["outcome"] == "ResourceNotFoundException"


def test_create_existing_group_or_stream(client, stream):
    for call in (lambda: client.create_log_group(logGroupName=GROUP),
                 lambda: client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"


@pytest.mark.parametrize("name", ["", "aws/lambda", "has space", "colon:name", "x" * 513])
def test_invalid_group_name_refused(fake, client, name):
    with pytest.raises(ClientError) as info:
        client.create_log_group(logGroupName=name)
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.groups() == [] and len(fake.refusals) == 1


@pytest.mark.parametrize("name", ["", "a:b", "a*b", "x" * 513])
def test_invalid_stream_name_refused(fake, client, name):
    client.create_log_group(logGroupName=GROUP)
    with pytest.raises(ClientError) as info:
        client.create_log_stream(logGroupName=GROUP, logStreamName=name)
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.streams(GROUP) == []


@pytest.mark.parametrize("days", [2, 0, 4000, "7"])
def test_invalid_retention_refused(fake, client, stream, days):
    with pytest.raises(ClientError) as info:
        client.put_retention_policy(logGroupName=GROUP, retentionInDays=days)
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.retention(GROUP) is None


def with_log_format(client, value: str) -> None:
    """Send the x-amzn-logs-format header on this client's PutLogEvents calls."""
    client.meta.events.register("before-sign.cloudwatch-logs.PutLogEvents",
                                lambda request, **_: request.headers.__setitem__("x-amzn-logs-format", value))


def test_emf_log_format_is_recorded_and_a_plain_line_in_it_is_a_parse_error(fake, client, stream):
    put(client, [{"timestamp": NOW - 2, "message": "no header"}])
    with_log_format(client, "json/emf")
    put(client, [{"timestamp": NOW - 1, "message": '{"_aws":{}}'}, {"timestamp": NOW, "message": "plain"}])
    assert [r["log_format"] for r in fake.put_requests] == [None, "json/emf"]
    assert fake.emf_parse_errors == 1  # stored all the same, as the service stores it
    assert [m for _, m in fake.events(GROUP, STREAM)] == ["no header", '{"_aws":{}}', "plain"]


def test_unknown_log_format_refused(fake, client, stream):
    with_log_format(client, "json/other")
    with pytest.raises(ClientError) as info:
        put(client, [{"timestamp": NOW, "message": "x"}])
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.events(GROUP, STREAM) == []


def raw_call(fake: StrictFake, operation: str, body: dict) -> tuple:
    """(status, answer) of a request botocore could not serialise."""
    host, port = fake.endpoint_url[len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", "/", body=json.dumps(body).encode(), headers={
            "X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": "application/x-amz-json-1.1"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_unknown_operation(fake):
    status, answer = raw_call(fake, "Nope", {})
    assert status == 400 and answer["__type"] == "UnknownOperationException"


# ---- faults ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,status", [("ThrottlingException", 400), ("ServiceUnavailableException", 503),
                                         ("InternalFailure", 500), ("AccessDeniedException", 400)])
def test_error_fault_seen_by_client_and_consumed(fake, client, stream, code, status):
    fake.inject("PutLogEvents", Fault.error(code, status=status, message="slow down"))
    with pytest.raises(ClientError) as info:
        put(client, [ev(NOW)])
    assert info.value.response["Error"] == {"Code": code, "Message": "slow down"}
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    put(client, [ev(NOW)])                                     # fault consumed: next request is normal
    assert len(fake.events(GROUP, STREAM)) == 1 and fake.calls["PutLogEvents"] == 2
    assert len(fake.put_requests) == 1                         # faulted request never reached validation


def test_faults_are_fifo_and_wildcard_applies_to_any_operation(fake, client):
    fake.inject("*", Fault.error("ServiceUnavailableException", 503))
    fake.inject("CreateLogGroup", Fault.error("ThrottlingException"), Fault.error("InternalFailure", 500))
    codes = []
    for _ in range(3):
        with pytest.raises(ClientError) as info:
            client.create_log_group(logGroupName=GROUP)
        codes.append(info.value.response["Error"]["Code"])
    assert codes == ["ThrottlingException", "InternalFailure", "ServiceUnavailableException"]
    client.create_log_group(logGroupName=GROUP)
    assert fake.groups() == [GROUP] and fake.calls["CreateLogGroup"] == 4


def test_reset_fault_raises_connection_error(fake, client, stream):
    fake.inject("PutLogEvents", Fault.reset())
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        put(client, [ev(NOW)])
    put(client, [ev(NOW)])
    assert len(fake.events(GROUP, STREAM)) == 1


def test_hang_fault_raises_read_timeout(fake, stream):
    client = make_client(fake, read_timeout=0.2)
    fake.inject("PutLogEvents", Fault.hang(30))
    with pytest.raises(ReadTimeoutError):
        put(client, [ev(NOW)])
    assert fake.events(GROUP, STREAM) == []


def test_delay_fault_then_processes_normally(fake, client, stream):
    fake.inject("PutLogEvents", Fault.delay(0.05))
    put(client, [ev(NOW)])
    assert len(fake.events(GROUP, STREAM)) == 1


def test_apply_then_error_stores_events_and_returns_error(fake, client, stream):
    fake.inject("PutLogEvents", Fault.apply_then_error())
    with pytest.raises(ClientError) as info:
        put(client, [ev(NOW, "once")])
    assert info.value.response["Error"]["Code"] == "InternalFailure"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    put(client, [ev(NOW, "once")])                             # the client's retry duplicates the event
    assert fake.events(GROUP, STREAM) == [(NOW, "once"), (NOW, "once")]


def test_outage_on_and_off(fake, client, stream):
    fake.set_outage(Fault.error("ServiceUnavailableException", 503))
    for call in (lambda: put(client, [ev(NOW)]), lambda: client.describe_log_groups()):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
    fake.set_outage(None)
    put(client, [ev(NOW)])
    assert len(fake.events(GROUP, STREAM)) == 1 and fake.calls["PutLogEvents"] == 2


def test_gate_holds_two_parallel_puts_in_flight(fake, client, stream):
    gate = fake.gate()
    clients = [make_client(fake), make_client(fake)]
    errors = []

    def worker(c, i):
        try:
            put(c, [ev(NOW, f"t{i}")])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    assert fake.wait_for_in_flight(2, timeout=5)
    assert fake.events(GROUP, STREAM) == []                    # both held before storing
    gate.set()
    for t in threads:
        t.join(timeout=5)
    with fake._flight:  # the server counts a request done just after its response is sent
        assert fake._flight.wait_for(lambda: fake._in_flight == 0, 5)
    assert errors == [] and fake.max_in_flight == 2
    assert sorted(m for _, m in fake.events(GROUP, STREAM)) == ["t0", "t1"]


def test_wrong_access_key_id_refused():
    with StrictFake(now_ms=lambda: NOW, access_key_ids={"AKIDGOOD"}) as fake:
        with pytest.raises(ClientError) as info:
            make_client(fake, key_id="AKIDBAD").create_log_group(logGroupName=GROUP)
        assert info.value.response["Error"] == {
            "Code": "UnrecognizedClientException", "Message": "The security token included in the request is invalid."}
        assert fake.groups() == [] and fake.calls["CreateLogGroup"] == 1
        make_client(fake, key_id="AKIDGOOD").create_log_group(logGroupName=GROUP)
        assert fake.groups() == [GROUP]


# ---- log-group settings and the entity ------------------------------------------------------------------------
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize("params", [
    {"tags": {}}, {"tags": {f"k{i}": "v" for i in range(51)}}, {"tags": {"k" * 129: "v"}},
    {"tags": {"k": "v" * 257}}, {"tags": {"aws:owner": "me"}}, {"tags": {"k": "semi;colon"}},
    {"kmsKeyId": "alias/logs"}, {"kmsKeyId": "arn:aws:kms:us-east-1:123456789012:alias/logs"},
    {"logGroupClass": "COLD"}, {"deletionProtectionEnabled": "yes"},
], ids=["no-tags", "51-tags", "long-key", "long-value", "aws-prefix", "bad-char", "alias", "alias-arn",
        "bad-class", "not-boolean"])
def test_create_log_group_settings_refused_by_the_model_rules(fake, client, params):
    with pytest.raises(ClientError) as info:
        client.create_log_group(logGroupName=GROUP, **params)
    assert info.value.response["Error"]["Code"] == INVALID
    assert fake.groups() == [] and fake.create_log_group_requests == [{"logGroupName": GROUP, **params}]


def test_create_log_group_settings_stored_described_and_a_missing_key_refused(client):
    with StrictFake(kms_keys={KEY_ARN}) as keyed:
        keyed_client = make_client(keyed)
        with pytest.raises(ClientError, match="KMS key does not exist"):
            keyed_client.create_log_group(logGroupName="other", kmsKeyId=KEY_ARN.replace("1234abcd", "5678abcd"))
        params = {"tags": {"Équipe": "données 2024", "k": ""}, "kmsKeyId": KEY_ARN, "logGroupClass": "DELIVERY",
                  "deletionProtectionEnabled": True}
        keyed_client.create_log_group(logGroupName=GROUP, **params)
        assert keyed.group_settings(GROUP) == params
        (group,) = keyed_client.describe_log_groups()["logGroups"]
        assert (group["kmsKeyId"], group["logGroupClass"], group["deletionProtectionEnabled"]) == (
            KEY_ARN, "DELIVERY", True)


@pytest.mark.parametrize("operation, body", [
    ("CreateLogGroup", {"logGroupName": GROUP, "logGroupClas": "STANDARD"}),
    ("PutLogEvents", {"logGroupName": GROUP, "logStreamName": STREAM, "logEvents": [ev(NOW)], "entities": {}}),
])
def test_unknown_members_refused(fake, stream, operation, body):
    """A misspelt member would be silently ignored by a lenient service: the fake refuses it."""
    status, answer = raw_call(fake, operation, body)
    assert status == 400 and answer["__type"] == "SerializationException"


ENTITY = {"keyAttributes": {"Type": "Service", "Name": "checkout", "Environment": "prod"},
          "attributes": {"PlatformType": "Generic"}}


@pytest.mark.parametrize("entity", [
    {"keyAttributes": {"Type": "Service"}},
    {"keyAttributes": {"Type": "Service", "Name": "a", "Environment": "b", "Identifier": "c", "ResourceType": "d"}},
    {"keyAttributes": {"Type": "Service", "Owner": "me"}},
    {"keyAttributes": {"Type": "Service", "Name": ""}},
    {"keyAttributes": {"Type": "Service", "Name": "n" * 513}},
    {**ENTITY, "attributes": {f"a{i}": "v" for i in range(11)}},
    {**ENTITY, "attributes": {"a" * 257: "v"}},
    {**ENTITY, "other": {}},
    "Service",
], ids=["one-key", "five-keys", "unknown-key", "empty-value", "long-value", "11-attributes", "long-attribute",
        "extra-member", "not-a-structure"])
def test_entity_refused_by_the_model_rules(fake, stream, entity):
    status, answer = raw_call(fake, "PutLogEvents", {"logGroupName": GROUP, "logStreamName": STREAM,
                                                     "logEvents": [ev(NOW)], "entity": entity})
    assert status == 400 and answer["__type"] == INVALID
    assert fake.events(GROUP, STREAM) == [] and fake.put_requests[-1]["entity"] == entity


def test_entity_recorded_and_reject_entity_fault_still_stores_the_events(fake, client, stream):
    assert "rejectedEntityInfo" not in client.put_log_events(logGroupName=GROUP, logStreamName=STREAM,
                                                             logEvents=[ev(NOW, "a")], entity=ENTITY)
    fake.inject("PutLogEvents", Fault.reject_entity("UnsupportedLogGroupType"))
    resp = client.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=[ev(NOW, "b")], entity=ENTITY)
    assert resp["rejectedEntityInfo"] == {"errorType": "UnsupportedLogGroupType"}
    assert fake.events(GROUP, STREAM) == [(NOW, "a"), (NOW, "b")]
    assert [r["entity"] for r in fake.put_requests] == [ENTITY, ENTITY]
