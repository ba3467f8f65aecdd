#!/usr/bin/env python
"""The cost of ``metrics.put_metric`` beside ``logger.info``: one run, one handler, ratios.

    python benchmarks/metrics.py                    # 50,000 calls per case, 5 interleaved rounds
    python benchmarks/metrics.py --n 20000 --rounds 3

One process makes one ``CloudWatchLogsHandler`` (its defaults) against the counting endpoint
(``endpoint.py``, in its own process).  Each round runs every case once, in turn, N calls each:

- ``logger.info``: run.py's small record (about 120 bytes with its formatter) through the handler;
- ``put_metric``: ``metrics.put_metric("Latency", value, "Milliseconds")``;
- ``put_metric, dimensions=``: the same with a per-call dimensions dict (validated on first use);
- ``with_dimensions``: ``put_metric`` on a ``Metrics`` made once by ``with_dimensions``;
- ``timed``: ``with metrics.timed("Work"): pass`` (two clock reads and a put);
- ``dict append``: a list append in a dict of lists under a lock: the floor of "a dictionary update".

``caller`` is the CPU time of the calling thread per call (``time.thread_time``), ``wall`` its wall
time; ``shipping`` is all other CPU per call, from the start of the case to the end of the
``flush()`` that follows it (making the EMF documents or request bodies, and sending them).  Ratios
are each case over ``logger.info``, medians of the rounds.  ``--one`` is the child that
``instructions.py --contenders ...,metrics`` runs under callgrind: N puts, then ``close()``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import run  # noqa: E402  (the counting endpoint, the record and its formatter)


def make_handler(endpoint: str):
    from cwlhandler import CloudWatchLogsHandler

    handler = CloudWatchLogsHandler(log_group="bench", log_stream=f"metrics-bench-{os.getpid()}",
                                    endpoint_url=endpoint, region_name="us-east-1")
    handler.setFormatter(logging.Formatter(run.FMT))
    logger = logging.getLogger("bench.app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    metrics = handler.metrics("Bench", {"Service": "api"})
    logger.info("warm-up")  # client, threads, streams and caches exist before anything is timed
    metrics.put_metric("Latency", 1.0, "Milliseconds")
    metrics.put_metric("Latency", 1.0, "Milliseconds", dimensions={"Operation": "pay"})
    handler.flush()
    return handler, logger, metrics


def cases(logger: logging.Logger, metrics) -> Dict[str, Callable[[int], None]]:
    pad = run._pad_for(run.PAD_SMALL)
    pay = metrics.with_dimensions({"Operation": "pay"})
    lock = threading.Lock()
    table: Dict[str, List[float]] = {}

    def log_info(n: int) -> None:
        info, mono = logger.info, time.monotonic_ns
        for i in range(n):
            info("seq=%d t=%d %s", i, mono(), pad)

    def put(n: int) -> None:
        put_metric = metrics.put_metric
        for i in range(n):
            put_metric("Latency", i * 0.5, "Milliseconds")

    def put_dimensions(n: int) -> None:
        put_metric = metrics.put_metric
        for i in range(n):
            put_metric("Latency", i * 0.5, "Milliseconds", dimensions={"Operation": "pay"})

    def put_child(n: int) -> None:
        put_metric = pay.put_metric
        for i in range(n):
            put_metric("Latency", i * 0.5, "Milliseconds")

    def timed(n: int) -> None:
        for _ in range(n):
            with metrics.timed("Work"):
                pass

    def dict_append(n: int) -> None:
        for i in range(n):
            with lock:
                values = table.get("Latency")
                if values is None:
                    values = table["Latency"] = []
                values.append(i * 0.5)
        table.clear()

    return {"logger.info": log_info, "put_metric": put, "put_metric, dimensions=": put_dimensions,
            "with_dimensions": put_child, "timed": timed, "dict append": dict_append}


def measure(handler, work: Callable[[int], None], n: int) -> Dict[str, float]:
    """Per call: caller CPU and wall time of the loop; all other CPU until flush() returns.

    That includes flush() itself: it makes the documents of what is left on the calling thread.
    """
    p0, w0, c0 = time.process_time(), time.perf_counter(), time.thread_time()
    work(n)
    wall, caller = time.perf_counter() - w0, time.thread_time() - c0
    if not handler.flush(timeout=60):
        raise SystemExit("flush timed out: the endpoint did not acknowledge everything")
    shipping = time.process_time() - p0 - caller
    return {"caller": caller / n * 1e6, "wall": wall / n * 1e6, "shipping": shipping / n * 1e6}


def one(args: argparse.Namespace) -> int:
    """The callgrind child: warm, then N puts, then close; says whether every document was acknowledged."""
    handler, _, metrics = make_handler(args.endpoint)
    put_metric = metrics.put_metric
    for i in range(args.n):
        put_metric("Latency", i * 0.5, "Milliseconds")
    handler.close()
    stats = handler.stats()
    delivered = args.n if stats["dropped"] == 0 and stats["buffered"] == 0 else None
    print(json.dumps({"values_delivered": delivered, "stats": stats}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="calls per case per round (default 50,000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5); medians reported")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(name, value)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if args.one:
        return one(args)
    print(f"command: {' '.join([os.path.basename(sys.executable)] + [os.path.relpath(sys.argv[0])] + sys.argv[1:])}")
    proc, endpoint = run.start_endpoint()
    try:
        handler, logger, metrics = make_handler(endpoint)
        work = cases(logger, metrics)
        results: Dict[str, List[Dict[str, float]]] = {name: [] for name in work}
        for r in range(args.rounds):
            order = list(work) if r % 2 == 0 else list(reversed(work))
            for name in order:
                results[name].append(measure(handler, work[name], args.n))
        handler.close()
        stats = handler.stats()
    finally:
        proc.terminate()
        proc.wait(10)
    if stats["dropped"]:
        raise SystemExit(f"the handler dropped events: {stats['dropped_by_reason']}")
    median = {name: {k: statistics.median(m[k] for m in rows) for k in rows[0]} for name, rows in results.items()}
    base = median["logger.info"]
    print(f"{args.n:,} calls per case, {args.rounds} interleaved rounds, medians; every event acknowledged "
          f"({stats['sent']:,} sent)\n")
    print(f"  {'case':<26}{'caller us':>10}{'wall us':>10}{'shipping us':>13}{'caller ratio':>14}{'+shipping':>11}")
    for name, m in median.items():
        print(f"  {name:<26}{m['caller']:>10.3f}{m['wall']:>10.3f}{m['shipping']:>13.3f}"
              f"{m['caller'] / base['caller']:>14.3f}"
              f"{(m['caller'] + m['shipping']) / (base['caller'] + base['shipping']):>11.3f}")
    print("\n  ratios are over logger.info: caller CPU, and caller + shipping CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
