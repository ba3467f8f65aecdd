#!/usr/bin/env python
"""cwlhandler benchmark: contenders side by side, one run, same workload, ratios.

    python benchmarks/run.py              # full run (several minutes)
    python benchmarks/run.py --quick      # smoke run (< 2 minutes)
    python benchmarks/run.py --repeat 5   # more repetitions, medians reported

Every (contender, workload) pair runs in its own fresh child process
(``run.py --one CONTENDER --workload W ...``) so CPU and peak RSS belong to that
contender alone; the parent starts the counting endpoint (benchmarks/endpoint.py)
in a separate process, interleaves the children, repeats, and reports medians
and ratios.  See benchmarks/README.md for the columns and the targets.
"""
from __future__ import annotations

# Only what a child uses is imported here: a `cold` child must start with nothing loaded that its
# contender's construction would load itself.  The parent side imports its own modules where used.
import argparse
import json
import os
import sys
import threading
import time
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTENDERS = ["floor_emit", "raw_botocore", "watchtower", "cwlhandler"]
WORKLOADS = ["small", "threads8", "large", "steady", "unreachable", "cold"]
WORKLOAD_CONTENDERS = {
    "small": CONTENDERS,
    "threads8": CONTENDERS,
    "large": CONTENDERS,
    "steady": ["floor_emit", "watchtower", "cwlhandler"],
    "unreachable": ["cwlhandler"],
    "cold": ["raw_botocore", "watchtower", "cwlhandler"],
}
# cold: the burst must outgrow cwlhandler's max_buffer_records (100,000) to show what a cold start costs.
FULL = {"small": 200_000, "threads8": 200_000, "large": 20_000, "steady_rate": 5_000, "steady_seconds": 10.0,
        "unreachable": 1_000_000, "cold": 200_000}
QUICK = {"small": 20_000, "threads8": 20_000, "large": 2_000, "steady_rate": 5_000, "steady_seconds": 2.0,
         "unreachable": 200_000, "cold": 200_000}
PAD_SMALL = 120  # formatted record length target, bytes
PAD_LARGE = 8192
CHILD_TIMEOUT = 600


# ============================================================================ child side
def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _http(endpoint: str, method: str, path: str) -> dict:
    import http.client
    from urllib.parse import urlparse

    u = urlparse(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None)
        return json.loads(conn.getresponse().read() or b"{}")
    finally:
        conn.close()


def _pad_for(target_len: int) -> str:
    import logging

    rec = logging.LogRecord("bench.app", logging.INFO, __file__, 1, "seq=%d t=%d %s",
                            (199_999, time.monotonic_ns(), ""), None)
    base = len(logging.Formatter(FMT).format(rec))
    return "x" * max(1, target_len - base)


def make_floor():
    import collections
    import logging

    class DequeHandler(logging.Handler):
        """The least a handler can cost the caller: format, append."""

        def __init__(self) -> None:
            super().__init__()
            self.records: "collections.deque[str]" = collections.deque()

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(self.format(record))

    return DequeHandler()


def _emit_loop(logger, start: int, count: int, pad: str) -> None:
    info = logger.info
    mono = time.monotonic_ns
    for i in range(start, start + count):
        info("seq=%d t=%d %s", i, mono(), pad)


