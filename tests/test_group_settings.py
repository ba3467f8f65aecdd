"""Log-group settings at creation (tags, KMS key, class, deletion protection) and the PutLogEvents entity.

Over real HTTP to the strict fake, which validates both by the API model's rules and records them, and to moto
(which stores tags and the KMS key, and ignores the rest).
"""
from __future__ import annotations

import copy
import json
import logging
import logging.config
import time

import botocore.loaders
import botocore.model
import pytest

from cwlhandler import CloudWatchLogsHandler
from cwlhandler.config import Settings, check_api_members
from cwlhandler.planner import body_tail, request_body
from helpers import logs_client, wait_until
from strict_fake import Fault, StrictFake

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TAGS = {"team": "payments", "Équipe": "données 2024", "cost:center": "", "a-b_c.d/e=f+g@h": "x y"}
ENTITY = {
    "keyAttributes": {"Type": "Service", "Name": "checkout", "Environment": "ec2:default"},
    "attributes": {"PlatformType": "AWS::EC2", "EC2.InstanceId": "i-0123456789abcdef0"},
}
ALL_SETTINGS = {"log_group_tags": TAGS, "kms_key_id": KEY_ARN, "log_group_class": "INFREQUENT_ACCESS",
                "deletion_protection": True}
ALL_PARAMS = {"tags": TAGS, "kmsKeyId": KEY_ARN, "logGroupClass": "INFREQUENT_ACCESS",
              "deletionProtectionEnabled": True}


def ship_one(handler: CloudWatchLogsHandler, logger: logging.Logger, message: str = "hello") -> None:
    logger.addHandler(handler)
    logger.info(message)
    assert handler.flush(timeout=10)


# ---- log-group settings reach CreateLogGroup ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, params", [
    ({}, {}),
    ({"log_group_tags": TAGS}, {"tags": TAGS}),
    ({"kms_key_id": KEY_ARN}, {"kmsKeyId": KEY_ARN}),
    ({"log_group_class": "STANDARD"}, {"logGroupClass": "STANDARD"}),
    ({"log_group_class": "INFREQUENT_ACCESS"}, {"logGroupClass": "INFREQUENT_ACCESS"}),
    ({"deletion_protection": True}, {"deletionProtectionEnabled": True}),
    ({"deletion_protection": False}, {}),
    (ALL_SETTINGS, ALL_PARAMS),
], ids=["none", "tags", "kms", "standard", "infrequent", "protected", "unprotected", "all"])
def test_each_setting_reaches_create_log_group_exactly(fake, make_handler, logger, kwargs, params):
    ship_one(make_handler(fake.endpoint_url, **kwargs), logger)
    assert fake.create_log_group_requests == [{"logGroupName": "test-group", **params}]
    assert fake.group_settings("test-group") == params
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["hello"]


def test_a_group_that_existed_gets_none_of_the_settings(fake, make_handler, logger):
    logs_client(fake.endpoint_url).create_log_group(logGroupName="test-group")
    ship_one(make_handler(fake.endpoint_url, retention_days=7, **ALL_SETTINGS), logger)
    assert fake.calls["CreateLogGroup"] == 1  # the stream was missing, not the group: no create call of ours
    assert fake.group_settings("test-group") == {} and fake.retention("test-group") is None


def test_a_racing_creator_keeps_its_group_as_it_made_it(fake, make_handler, logger):
    """Mirrors the retention test: the handler's CreateLogGroup carries the settings and is refused as existing."""
    logs_client(fake.endpoint_url).create_log_group(logGroupName="test-group")
    fake.inject("CreateLogStream", Fault.error("ResourceNotFoundException", 400))  # the group looked missing
    ship_one(make_handler(fake.endpoint_url, retention_days=7, **ALL_SETTINGS), logger, "into the racer's group")
    assert fake.create_log_group_requests == [{"logGroupName": "test-group"}, {"logGroupName": "test-group",
                                                                              **ALL_PARAMS}]
    assert fake.group_settings("test-group") == {} and fake.retention("test-group") is None
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["into the racer's group"]


