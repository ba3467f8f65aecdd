"""Structured logging: one JSON object per event, fields from ``extra=``.

CloudWatch Logs Insights discovers the fields of JSON events by itself, so
every ``extra=`` key becomes queryable without a parse pattern::

    fields @timestamp, level, message, order_id, exception.type
    | filter service = "checkout" and level = "ERROR"
    | sort @timestamp desc

``static`` adds constant fields (service, environment) to every event.

The same with ``dictConfig``::

    "formatters": {"json": {"()": "cwlhandler.jsonformat.JsonFormatter",
                            "static": {"service": "checkout", "env": "prod"}}},

Run it: ``python examples/structured_json.py``
"""
import logging
import os

from cwlhandler import CloudWatchLogsHandler
from cwlhandler.jsonformat import JsonFormatter


def setup_logging() -> CloudWatchLogsHandler:
    cloudwatch = CloudWatchLogsHandler(
        log_group="/examples/structured",
        log_stream="{hostname}/{program}/{pid}",
        # Unset in AWS (the region's endpoint); set it to use a local emulator.
        endpoint_url=os.environ.get("CWL_ENDPOINT_URL"),
    )
    cloudwatch.setFormatter(JsonFormatter(static={"service": "checkout", "env": "dev"}))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(cloudwatch)
    return cloudwatch


log = logging.getLogger("checkout.payments")


def charge(order_id: str, amount_cents: int, card: str) -> None:
    context = {"order_id": order_id, "amount_cents": amount_cents}
    log.info("charging card", extra=context)
    try:
        if card.startswith("0000"):
            raise ValueError("card declined")
    except ValueError:
        # exc_info becomes an "exception" object: type, message, traceback.
        log.exception("charge failed", extra={**context, "card_last4": card[-4:]})
    else:
        log.info("charged", extra={**context, "tags": ["card", "eu"]})


if __name__ == "__main__":
    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    cloudwatch = setup_logging()
    charge("o-1001", 2599, "4242424242424242")
    charge("o-1002", 120000, "0000111122223333")
    cloudwatch.close()
    print_events("/examples/structured")