def _run_burst(logger, n: int, pad: str, threads: int) -> dict:
    """N records as fast as the caller can log them, from ``threads`` threads."""
    if threads == 1:
        w0, c0 = time.perf_counter(), time.thread_time()
        _emit_loop(logger, 0, n, pad)
        return {"caller_wall_s": time.perf_counter() - w0, "caller_cpu_s": time.thread_time() - c0}
    barrier = threading.Barrier(threads + 1)
    cpu = [0.0] * threads
    per = n // threads

    def work(k: int) -> None:
        barrier.wait()
        c0 = time.thread_time()
        _emit_loop(logger, k * per, per if k < threads - 1 else n - per * (threads - 1), pad)
        cpu[k] = time.thread_time() - c0

    ts = [threading.Thread(target=work, args=(k,), name=f"app-{k}") for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    w0 = time.perf_counter()
    for t in ts:
        t.join()
    return {"caller_wall_s": time.perf_counter() - w0, "caller_cpu_s": sum(cpu)}


def _run_steady(logger, rate: int, seconds: float, pad: str) -> dict:
    """``rate`` records/s for ``seconds``, paced in 1 ms ticks; every call timed."""
    n = int(rate * seconds)
    lat = array("q", bytes(8 * n))
    info = logger.info
    mono = time.monotonic_ns
    pc = time.perf_counter_ns
    sleep = time.sleep
    c0 = time.thread_time()
    start = time.perf_counter()
    i = 0
    while i < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            a = pc()
            info("seq=%d t=%d %s", i, mono(), pad)
            lat[i] = pc() - a
            i += 1
        if i < n:
            nxt = start + i / rate
            delay = nxt - time.perf_counter()
            if delay > 0:
                sleep(min(delay, 0.001))
    wall = time.perf_counter() - start
    cpu = time.thread_time() - c0
    s = sorted(lat)
    return {
        "caller_wall_s": wall,
        "caller_cpu_s": cpu,
        "emit_sum_s": sum(lat) / 1e9,
        "emit_p50_us": s[n // 2] / 1e3,
        "emit_p99_us": s[min(n - 1, int(n * 0.99))] / 1e3,
        "emit_max_us": s[-1] / 1e3,
        "achieved_rate": n / wall,
    }


def _write_result(res: dict) -> None:
    sys.stdout.write(json.dumps(res, default=str) + "\n")
    sys.stdout.flush()


def _construct(out: dict, make):
    """Call ``make()``, the contender's start-up (its imports included), and time it.

    ``construct_time`` is on ``time.time()``, the clock the endpoint stamps its first acknowledgement
    with.  Returns what ``make()`` made and ``(process_time, perf_counter)`` taken before it.
    """
    p0, w0, t0 = time.process_time(), time.perf_counter(), time.thread_time()
    out["construct_time"] = time.time()
    made = make()
    out["construct_s"] = time.perf_counter() - w0
    out["construct_cpu_s"] = time.thread_time() - t0
    return made, p0, w0


def _make_handler(contender: str, group: str, stream: str, endpoint: str, out: dict):
    if contender == "floor_emit":
        return make_floor()
    if contender == "watchtower":
        import boto3
        import watchtower

        client = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
        return watchtower.CloudWatchLogHandler(log_group_name=group, log_stream_name=stream, boto3_client=client)
    if contender == "cwlhandler":
        sys.path.insert(0, ROOT)
        from cwlhandler import CloudWatchLogsHandler

        handler = CloudWatchLogsHandler(log_group=group, log_stream=stream, endpoint_url=endpoint,
                                        region_name="us-east-1")
        out["settings"] = {"max_buffer_records": handler.settings.max_buffer_records,
                           "max_buffer_bytes": handler.settings.max_buffer_bytes,
                           "shutdown_timeout": handler.settings.shutdown_timeout,
                           "flush_interval": handler.settings.flush_interval,
                           "package": os.path.dirname(sys.modules["cwlhandler"].__file__)}
        return handler
    raise SystemExit(f"unknown contender {contender}")


def child(args: argparse.Namespace) -> "dict | None":
    """One (contender, workload) run; its result, or None when the exit hook of a cold run writes it."""
    contender, workload, n = args.one, args.workload, args.n
    cold = workload == "cold"
    at_exit: dict = {}
    if cold and contender != "raw_botocore":
        import atexit

        # atexit calls the last registered first: registered before logging is imported, this runs after
        # logging.shutdown() has flushed and closed the handler at interpreter exit, as in an application.
        assert "logging" not in sys.modules, "logging already imported: the exit hook would run too early"
        atexit.register(lambda: at_exit and _write_result(_finish(**at_exit)))
    import logging

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    if not cold:
        import boto3  # noqa: F401  (imported before the window for every warm contender)

    pad = _pad_for(PAD_LARGE if workload == "large" else PAD_SMALL)
    group = "bench"
    stream = f"{contender}-{workload}-{os.getpid()}"
    endpoint = args.endpoint
    out: dict = {"contender": contender, "workload": workload, "n": n, "pid": os.getpid()}

    logger = logging.getLogger("bench.app")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    formatter = logging.Formatter(FMT)

    if contender == "raw_botocore":
        return _child_raw(args, out, logger, formatter, pad, group, stream)

    out["modules_before_construction"] = len(sys.modules)
    handler, p_made, w_made = _construct(out, lambda: _make_handler(contender, group, stream, endpoint, out))
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    if contender != "floor_emit" and workload not in ("unreachable", "cold"):
        # Warm up: clients, threads and the log stream exist before the timed window, as in a
        # process that has been running for a while; one-time start-up costs are not compared.
        logger.info("warm-up")
        handler.flush()
    if workload not in ("unreachable", "cold"):  # the parent resets the endpoint before a cold child starts
        _http(endpoint, "POST", "/reset?track=" + ("1" if workload == "steady" else "0"))
    elif workload == "unreachable" and contender == "cwlhandler":
        # The client and threads exist before the baseline is read: one record, and the first
        # (refused) request attempt shows the client was made.
        logger.info("warm-up")
        deadline = time.monotonic() + 60
        while handler.stats()["api_calls"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    out["rss_before_mb"] = _rss_mb()
    p0, w0 = time.process_time(), time.perf_counter()
    if workload == "steady":
        out.update(_run_steady(logger, args.rate, args.seconds, pad))
        out["n"] = int(args.rate * args.seconds)
    else:
        out.update(_run_burst(logger, n, pad, 8 if workload == "threads8" else 1))
    c0 = time.perf_counter()
    if cold:
        # The window opened at construction, which ran on this thread; the interpreter's exit closes the handler.
        out["caller_cpu_s"] += out["construct_cpu_s"]
        at_exit.update(out=out, handler=handler, logger=logger, endpoint=endpoint, p0=p_made, w0=w_made, c0=c0)
        return None
    handler.close()
    return _finish(out, handler, logger, endpoint, p0, w0, c0)


def _finish(out: dict, handler, logger, endpoint: str, p0: float, w0: float, c0: float) -> dict:
    """Once the handler is closed: times from ``w0`` (window start) and ``c0`` (close start), counts."""
    w1 = time.perf_counter()
    p1 = time.process_time()
    logger.removeHandler(handler)
    contender, workload, n = out["contender"], out["workload"], out["n"]
    out["close_s"] = w1 - c0
    out["total_s"] = w1 - w0
    out["process_cpu_s"] = p1 - p0
    out["background_cpu_s"] = max(0.0, out["process_cpu_s"] - out["caller_cpu_s"])
    out["peak_rss_mb"] = _peak_rss_mb()
    if contender == "floor_emit":
        out["events_received"] = len(handler.records)  # "delivered" into its deque
        out["put_calls"] = 0
    elif workload != "unreachable":
        _read_endpoint(endpoint, out)
    if contender == "cwlhandler":
        out["handler_stats"] = handler.stats()
        if workload == "unreachable":
            out["events_received"] = 0
            out["put_calls"] = out["handler_stats"].get("api_calls", 0)
    # Records dropped by a policy and counted (cwlhandler's stats) are not "lost": lost means unaccounted for.
    out["dropped"] = out.get("handler_stats", {}).get("dropped", 0) if workload != "unreachable" else None
    out["lost"] = n - out.get("events_received", 0) - (out["dropped"] or 0) if workload != "unreachable" else None
    rec = out.get("events_received") or 0
    out["bg_cpu_us_per_event"] = out["background_cpu_s"] / rec * 1e6 if rec and contender != "floor_emit" else None
    return out


def _read_endpoint(endpoint: str, out: dict) -> None:
    """The endpoint's counters since its last reset; for a cold run, construction to first acknowledgement."""
    st = _http(endpoint, "GET", "/stats")
    out["endpoint"] = st
    out["events_received"] = st["events"]
    out["put_calls"] = st["put_log_events_calls"]
    out["invalid_requests"] = st["invalid_requests"]
    out["ack_p50_s"] = st["ack_latency_p50_s"]
    out["ack_p99_s"] = st["ack_latency_p99_s"]
    out["endpoint_cpu_s"] = st["endpoint_cpu_s"]
    if out["workload"] == "cold" and st.get("first_put_time") is not None:
        out["first_ack_s"] = st["first_put_time"] - out["construct_time"]


def _child_raw(args, out, logger, formatter, pad, group, stream) -> dict:
    """Pre-format the same records, then ship them with a plain put_log_events loop.

    Warm, the client is made and used once before the timer starts; cold, the window opens before
    ``import boto3``, so it holds the client's construction too.
    """
    floor = make_floor()
    floor.setFormatter(formatter)
    logger.addHandler(floor)
    recs = []

    def keep(record):  # keep the timestamp with the formatted text
        recs.append((int(record.created * 1000), floor.format(record)))

    floor.emit = keep  # type: ignore[assignment]
    n = args.n
    if args.workload == "threads8":
        _run_burst(logger, n, pad, 8)
        recs.sort(key=lambda r: r[0])
    else:
        _run_burst(logger, n, pad, 1)
    logger.removeHandler(floor)

    def make_client():
        import boto3

        return boto3.client("logs", endpoint_url=args.endpoint, region_name="us-east-1")  # default config

    if args.workload == "cold":
        out["modules_before_construction"] = len(sys.modules)
        out["rss_before_mb"] = _rss_mb()
        client, p0, w0 = _construct(out, make_client)
    else:
        _http(args.endpoint, "POST", "/reset?track=0")
        client = make_client()
        client.describe_log_groups(limit=1)  # warm: the first call loads what botocore loads lazily
        out["rss_before_mb"] = _rss_mb()
        p0, w0 = time.process_time(), time.perf_counter()
    batch: list = []
    size = 0
    for ts, msg in recs:
        cost = len(msg.encode("utf-8")) + 26
        if batch and (len(batch) >= 10_000 or size + cost > 1_048_576):
            client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            batch, size = [], 0
        batch.append({"timestamp": ts, "message": msg})
        size += cost
    if batch:
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
    w1, p1 = time.perf_counter(), time.process_time()
    out["caller_wall_s"] = out["total_s"] = w1 - w0  # the shipping loop runs on the caller's thread
    out["caller_cpu_s"] = out["process_cpu_s"] = p1 - p0
    out["background_cpu_s"] = p1 - p0  # all of it is shipping work: the reference per event
    out["close_s"] = 0.0
    out["peak_rss_mb"] = _peak_rss_mb()
    _read_endpoint(args.endpoint, out)
    out["lost"] = n - out["events_received"]
    received = out["events_received"]
    out["bg_cpu_us_per_event"] = out["background_cpu_s"] / received * 1e6 if received else None
    return out


# ============================================================================ parent side
def _free_closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_endpoint() -> "tuple[subprocess.Popen, str]":  # noqa: F821 (imported below: a child must not load it)
    import subprocess

    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "endpoint.py"), "--port", "0",
                             "--max-seconds", "7200"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"endpoint did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def run_child(contender: str, workload: str, n: int, endpoint: str, cfg: dict, log) -> dict:
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--one", contender, "--workload", workload,
           "--n", str(n), "--endpoint", endpoint, "--rate", str(cfg["steady_rate"]),
           "--seconds", str(cfg["steady_seconds"])]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_SESSION_TOKEN="testing", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               PYTHONHASHSEED="0")
    env.pop("AWS_PROFILE", None)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as exc:
        log(f"!! {contender}/{workload}: HUNG (killed after {CHILD_TIMEOUT}s)")
        return {"contender": contender, "workload": workload, "n": n, "error": "hang",
                "stderr": str(exc.stderr)[-2000:]}
    if p.stderr.strip():
        log(f"   [{contender}/{workload} stderr] " + p.stderr.strip().replace("\n", "\n   ")[-1500:])
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        log(f"!! {contender}/{workload}: exit {p.returncode}")
        return {"contender": contender, "workload": workload, "n": n, "error": f"exit {p.returncode}",
                "stderr": p.stderr[-2000:]}
    res = json.loads(lines[-1])
    res["child_wall_s"] = time.perf_counter() - t0
    res["stderr"] = p.stderr[-2000:]
    return res