def test_a_kms_key_the_service_refuses_holds_records_until_it_is_fixed(make_handler, logger, capsys):
    """CreateLogGroup refused as invalid (no such key, or its policy keeps CloudWatch Logs out) needs a person:
    the records stay buffered and are retried slowly, not halved and dropped as 'rejected'."""
    with StrictFake(kms_keys=set()) as fake:
        handler = make_handler(fake.endpoint_url, kms_key_id=KEY_ARN)
        logger.addHandler(handler)
        logger.info("encrypted")
        assert wait_until(lambda: fake.calls["CreateLogGroup"] >= 2, timeout=10)
        stats = handler.stats()
        assert (stats["emitted"], stats["sent"], stats["dropped"]) == (1, 0, 0), stats
        fake.kms_keys.add(KEY_ARN)  # the operator fixed the key
        assert handler.flush(timeout=10)
        assert [m for _, m in fake.events("test-group", "test-stream")] == ["encrypted"]
        assert fake.group_settings("test-group") == {"kmsKeyId": KEY_ARN}
        assert handler.stats()["dropped"] == 0
    err = capsys.readouterr().err
    assert "cannot ship to log group 'test-group'" in err and "KMS key does not exist" in err, err
    assert "the KMS key's policy" in err and "rejected" not in err, err


