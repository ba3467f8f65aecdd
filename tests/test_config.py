"""Construction: keywords and dictConfig, validation errors that name the setting, no I/O."""
from __future__ import annotations

import logging
import logging.config

import pytest

from cwlhandler import CloudWatchLogsHandler


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"log_group": ""}, "log_group"),
        ({"log_group": "bad name!"}, "log_group"),
        ({"log_group": "aws/lambda"}, "log_group"),
        ({"log_group": "x" * 513}, "log_group"),
        ({"log_group": "{nope}"}, "log_group"),
        ({"log_stream": "a:b"}, "log_stream"),
        ({"log_stream": "a*"}, "log_stream"),
        ({"log_stream": "{pid!r}"}, "log_stream"),
        ({"max_batch_count": 10_001}, "max_batch_count"),
        ({"max_batch_count": 0}, "max_batch_count"),
        ({"max_batch_bytes": 1_048_577}, "max_batch_bytes"),
        ({"max_event_bytes": 2_000_000}, "max_event_bytes"),
        ({"max_event_bytes": 500_000, "max_batch_bytes": 100_000}, "max_event_bytes"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_buffer_records": "lots"}, "max_buffer_records"),
        ({"on_full": "explode"}, "on_full"),
        ({"oversize": "shrink"}, "oversize"),
        ({"retention_days": 2}, "retention_days"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"shutdown_timeout": "soon"}, "shutdown_timeout"),
        ({"create_log_group": "maybe"}, "create_log_group"),
        ({"endpoint_url": "ftp://127.0.0.1"}, "endpoint_url"),
    ],
)
def test_invalid_settings_fail_at_construction_naming_the_setting(kwargs, setting):
    kwargs.setdefault("log_group", "good")
    with pytest.raises(ValueError, match=setting):
        CloudWatchLogsHandler(region_name="us-east-1", **kwargs)


def test_missing_region_is_a_construction_error(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ValueError, match="region_name"):
        CloudWatchLogsHandler("good")


def test_dictconfig_accepts_plain_strings_and_delivers(fake, logger):
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "cw": {
                    "class": "cwlhandler.CloudWatchLogsHandler",
                    "log_group": "dict-group",
                    "log_stream": "{logger}",
                    "endpoint_url": fake.endpoint_url,
                    "region_name": "us-east-1",
                    "flush_interval": "0.05",
                    "max_batch_count": "500",
                    "max_concurrency": "2",
                    "create_log_group": "true",
                    "retention_days": "7",
                    "on_full": "drop_newest",
                    "shutdown_timeout": "5",
                    "level": "INFO",
                }
            },
            "loggers": {logger.name: {"handlers": ["cw"], "level": "DEBUG", "propagate": False}},
        }
    )
    (handler,) = logger.handlers
    try:
        assert handler.settings.max_batch_count == 500
        assert handler.settings.flush_interval == 0.05
        assert handler.settings.retention_days == 7
        logger.debug("filtered by the handler level")
        for i in range(1200):
            logger.info("dict %d", i)
        assert handler.flush(10)
        # Parallel requests may store records of the same millisecond in either order.
        stored = fake.events("dict-group", logger.name)
        stamps_in_logged_order = [ts for ts, _ in sorted(stored, key=lambda e: int(e[1].split()[1]))]
        assert stamps_in_logged_order == sorted(stamps_in_logged_order)
        assert sorted(int(m.split()[1]) for _, m in stored) == list(range(1200))
        assert fake.retention("dict-group") == 7
        assert max(r["count"] for r in fake.put_requests) <= 500
    finally:
        handler.close()


def test_construction_and_idle_close_make_no_request(fake):
    handler = CloudWatchLogsHandler("idle", endpoint_url=fake.endpoint_url, region_name="us-east-1")
    assert handler.flush(1) is True
    handler.close()
    handler.close()  # idempotent
    assert sum(fake.calls.values()) == 0
    assert handler.stats()["emitted"] == 0


def test_stream_names_from_record_placeholders_are_sanitised(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, log_group="{level}-grp", log_stream="{logger}/{level}/{date}")
    logger.addHandler(handler)
    odd = logging.getLogger(logger.name + ".odd:name*")
    odd.propagate = True
    record_logger = logger
    record_logger.warning("w")
    odd.error("e")
    assert handler.flush(10)
    assert fake.groups() == ["ERROR-grp", "WARNING-grp"]
    (warn_stream,) = fake.streams("WARNING-grp")
    (err_stream,) = fake.streams("ERROR-grp")
    assert warn_stream.startswith(f"{logger.name}/WARNING/20")
    assert ":" not in err_stream and "*" not in err_stream
    assert err_stream.startswith(f"{logger.name}.odd_name_/ERROR/")
    assert [m for _, m in fake.events("ERROR-grp", err_stream)] == ["e"]


def test_a_refused_configuration_leaves_nothing_for_logging_shutdown(capfd):
    with pytest.raises(ValueError) as refused:
        CloudWatchLogsHandler(log_group="g", region_name="us-east-1", on_full="bogus")
    # The traceback keeps the half-made object alive, as an uncaught error at start-up would.
    assert refused.tb is not None
    logging.shutdown(list(logging._handlerList))  # what atexit does
    assert "Error" not in capfd.readouterr().err