NUMERIC = ["caller_wall_s", "caller_cpu_s", "close_s", "total_s", "process_cpu_s", "background_cpu_s",
           "bg_cpu_us_per_event", "peak_rss_mb", "rss_before_mb", "put_calls", "events_received", "dropped", "lost",
           "emit_sum_s", "emit_p50_us", "emit_p99_us", "emit_max_us", "ack_p50_s", "ack_p99_s",
           "endpoint_cpu_s", "achieved_rate", "invalid_requests", "construct_s", "first_ack_s"]


def median_of(runs: list) -> dict:
    import statistics

    ok = [r for r in runs if "error" not in r]
    out: dict = {"runs": len(runs), "failed": len(runs) - len(ok)}
    for k in NUMERIC:
        vals = [r[k] for r in ok if isinstance(r.get(k), (int, float))]
        out[k] = statistics.median(vals) if vals else None
    # dropped and lost events: report the worst run, not the median
    for key in ("dropped", "lost"):
        values = [r.get(key) for r in ok if isinstance(r.get(key), int)]
        out[key + "_max"] = max(values) if values else None
    if ok and "handler_stats" in ok[-1]:
        out["handler_stats_last"] = ok[-1]["handler_stats"]
    if ok and "settings" in ok[-1]:
        out["settings"] = ok[-1]["settings"]
    return out


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt(v, spec=".3f"):
    if v is None:
        return "-"
    if isinstance(v, float) and spec:
        return format(v, spec)
    return str(v)