# ---- validation at construction -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, setting", [
    ({"log_group_tags": {f"k{i}": "v" for i in range(51)}}, "log_group_tags"),
    ({"log_group_tags": {"": "v"}}, "log_group_tags"),
    ({"log_group_tags": {"k" * 129: "v"}}, "log_group_tags"),
    ({"log_group_tags": {"k": "v" * 257}}, "log_group_tags"),
    ({"log_group_tags": {"aws:owner": "me"}}, "log_group_tags"),
    ({"log_group_tags": {"AWS:owner": "me"}}, "log_group_tags"),
    ({"log_group_tags": {"a*b": "v"}}, "log_group_tags"),
    ({"log_group_tags": {"k": "tab\there"}}, "log_group_tags"),
    ({"log_group_tags": {"k": 5}}, "log_group_tags"),
    ({"log_group_tags": "team=payments"}, "log_group_tags"),
    ({"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "kms_key_id"),
    ({"kms_key_id": "alias/logs"}, "kms_key_id"),
    ({"kms_key_id": "arn:aws:kms:us-east-1:123456789012:alias/logs"}, "kms_key_id"),
    ({"kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/" + "a" * 220}, "kms_key_id"),
    ({"log_group_class": "DELIVERY"}, "log_group_class"),
    ({"log_group_class": "COLD"}, "log_group_class"),
    ({"deletion_protection": "maybe"}, "deletion_protection"),
    ({"entity": {"attributes": {"a": "b"}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service"}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service", "Name": "a", "Environment": "b", "Identifier": "c",
                                   "ResourceType": "d"}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service", "Service": "checkout"}}}, "entity"),
    ({"entity": {"keyAttributes": {"Name": "checkout", "Environment": "prod"}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service", "Name": ""}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service", "Name": "n" * 513}}}, "entity"),
    ({"entity": {"keyAttributes": {"Type": "Service", "Name": 7}}}, "entity"),
    ({"entity": {**ENTITY, "attributes": {f"a{i}": "v" for i in range(11)}}}, "entity"),
    ({"entity": {**ENTITY, "attributes": {"a" * 257: "v"}}}, "entity"),
    ({"entity": {**ENTITY, "attributes": {"a": ""}}}, "entity"),
    ({"entity": {**ENTITY, "extra": {}}}, "entity"),
    ({"entity": "Service/checkout"}, "entity"),
])
def test_bad_values_fail_at_construction_naming_the_setting(kwargs, setting):
    with pytest.raises(ValueError, match=f"^{setting}"):
        CloudWatchLogsHandler("good", region_name="us-east-1", **kwargs)


def test_what_the_validators_accept_the_strict_fake_accepts(fake):
    """The package's rules and the fake's (written separately from the API model) agree at the limits."""
    client = logs_client(fake.endpoint_url)
    tags = {f"k{i}": "v" * 256 for i in range(48)} | {"k" * 128: "", "Zoë 2": "ünï:cödé/=+-@"}
    entity = {"keyAttributes": {"Type": "Service", "Name": "n" * 512, "Environment": "e", "Identifier": "i"},
              "attributes": {f"{i}" * 256: "v" * 512 for i in range(10)}}
    settings = Settings(log_group_tags=tags, kms_key_id=KEY_ARN, log_group_class="STANDARD",
                        deletion_protection=True, entity=entity)
    client.create_log_group(logGroupName="limits", **settings.create_group_params)
    client.create_log_stream(logGroupName="limits", logStreamName="s")
    client.put_log_events(logGroupName="limits", logStreamName="s", entity=settings.entity,
                          logEvents=[{"timestamp": int(time.time() * 1000), "message": "m"}])
    assert fake.group_settings("limits")["tags"] == tags and fake.put_requests[-1]["entity"] == entity


def test_dictconfig_strings_and_nested_mappings_become_plain_settings(fake, logger):
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"cw": {
            "class": "cwlhandler.CloudWatchLogsHandler", "log_group": "dict-group", "log_stream": "s",
            "endpoint_url": fake.endpoint_url, "region_name": "us-east-1", "flush_interval": "0.05",
            "log_group_tags": {"team": "payments"}, "kms_key_id": KEY_ARN, "log_group_class": "infrequent_access",
            "deletion_protection": "yes", "entity": copy.deepcopy(ENTITY),
        }},
        "loggers": {logger.name: {"handlers": ["cw"], "level": "INFO", "propagate": False}},
    }
    logging.config.dictConfig(config)
    (handler,) = logger.handlers
    try:
        settings = handler.settings
        assert type(settings.log_group_tags) is dict and type(settings.entity["keyAttributes"]) is dict
        assert (settings.log_group_class, settings.deletion_protection) == ("INFREQUENT_ACCESS", True)
        logger.info("from dictConfig")
        assert handler.flush(timeout=10)
        assert fake.create_log_group_requests == [{"logGroupName": "dict-group", "tags": {"team": "payments"},
                                                   "kmsKeyId": KEY_ARN, "logGroupClass": "INFREQUENT_ACCESS",
                                                   "deletionProtectionEnabled": True}]
        assert [r["entity"] for r in fake.put_requests] == [ENTITY, ENTITY]  # refused (no stream), then stored
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("setting, text", [("log_group_class", "delivery"), ("deletion_protection", "maybe"),
                                           ("kms_key_id", "alias/logs"), ("entity", "Service=checkout"),
                                           ("log_group_tags", "team=payments")])
def test_dictconfig_refuses_a_bad_string_naming_the_setting(setting, text):
    config = {"version": 1, "handlers": {"cw": {"class": "cwlhandler.CloudWatchLogsHandler", "log_group": "g",
                                                "region_name": "us-east-1", setting: text}}}
    with pytest.raises(ValueError) as info:
        logging.config.dictConfig(config)
    assert str(info.value.__cause__).startswith(f"{setting}: "), info.value.__cause__


@pytest.mark.parametrize("setting, value, operation, member", [
    ("deletion_protection", True, "CreateLogGroup", "deletionProtectionEnabled"),
    ("log_group_class", "STANDARD", "CreateLogGroup", "logGroupClass"),
    ("entity", ENTITY, "PutLogEvents", "entity"),
])
def test_a_setting_this_botocore_cannot_send_is_refused_at_construction(setting, value, operation, member):
    """botocore's serialiser (validation off, as in our client) fails with KeyError on a member it does not know:
    every batch would be dropped as an error.  An older botocore is told at construction instead."""
    data = copy.deepcopy(botocore.loaders.create_loader().load_service_model("logs", "service-2"))
    del data["shapes"][f"{operation}Request"]["members"][member]
    older = botocore.model.ServiceModel(data, "logs")
    settings = Settings(**{setting: value})
    with pytest.raises(ValueError, match=f"^{setting}: botocore .* does not know {operation}'s '{member}'"):
        check_api_members(settings, older)
    check_api_members(Settings(**{setting: value}), logs_client("http://127.0.0.1:9").meta.service_model)


