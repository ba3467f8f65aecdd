"""Plain ``logging``: add a CloudWatchLogsHandler to the root logger.

Run it: ``python examples/plain_logging.py`` (starts an embedded emulator
unless ``CWL_ENDPOINT_URL`` is set; needs ``pip install 'cwlhandler[local]'``).
"""
import logging
import os

from cwlhandler import CloudWatchLogsHandler


def setup_logging() -> CloudWatchLogsHandler:
    cloudwatch = CloudWatchLogsHandler(
        log_group="/examples/plain",
        # The default stream name; one stream per process.
        log_stream="{hostname}/{program}/{pid}",
        retention_days=30,  # applied when the handler creates the group
        # Unset in AWS (the region's endpoint); set it to use a local emulator.
        endpoint_url=os.environ.get("CWL_ENDPOINT_URL"),
    )
    # CloudWatch stores a timestamp with each event: no need for %(asctime)s.
    cloudwatch.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(cloudwatch)
    root.addHandler(logging.StreamHandler())  # keep a local copy on stderr too
    return cloudwatch


log = logging.getLogger("shop.orders")


def place_order(order_id: int, total: float) -> None:
    log.info("order %d placed, total %.2f", order_id, total)
    if total > 1000:
        log.warning("order %d needs a manual review", order_id)


if __name__ == "__main__":
    from _demo import ensure_endpoint, print_events

    ensure_endpoint()
    cloudwatch = setup_logging()
    place_order(1, 19.99)
    place_order(2, 1500.00)
    try:
        1 / 0  # noqa: B018 (raises on purpose, for log.exception)
    except ZeroDivisionError:
        log.exception("could not compute the discount")
    # Records are shipped in the background; at exit, logging.shutdown() flushes
    # them.  Here we close the handler explicitly to read the events back.
    cloudwatch.close()
    print_events("/examples/plain")