def paired_ratios(runs: list, workload: str, key: str, a: str, b: str) -> list:
    """``a``'s ``key`` over ``b``'s within each repetition: neighbours in time, so slow drifts of a
    shared machine's speed cancel out more than in the ratio of the medians."""
    by_rep: dict = {}
    for r in runs:
        if r.get("workload") == workload and "error" not in r and isinstance(r.get(key), (int, float)):
            by_rep.setdefault(r["rep"], {})[r["contender"]] = r[key]
    return [v[a] / v[b] for _, v in sorted(by_rep.items()) if a in v and b in v and v[b]]


def build_targets(S: dict, runs: list) -> list:
    import statistics

    g = lambda w, c, k: (S.get(w, {}).get(c) or {}).get(k)  # noqa: E731
    t = []

    def add(name, value, limit, detail, cmp="<=", pair=None):
        ok = None if value is None else (value <= limit)
        if pair:
            each = paired_ratios(runs, *pair)
            if len(each) > 1:
                detail = (detail + "; " if detail else "") + "per repetition " + " / ".join(
                    f"{x:.2f}" for x in each) + f" (median {statistics.median(each):.3f})"
        t.append({"target": name, "value": value, "limit": limit, "pass": ok, "detail": detail})

    add("total time 200k (small): cwlhandler / watchtower", ratio(g("small", "cwlhandler", "total_s"),
        g("small", "watchtower", "total_s")), 0.5, "logging start -> close() returned, all events acknowledged",
        pair=("small", "total_s", "cwlhandler", "watchtower"))
    add("total time 200k (small): cwlhandler / floor_emit", ratio(g("small", "cwlhandler", "total_s"),
        g("small", "floor_emit", "total_s")), 1.15, "", pair=("small", "total_s", "cwlhandler", "floor_emit"))
    add("total time 200k (threads8): cwlhandler / watchtower (info)", ratio(g("threads8", "cwlhandler", "total_s"),
        g("threads8", "watchtower", "total_s")), 0.5, "same target, 8 threads")
    add("total time 200k (threads8): cwlhandler / floor_emit (info)", ratio(g("threads8", "cwlhandler", "total_s"),
        g("threads8", "floor_emit", "total_s")), 1.15, "same target, 8 threads")
    add("caller time at steady rate: cwlhandler / floor_emit (sum of logger.info wall time)",
        ratio(g("steady", "cwlhandler", "emit_sum_s"), g("steady", "floor_emit", "emit_sum_s")), 1.10,
        "time spent inside logger.info on the caller's thread",
        pair=("steady", "emit_sum_s", "cwlhandler", "floor_emit"))
    add("caller CPU at steady rate: cwlhandler / floor_emit (thread_time of the paced loop, info)",
        ratio(g("steady", "cwlhandler", "caller_cpu_s"), g("steady", "floor_emit", "caller_cpu_s")), 1.10,
        "includes the pacing loop's own cost, identical for both")
    add("background CPU per shipped record (small): cwlhandler / raw_botocore",
        ratio(g("small", "cwlhandler", "bg_cpu_us_per_event"), g("small", "raw_botocore", "bg_cpu_us_per_event")),
        0.25, "process CPU - caller-thread CPU, per event received",
        pair=("small", "bg_cpu_us_per_event", "cwlhandler", "raw_botocore"))
    add("background CPU per shipped record (large): cwlhandler / raw_botocore (info)",
        ratio(g("large", "cwlhandler", "bg_cpu_us_per_event"), g("large", "raw_botocore", "bg_cpu_us_per_event")),
        0.25, "8 KB records")
    un = S.get("unreachable", {}).get("cwlhandler") or {}
    settings = un.get("settings") or {}
    bound_mb = (settings.get("max_buffer_bytes") or 64 * 2**20) / 2**20
    growth = None if un.get("peak_rss_mb") is None else un["peak_rss_mb"] - (un.get("rss_before_mb") or 0)
    t.append({"target": "peak RSS growth, endpoint unreachable (MB) <= max_buffer_bytes", "value": growth,
              "limit": bound_mb, "pass": None if growth is None else growth <= bound_mb,
              "detail": f"peak {fmt(un.get('peak_rss_mb'), '.1f')} MB, "
                        f"before logging {fmt(un.get('rss_before_mb'), '.1f')} MB; "
                        f"max_buffer_records={settings.get('max_buffer_records')}"})
    cold = S.get("cold", {}).get("cwlhandler") or {}
    dropped, lost = cold.get("dropped_max"), cold.get("lost_max")
    add("cold start, 200k burst: records cwlhandler dropped or lost (worst run)",
        None if dropped is None or lost is None else dropped + abs(lost), 0,
        f"dropped {dropped}, lost {lost}; a fresh process, no warm-up")
    add("cold start: total time 200k: cwlhandler / watchtower (info)", ratio(g("cold", "cwlhandler", "total_s"),
        g("cold", "watchtower", "total_s")), 0.5, "construction (imports included) -> interpreter exit hooks done",
        pair=("cold", "total_s", "cwlhandler", "watchtower"))
    return t