# ---- the entity on the wire -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["prepared", "plain"])
def test_the_entity_goes_with_every_request_on_both_body_paths(fake, make_handler, logger, path):
    """Our own encoder (the handler's client) and botocore's serialiser (a user's client=, which validates)."""
    client = logs_client(fake.endpoint_url) if path == "plain" else None
    handler = make_handler(fake.endpoint_url, entity=ENTITY, client=client, max_batch_count=2)
    logger.addHandler(handler)
    for i in range(5):
        logger.info("quote \" and newline \n and \x02 %d", i)
    assert handler.flush(timeout=10)
    assert handler._clients.prepared_body is (path == "prepared")
    assert len(fake.events("test-group", "test-stream")) == 5
    stored = [r for r in fake.put_requests if r["outcome"] == "ok"]
    assert len(stored) >= 3 and all(r["entity"] == ENTITY for r in fake.put_requests), fake.put_requests


def test_without_an_entity_none_is_sent(fake, make_handler, logger):
    ship_one(make_handler(fake.endpoint_url), logger)
    assert fake.put_requests and all(r["entity"] is None for r in fake.put_requests)


@pytest.mark.parametrize("messages", [["plain"], ["quote \" newline \n"], ["control \x02"], ["placeholder \x01"]],
                         ids=["plain", "bulk-escaped", "escaped", "placeholder"])
def test_request_body_with_the_entity_is_the_json_botocore_would_send(messages):
    events = [(1000 + i, m, len(m)) for i, m in enumerate(messages)]
    body = json.loads(request_body("g", "s", events, body_tail(ENTITY)))
    assert body == {"logGroupName": "g", "logStreamName": "s", "entity": ENTITY,
                    "logEvents": [{"timestamp": t, "message": m} for t, m, _ in events]}
    assert request_body("g", "s", events, body_tail(None)) == request_body("g", "s", events)


def test_a_rejected_entity_is_counted_and_reported_once(fake, make_handler, logger, capsys):
    client = logs_client(fake.endpoint_url)
    client.create_log_group(logGroupName="test-group")
    client.create_log_stream(logGroupName="test-group", logStreamName="test-stream")
    fake.inject("PutLogEvents", *[Fault.reject_entity("InvalidKeyAttributes")] * 3)
    handler = make_handler(fake.endpoint_url, entity=ENTITY)
    logger.addHandler(handler)
    for i in range(3):
        logger.info("event %d", i)
        assert handler.flush(timeout=10)
    assert [m for _, m in fake.events("test-group", "test-stream")] == ["event 0", "event 1", "event 2"]
    stats = handler.stats()
    assert (stats["entity_rejected"], stats["sent"], stats["dropped"]) == (3, 3, 0), stats
    err = capsys.readouterr().err
    assert err.count("rejected the entity") == 1 and "(InvalidKeyAttributes)" in err, err
    assert "entity_rejected" in err, err


def test_moto_stores_tags_and_key_and_accepts_the_entity(moto_url, make_handler, logger):
    handler = make_handler(moto_url, log_group="moto-settings", entity=ENTITY, **ALL_SETTINGS)
    ship_one(handler, logger, "to moto")
    client = logs_client(moto_url)
    (group,) = client.describe_log_groups(logGroupNamePrefix="moto-settings")["logGroups"]
    assert group["kmsKeyId"] == KEY_ARN
    assert client.list_tags_log_group(logGroupName="moto-settings")["tags"] == TAGS
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"], stats["entity_rejected"]) == (1, 0, 0), stats
