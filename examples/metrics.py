"""Custom metrics in Embedded Metric Format (EMF), shipped by the same handler as the logs.

Run it: ``python examples/metrics.py`` (starts an embedded emulator unless
``CWL_ENDPOINT_URL`` is set; needs ``pip install 'cwlhandler[local]'``).
It also measures what a ``put_metric`` costs the caller beside a ``logger.info``.
"""
import json
import logging
import os
import time

from cwlhandler import CloudWatchLogsHandler, Metrics

log = logging.getLogger("shop")


def setup() -> CloudWatchLogsHandler:
    cloudwatch = CloudWatchLogsHandler(
        log_group="/examples/metrics",
        log_stream="app",
        # EMF documents go to a stream of their own (by default "metrics/{hostname}/{program}/{pid}").
        metrics_stream="metrics",
        # Unset in AWS (the region's endpoint); set it to use a local emulator.
        endpoint_url=os.environ.get("CWL_ENDPOINT_URL"),
    )
    log.setLevel(logging.INFO)
    log.addHandler(cloudwatch)
    return cloudwatch


def checkout(metrics: Metrics, order_id: int, total: float) -> None:
    with metrics.timed("CheckoutTime"):  # milliseconds, also when the block raises
        metrics.put_metric("Orders", 1, "Count")
        metrics.put_metric("OrderTotal", total)
        metrics.put_metric("Latency", 20 + order_id, "Milliseconds", dimensions={"Operation": "pay"})
        log.info("order %d placed, total %.2f", order_id, total)


def cost_per_call(metrics: Metrics, n: int = 20_000) -> None:
    """CPU time of the calling thread per call: put_metric is a dict update, logger.info formats a record."""
    start = time.thread_time()
    for i in range(n):
        metrics.put_metric("BenchValue", i, "Count")
    put = (time.thread_time() - start) / n
    start = time.thread_time()
    for i in range(n):
        log.info("benchmark record %d", i)
    info = (time.thread_time() - start) / n
    print(f"cost per call: put_metric {put * 1e6:.2f} us, logger.info {info * 1e6:.2f} us, ratio {put / info:.2f}")


def print_metrics(documents: list) -> None:
    """What CloudWatch extracts from the documents: one line per metric, with its statistics."""
    series: dict = {}
    for doc in documents:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            dims = ",".join(f"{d}={doc[d]}" for d in directive["Dimensions"][0])
            for definition in directive["Metrics"]:
                value = doc[definition["Name"]]
                key = (directive["Namespace"], dims, definition["Name"], definition["Unit"])
                series.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    print(f"# {len(documents)} EMF documents, {len(series)} metrics")
    for (namespace, dims, name, unit), values in sorted(series.items()):
        print(f"{namespace}\t{dims}\t{name}\t{unit}\t"
              f"count={len(values)} sum={sum(values):g} min={min(values):g} max={max(values):g}")


if __name__ == "__main__":
    from _demo import ensure_endpoint, events

    ensure_endpoint()
    cloudwatch = setup()
    # A namespace, a dimension every value gets, and a property every document carries.
    shop = cloudwatch.metrics("Shop", {"Service": "checkout"})
    shop.set_property("Version", "1.4.2")
    for order_id, total in [(1, 19.99), (2, 1500.00), (3, 5.25)]:
        checkout(shop, order_id, total)
    cost_per_call(shop)
    # Values are shipped once per flush_interval; close() (and at exit, logging.shutdown()) ships the rest.
    cloudwatch.close()
    print_metrics([json.loads(m) for stream, m in events("/examples/metrics") if stream == "metrics"])