# Columns printed under a workload's table: (title, [(header, key, format)]).
DETAIL = {
    "steady": ("latency", [("emit p50 us", "emit_p50_us", ".1f"), ("emit p99 us", "emit_p99_us", ".1f"),
                           ("emit max us", "emit_max_us", ".0f"), ("emit sum s", "emit_sum_s", ".4f"),
                           ("ack p50 s", "ack_p50_s", ".3f"), ("ack p99 s", "ack_p99_s", ".3f"),
                           ("rate/s", "achieved_rate", ".0f")]),
    "cold": ("start-up", [("construct s", "construct_s", ".3f"), ("first ack s", "first_ack_s", ".3f"),
                          ("exit s", "close_s", ".3f"), ("total s", "total_s", ".3f")]),
}


def print_report(S: dict, targets: list, cfg: dict, log) -> None:
    cols = [("caller_s", "caller_wall_s", ".3f"), ("callerCPU", "caller_cpu_s", ".3f"), ("close_s", "close_s", ".3f"),
            ("total_s", "total_s", ".3f"), ("xfloor", None, ".2f"), ("xwtower", None, ".2f"),
            ("procCPU", "process_cpu_s", ".3f"), ("bgCPU", "background_cpu_s", ".3f"),
            ("bgus/ev", "bg_cpu_us_per_event", ".2f"), ("rssMB", "peak_rss_mb", ".0f"),
            ("puts", "put_calls", ".0f"), ("received", "events_received", ".0f"), ("dropped", "dropped_max", ""),
            ("lost", "lost_max", "")]
    for w in WORKLOADS:
        if w not in S:
            continue
        n = cfg["steady_rate"] * cfg["steady_seconds"] if w == "steady" else cfg[w]
        log("")
        pace = f", {cfg['steady_rate']} rec/s for {cfg['steady_seconds']} s" if w == "steady" else ""
        log(f"== workload {w}  (N={int(n):,}{pace})")
        log("  " + f"{'contender':<13}" + "".join(f"{c[0]:>10}" for c in cols))
        floor_total = (S[w].get("floor_emit") or {}).get("total_s")
        wt_total = (S[w].get("watchtower") or {}).get("total_s")
        for c in WORKLOAD_CONTENDERS[w]:
            m = S[w].get(c)
            if not m:
                continue
            cells = []
            for name, key, spec in cols:
                if name == "xfloor":
                    v = ratio(m.get("total_s"), floor_total)
                elif name == "xwtower":
                    v = ratio(m.get("total_s"), wt_total)
                else:
                    v = m.get(key)
                cells.append(fmt(v, spec) if not (isinstance(v, float) and spec == "") else str(v))
            flag = "" if not m.get("failed") else f"  ({m['failed']} failed run(s))"
            log("  " + f"{c:<13}" + "".join(f"{x:>10}" for x in cells) + flag)
        if w in DETAIL:
            title, detail = DETAIL[w]
            log(f"  {title:<11}" + "".join(f"{h:>12}" for h, _, _ in detail))
            for c in WORKLOAD_CONTENDERS[w]:
                m = S[w].get(c) or {}
                log(f"  {c:<11}" + "".join(f"{fmt(m.get(k), s):>12}" for _, k, s in detail))
        if w == "unreachable":
            m = S[w].get("cwlhandler") or {}
            log(f"  cwlhandler stats (last run): {json.dumps(m.get('handler_stats_last'))}")
    log("")
    log("== targets (ratios from this run; medians of the repetitions)")
    for t in targets:
        status = "n/a " if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
        v = t["value"]
        log(f"  [{status}] {t['target']}: {fmt(v, '.3f')} (limit {t['limit']:g})"
            + (f"  — {t['detail']}" if t["detail"] else ""))


