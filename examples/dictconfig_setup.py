"""``logging.config.dictConfig``: the handler configured from a dict (or JSON/YAML).

Every handler keyword can be given as a key next to ``class``; numbers and
booleans may be strings, as they often are when read from a file.

Run it: ``python examples/dictconfig_setup.py``
"""
import logging
import logging.config
import os

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "cloudwatch": {
            "class": "cwlhandler.CloudWatchLogsHandler",
            "level": "INFO",
            "formatter": "plain",
            "log_group": "/examples/dictconfig",
            # {logger} is filled in per record: one stream per logger name.
            "log_stream": "{hostname}/{logger}",
            "retention_days": "14",
            "flush_interval": "2.5",
            "max_buffer_records": 50_000,
            "on_full": "drop_oldest",
            # Unset in AWS (the region's endpoint); set it to use a local emulator.
            "endpoint_url": os.environ.get("CWL_ENDPOINT_URL"),
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "cloudwatch"]},
    "loggers": {
        # Chatty libraries can be kept out; the handler's own HTTP calls never
        # come back to it anyway.
        "urllib3": {"level": "WARNING"},
    },
}


if __name__ == "__main__":
    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    logging.config.dictConfig(LOGGING)

    logging.getLogger("shop.orders").info("order %d placed", 7)
    logging.getLogger("shop.payments").info("payment for order %d captured", 7)
    logging.getLogger("shop.payments").debug("below the configured level: not shipped")
    logging.getLogger("shop.orders").warning("order %d shipped late", 7)

    # What interpreter exit does anyway: flush and close every handler.
    logging.shutdown()
    print_events("/examples/dictconfig")