def draw_chart(S: dict, targets: list, path_list: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"floor_emit": "#999999", "raw_botocore": "#4c72b0", "watchtower": "#dd8452", "cwlhandler": "#55a868"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    burst = [w for w in ("small", "threads8", "large") if w in S]

    def bars(ax, key, title, ylabel, rel=None, contenders=CONTENDERS, log=False):
        width = 0.8 / len(contenders)
        for i, c in enumerate(contenders):
            vals = []
            for w in burst:
                v = (S[w].get(c) or {}).get(key)
                base = (S[w].get(rel) or {}).get(key) if rel else 1.0
                vals.append(v / base if (v is not None and base) else 0)
            xs = [j + (i - (len(contenders) - 1) / 2) * width for j in range(len(burst))]
            ax.bar(xs, vals, width, label=c, color=colors[c])
            for x, v in zip(xs, vals):
                if v:
                    ax.text(x, v, f"{v:.2f}" if v < 100 else f"{v:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(burst)))
        ax.set_xticklabels(burst)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    bars(axes[0][0], "total_s", "Total time to deliver (log start -> close() returned)", "x floor_emit", "floor_emit")
    axes[0][0].axhline(1.15, color="red", ls="--", lw=0.8)
    bars(axes[0][1], "caller_wall_s", "Time on the caller's thread(s) (logging loop wall)", "x floor_emit",
         "floor_emit", contenders=["floor_emit", "watchtower", "cwlhandler"])
    bars(axes[1][0], "bg_cpu_us_per_event", "Shipping CPU per event received (us)", "us / event",
         contenders=["raw_botocore", "watchtower", "cwlhandler"])
    ax = axes[1][1]
    st = S.get("steady", {})
    names = [c for c in ("floor_emit", "watchtower", "cwlhandler") if c in st]
    metrics = [("emit_p50_us", 1e-6, "emit p50"), ("emit_p99_us", 1e-6, "emit p99"),
               ("ack_p99_s", 1.0, "emit->ack p99")]
    width = 0.8 / max(1, len(names))
    for i, c in enumerate(names):
        vals = [((st[c].get(k) or 0) * scale) for k, scale, _ in metrics]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, [v if v else float("nan") for v in vals], width, label=c, color=colors[c])
    ax.set_yscale("log")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m[2] for m in metrics])
    ax.set_ylabel("seconds (log)")
    ax.set_title("Steady rate: latencies", fontsize=10)
    ax.legend(fontsize=8)
    passed = sum(1 for t in targets if t["pass"])
    fig.suptitle(f"cwlhandler benchmark — ratios from one run ({passed}/{len(targets)} targets met)", fontsize=12)
    fig.tight_layout()
    for p in path_list:
        fig.savefig(p, dpi=90)
    plt.close(fig)


def parent(args: argparse.Namespace) -> int:
    import importlib.metadata
    import platform
    import shlex
    import subprocess

    cfg = dict(QUICK if args.quick else FULL)
    repeat = args.repeat if args.repeat else (1 if args.quick else 3)
    workloads = args.workloads.split(",") if args.workloads else WORKLOADS
    os.makedirs(RESULTS, exist_ok=True)
    lines: list = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    argv = [os.path.basename(sys.executable), os.path.relpath(sys.argv[0])] + sys.argv[1:]
    cmdline = " ".join(shlex.quote(a) for a in argv)
    log(f"command: {cmdline}")
    versions = {}
    for mod in ("boto3", "botocore", "watchtower", "cwlhandler"):
        try:
            sys.path.insert(0, ROOT)
            versions[mod] = getattr(__import__(mod), "__version__", None) or importlib.metadata.version(mod)
        except Exception as exc:  # noqa: BLE001
            versions[mod] = f"unavailable ({exc})"
    log(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log(f"mode: {'quick' if args.quick else 'full'}, repeat {repeat}, workloads {','.join(workloads)}; "
        f"N: {json.dumps(cfg)}")
    ep_proc, endpoint = start_endpoint()
    log(f"endpoint: {endpoint} (pid {ep_proc.pid}); unreachable endpoint: a closed port")
    runs: list = []
    t_start = time.perf_counter()
    try:
        for rep in range(repeat):
            for w in workloads:
                order = list(WORKLOAD_CONTENDERS[w])
                if rep % 2:
                    order.reverse()  # interleave: alternate who goes first
                for c in order:
                    n = cfg[w] if w != "steady" else int(cfg["steady_rate"] * cfg["steady_seconds"])
                    ep = endpoint if w != "unreachable" else f"http://127.0.0.1:{_free_closed_port()}"
                    if w == "cold":  # here, not in the child: a cold child does nothing before its construction
                        _http(ep, "POST", "/reset?track=0")
                    r = run_child(c, w, n, ep, cfg, log)
                    r["rep"] = rep
                    runs.append(r)
                    if "error" not in r:
                        log(f"   rep {rep} {w:<11} {c:<13} total {r['total_s']:.3f}s  "
                            f"caller {r['caller_wall_s']:.3f}s  "
                            f"cpu {r['process_cpu_s']:.3f}s  rss {r['peak_rss_mb']:.0f}MB  "
                            f"received {r.get('events_received')}/{r['n']}  puts {r.get('put_calls')}")
    finally:
        ep_proc.terminate()
        try:
            ep_proc.wait(5)
        except subprocess.TimeoutExpired:
            ep_proc.kill()
    S: dict = {}
    for w in workloads:
        S[w] = {c: median_of([r for r in runs if r["workload"] == w and r["contender"] == c])
                for c in WORKLOAD_CONTENDERS[w]}
    targets = build_targets(S, runs)
    print_report(S, targets, cfg, log)
    log("")
    log(f"elapsed {time.perf_counter() - t_start:.0f}s")
    result = {"command": cmdline, "mode": "quick" if args.quick else "full", "repeat": repeat, "config": cfg,
              "versions": versions, "python": platform.python_version(), "cpus": os.cpu_count(),
              "summary": S, "targets": targets, "runs": runs, "report": lines}
    out_json = os.path.join(RESULTS, "latest.json")
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    charts = [os.path.join(RESULTS, "chart.png")]
    if not args.no_readme_chart:
        charts.append(os.path.join(HERE, "chart.png"))
    try:
        draw_chart(S, targets, charts)
    except Exception as exc:  # noqa: BLE001
        log(f"chart not drawn: {exc}")
    log(f"wrote {os.path.relpath(out_json)} and {', '.join(os.path.relpath(c) for c in charts)}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="cwlhandler vs watchtower vs raw botocore vs a format-and-append floor")
    ap.add_argument("--quick", action="store_true", help="smaller N, one repetition (< 2 minutes)")
    ap.add_argument("--repeat", type=int, default=0, help="repetitions, medians reported (default 3, quick 1)")
    ap.add_argument("--workloads", default="", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--no-readme-chart", action="store_true", help="do not overwrite benchmarks/chart.png")
    # child mode
    ap.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=int, default=5000, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = child(args)
        if res is not None:  # else a cold run's exit hook writes it
            _write_result(res)
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
