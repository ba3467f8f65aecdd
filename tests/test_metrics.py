"""Metrics in Embedded Metric Format: every document read back passes tests/emf.py and aggregates exactly.

Through the handler against the strict fake (which also checks the ``x-amzn-logs-format`` header on the
wire) and moto's server; the packing of documents also as a pure function, under hypothesis.
"""
from __future__ import annotations

import math
import os
import re
import threading
from typing import Any, Dict, List, Tuple

import emf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cwlhandler.metrics
import helpers
from cwlhandler.buffer import Buffer
from cwlhandler.emfdoc import DocKey, check_dimensions, documents, property_member
from helpers import logs_client, needs_fork, read_events, wait_until

GROUP = "test-group"
STREAM = "metrics-test"
NOW = 1_700_000_000_000
Put = Tuple[str, Dict[str, str], str, Any, str, int]  # namespace, dimensions, name, value, unit, resolution


def docs_in(fake, stream: str = STREAM) -> List[str]:
    """The messages of a stream of the fake (none while the stream does not exist)."""
    try:
        return [message for _, message in fake.events(GROUP, stream)]
    except KeyError:
        return []


def series(puts: List[Put]) -> Dict[emf.Series, List[Any]]:
    """What CloudWatch must see: every value put, by series."""
    result: Dict[emf.Series, List[Any]] = {}
    for namespace, dims, name, value, unit, resolution in puts:
        key = (namespace, tuple(sorted(dims.items())), name, unit, resolution)
        result.setdefault(key, []).append(value)
    return result


def assert_exact(docs: List[str], puts: List[Put], max_event_bytes: int = emf.MAX_EVENT_BYTES) -> None:
    got, want = emf.aggregate(docs, max_event_bytes), series(puts)
    assert sorted(got) == sorted(want)
    for key, values in want.items():
        assert emf.statistics(got[key]) == emf.statistics(values), key  # sum, count, min, max
        assert sorted(got[key]) == sorted(values), key


def put_all(handler, puts: List[Put]) -> None:
    by_namespace: Dict[str, Any] = {}
    for namespace, dims, name, value, unit, resolution in puts:
        metrics = by_namespace.get(namespace) or by_namespace.setdefault(namespace, handler.metrics(namespace))
        metrics.put_metric(name, value, unit, dims or None, resolution)


def mixed_puts() -> List[Put]:
    """Past every per-document limit: 250 values of one metric, 130 metrics of one set, units and resolutions."""
    puts: List[Put] = [("Shop", {"Service": "api"}, "Latency", i * 0.25 - 7, "Milliseconds", 60) for i in range(250)]
    puts += [("Shop", {"Service": "api"}, f"Metric{i}", i, "Count", 60) for i in range(130)]
    puts += [("Shop", {"Service": "api"}, "Latency", 1.5, "Seconds", 60),  # same name, another unit
             ("Shop", {"Service": "api", "Operation": "pay"}, "Latency", 3, "Milliseconds", 1),
             ("Shop", {}, "Orders", 1, "None", 60), ("Other/NS", {"Region": "eu"}, "Bytes", 1e300, "Bytes", 60),
             ("Shop", {"Service": "api"}, "Tiny", 5e-324, "None", 60),
             ("Shop", {"Service": "api"}, "Neg", -0.0, "None", 60)]
    return puts


# -- through the handler -------------------------------------------------------------------------------------------
def test_documents_read_back_from_the_strict_fake_are_valid_and_exact(fake, make_handler, logger):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=60)
    logger.addHandler(handler)
    puts = mixed_puts()
    put_all(handler, puts)
    logger.info("a plain log line")
    assert handler.flush(timeout=10)
    docs = docs_in(fake)
    assert len(docs) >= 3  # 250 values of one metric need three documents
    assert_exact(docs, puts)
    assert [m for _, m in fake.events(GROUP, "test-stream")] == ["a plain log line"]
    # The header on the wire: on every request of documents, on no request of log lines.
    formats = {(r["stream"], r["log_format"]) for r in fake.put_requests if r["outcome"] == "ok"}
    assert formats == {(STREAM, "json/emf"), ("test-stream", None)}
    assert fake.emf_parse_errors == 0
    stats = handler.stats()
    assert (stats["sent"], stats["dropped"]) == (len(docs) + 1, 0), stats


def test_documents_read_back_from_moto_are_valid_and_exact(moto_url, make_handler):
    group = "metrics-moto"
    handler = make_handler(moto_url, log_group=group, metrics_stream="moto-{pid}", flush_interval=60)
    puts = mixed_puts()
    put_all(handler, puts)
    assert handler.flush(timeout=10)
    assert_exact([m for _, m in read_events(moto_url, group, f"moto-{os.getpid()}")], puts)


def test_documents_go_out_each_flush_interval_without_a_flush(fake, make_handler):
    """Only metrics, no log record: the first value starts the pipeline and the interval's clock."""
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=0.05)
    handler.metrics("Shop").put_metric("Orders", 1, "Count")
    assert wait_until(lambda: docs_in(fake), timeout=5)
    handler.metrics("Shop").put_metric("Orders", 2, "Count")
    assert wait_until(lambda: len(docs_in(fake)) == 2, timeout=5)
    assert_exact(docs_in(fake), [("Shop", {}, "Orders", 1, "Count", 60), ("Shop", {}, "Orders", 2, "Count", 60)])


def test_random_put_sequences_aggregate_exactly(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=60, max_event_bytes=2048)
    seen = {"n": 0}
    dims = st.dictionaries(st.sampled_from(["Service", "Operation", "Host"]), st.sampled_from(["a", "b"]), max_size=2)
    number = st.one_of(st.integers(-10 ** 15, 10 ** 15), st.floats(allow_nan=False, allow_infinity=False))
    put = st.tuples(dims, st.sampled_from(["Latency", "Errors", "Size"]), number,
                    st.sampled_from(["None", "Count", "Milliseconds"]), st.sampled_from([60, 1]))

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(st.lists(put, min_size=1, max_size=300))
    def check(sequence):
        seen["n"] += 1
        namespace = f"Run{seen['n']}"  # one namespace per example: its documents are told apart by it
        puts = [(namespace, d, name, value, unit, res) for d, name, value, unit, res in sequence]
        put_all(handler, puts)
        assert handler.flush(timeout=10)
        mine = [m for m in docs_in(fake) if f'"Namespace":"{namespace}"' in m]
        assert_exact(mine, puts, max_event_bytes=2048)

    check()
    assert fake.emf_parse_errors == 0 and handler.stats()["dropped"] == 0


def test_documents_fit_a_small_event_limit(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, max_event_bytes=400, flush_interval=60)
    metrics = handler.metrics("Shop", {"Service": "checkout"})
    puts: List[Put] = [("Shop", {"Service": "checkout"}, f"M{i % 7}", i * 1.000001, "Milliseconds", 60)
                       for i in range(300)]
    for _, _, name, value, unit, _ in puts:
        metrics.put_metric(name, value, unit)
    assert handler.flush(timeout=10)
    docs = docs_in(fake)
    assert max(len(d) + 26 for d in docs) <= 400
    assert_exact(docs, puts, max_event_bytes=400)
    with pytest.raises(ValueError, match="no room for a metric"):
        handler.metrics("Shop", {"Service": "x" * 300})


def test_with_dimensions_properties_and_timed(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=60)
    metrics = handler.metrics("Shop", {"Service": "api"})
    metrics.set_property("Version", {"build": 42, "tags": ["x"]})
    pay = metrics.with_dimensions({"Operation": "pay"})
    assert pay.dimensions == {"Service": "api", "Operation": "pay"}
    pay.put_metric("Calls", 1, "Count")

    @metrics.timed("Work", unit="Microseconds")
    def work(x):
        return x * 2

    assert [work(1), work(2)] == [2, 4]
    with pytest.raises(KeyError):
        with metrics.timed("Work", unit="Microseconds"):
            raise KeyError("the block's error propagates; its time is put all the same")
    assert handler.flush(timeout=10)
    roots = [emf.validate(d) for d in docs_in(fake)]
    assert all(r["Version"] == {"build": 42, "tags": ["x"]} for r in roots)
    got = emf.aggregate(docs_in(fake))
    work_times = got[("Shop", (("Service", "api"),), "Work", "Microseconds", 60)]
    assert len(work_times) == 3 and all(t >= 0 for t in work_times)
    assert got[("Shop", (("Operation", "pay"), ("Service", "api")), "Calls", "Count", 60)] == [1]


BAD_CALLS = [
    (lambda m: m.put_metric("Latency", math.nan), "finite number"),
    (lambda m: m.put_metric("Latency", math.inf), "finite number"),
    (lambda m: m.put_metric("Latency", -math.inf), "finite number"),
    (lambda m: m.put_metric("Latency", True), "finite number"),
    (lambda m: m.put_metric("Latency", "12"), "finite number"),
    (lambda m: m.put_metric("Latency", None), "finite number"),
    (lambda m: m.put_metric("Latency", 10 ** 400), "finite number"),
    (lambda m: m.put_metric("Latency", 1, "Millis"), "unit"),
    (lambda m: m.put_metric("Latency", 1, ["Count"]), "unit"),
    (lambda m: m.put_metric("Latency", 1, storage_resolution=30), "storage_resolution"),
    (lambda m: m.put_metric("Latency", 1, storage_resolution=True), "storage_resolution"),
    (lambda m: m.put_metric("", 1), "metric name"),
    (lambda m: m.put_metric("   ", 1), "metric name"),
    (lambda m: m.put_metric("x" * 256, 1), "metric name"),
    (lambda m: m.put_metric(7, 1), "metric name"),
    (lambda m: m.put_metric("_aws", 1), "metric name"),
    (lambda m: m.put_metric("bad\ud800", 1), "surrogates"),
    (lambda m: m.put_metric("Service", 1), "dimension or property"),
    (lambda m: m.put_metric("Latency", 1, dimensions={f"D{i}": "v" for i in range(30)}), "at most 30"),
    (lambda m: m.put_metric("Latency", 1, dimensions={"Code": 200}), "value"),
    (lambda m: m.put_metric("Latency", 1, dimensions={"Code": ["x"]}), "value"),
    (lambda m: m.put_metric("Latency", 1, dimensions={"Zone": "é"}), "ASCII"),
    (lambda m: m.put_metric("Latency", 1, dimensions={":x": "v"}), "dimension name"),
    (lambda m: m.put_metric("Latency", 1, dimensions=[("a", "b")]), "dict"),
    (lambda m: m.put_metric("Op", 1, dimensions={"Op": "pay"}), "dimension or property"),
    (lambda m: m.set_property("Service", 1), "a dimension has that name"),
    (lambda m: m.set_property("_aws", 1), "property"),
    (lambda m: m.set_property("P", math.nan), "not a JSON value"),
    (lambda m: m.set_property("P", object()), "not a JSON value"),
    (lambda m: m.with_dimensions({"": "v"}), "dimension name"),
    (lambda m: m.timed("T", unit="Count"), "timed"),
]


BAD_NAMESPACES = ["", "AWS/EC2", "has space", "é", ":x", "n" * 256, None]


def test_bad_input_is_a_value_error_at_the_call(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM)
    metrics = handler.metrics("Shop", {"Service": "api"})
    calls = BAD_CALLS + [(lambda m, ns=ns: handler.metrics(ns), "namespace") for ns in BAD_NAMESPACES]
    wrong = []
    for number, (call, match) in enumerate(calls):
        try:
            call(metrics)
        except ValueError as exc:
            if not re.search(match, str(exc)):
                wrong.append((number, match, str(exc)))
        else:
            wrong.append((number, match, "no ValueError"))
    assert wrong == []
    metrics.put_metric("Good", 1)  # the object still works, and nothing bad reached a document
    assert handler.flush(timeout=10)
    assert_exact(docs_in(fake), [("Shop", {"Service": "api"}, "Good", 1, "None", 60)])
    assert handler.stats()["dropped"] == 0


def test_metrics_stream_is_validated_at_construction(fake, make_handler):
    with pytest.raises(ValueError, match="metrics_stream.*refuses"):
        make_handler(fake.endpoint_url, metrics_stream="a:b")
    with pytest.raises(ValueError, match="metrics_stream: metrics have no record"):
        make_handler(fake.endpoint_url, metrics_stream="m/{logger}")
    handler = make_handler(fake.endpoint_url, log_group="g/{level}")
    with pytest.raises(ValueError, match="log_group: metrics have no record"):
        handler.metrics("Shop")


def test_the_default_stream_and_the_handlers_own_stream(fake, make_handler, logger):
    """Documents beside log lines in one stream: the header still only on the requests of documents."""
    handler = make_handler(fake.endpoint_url, log_stream="shared", metrics_stream="shared", flush_interval=60)
    logger.addHandler(handler)
    logger.info("line 1")
    handler.metrics("Shop").put_metric("Orders", 3, "Count")
    logger.info("line 2")
    assert handler.flush(timeout=10)
    stored = [m for _, m in fake.events(GROUP, "shared")]
    assert sorted(m for m in stored if not m.startswith("{")) == ["line 1", "line 2"]
    assert_exact([m for m in stored if m.startswith("{")], [("Shop", {}, "Orders", 3, "Count", 60)])
    # Separate requests: one of documents (with the header), one of log lines (without).
    sent = sorted((r["log_format"] or "", r["count"]) for r in fake.put_requests if r["outcome"] == "ok")
    assert sent == [("", 2), ("json/emf", 1)]
    assert fake.emf_parse_errors == 0

    default = make_handler(fake.endpoint_url, log_group="g2")
    default.metrics("Shop").put_metric("Orders", 1)
    assert default.flush(timeout=10)
    (stream,) = fake.streams("g2")
    assert stream.startswith("metrics/") and stream.endswith(f"/{os.getpid()}")


def test_a_users_client_gets_the_header_only_on_the_handlers_requests(fake, make_handler):
    client = logs_client(fake.endpoint_url)
    handler = make_handler(None, client=client, metrics_stream=STREAM, flush_interval=60)
    handler.metrics("Shop").put_metric("Orders", 1)
    assert handler.flush(timeout=10)
    client.create_log_stream(logGroupName=GROUP, logStreamName="mine")
    client.put_log_events(logGroupName=GROUP, logStreamName="mine", logEvents=[{"timestamp": NOW, "message": "x"}])
    client.put_log_events(logGroupName=GROUP, logStreamName="mine",
                          logEvents=[{"timestamp": NOW + 1, "message": "y"}])
    assert {r["stream"]: r["log_format"] for r in fake.put_requests} == {STREAM: "json/emf", "mine": None}
    assert_exact(docs_in(fake), [("Shop", {}, "Orders", 1, "None", 60)])


def test_values_beyond_the_interval_bound_are_counted_and_said(fake, make_handler, monkeypatch, capsys):
    monkeypatch.setattr(cwlhandler.metrics, "MAX_VALUES_PER_INTERVAL", 10)
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=60)
    metrics = handler.metrics("Shop")
    for i in range(15):
        metrics.put_metric("Orders", i)
    assert handler.flush(timeout=10)
    assert_exact(docs_in(fake), [("Shop", {}, "Orders", i, "None", 60) for i in range(10)])
    stats = handler.stats()
    assert stats["dropped_by_reason"] == {"metrics_overflow": 5}, stats
    assert stats["emitted"] == stats["sent"] + stats["dropped"] + stats["buffered"], stats
    assert "5 were dropped and counted as 'metrics_overflow'" in capsys.readouterr().err
    metrics.put_metric("Orders", 99)  # the bound is per interval: the next one takes values again
    assert handler.flush(timeout=10)
    assert emf.aggregate(docs_in(fake))[("Shop", (), "Orders", "None", 60)][-1] == 99


def test_close_ships_what_was_put_and_counts_what_comes_after(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=60)
    metrics = handler.metrics("Shop")
    metrics.put_metric("Orders", 4)
    handler.close()
    metrics.put_metric("Orders", 5)
    assert_exact(docs_in(fake), [("Shop", {}, "Orders", 4, "None", 60)])
    assert handler.stats()["dropped_by_reason"] == {"closed": 1}
    late = make_handler(fake.endpoint_url, log_group="late", metrics_stream=STREAM)
    late.close()
    for value in (6, 7, 8):  # through metrics() made after close(): each value counted, like a record
        late.metrics("Shop").put_metric("Orders", value)
    assert late.flush(timeout=10) and late.stats()["dropped_by_reason"] == {"closed": 3}


def test_a_flush_while_the_flusher_drains_waits_for_its_documents(fake, make_handler, monkeypatch):
    """Forced interleaving: the flusher took the interval's values and makes their documents when flush()
    finds the aggregate empty; flush() must not return before those documents are in the buffer."""
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=0.05)
    metrics = handler.metrics("Shop")
    draining, release, flush_waits = threading.Event(), threading.Event(), threading.Event()
    real_documents = cwlhandler.metrics.documents

    def slow_on_the_flusher(*args: Any) -> Any:
        if threading.current_thread().name == "cwlhandler-flusher":
            draining.set()
            release.wait(10)
        return real_documents(*args)

    class WatchedLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def __enter__(self) -> None:
            if threading.current_thread().name != "cwlhandler-flusher":
                flush_waits.set()
            self._lock.acquire()

        def __exit__(self, *_: Any) -> None:
            self._lock.release()

    monkeypatch.setattr(cwlhandler.metrics, "documents", slow_on_the_flusher)
    handler._metrics._shipping = WatchedLock()
    metrics.put_metric("Orders", 1)
    assert draining.wait(10)
    flushed: Dict[str, Any] = {}
    flusher = threading.Thread(target=lambda: flushed.update(ok=handler.flush(timeout=10), stored=docs_in(fake)))
    flusher.start()
    assert wait_until(lambda: flush_waits.is_set() or not flusher.is_alive(), timeout=10)
    release.set()  # only once flush() waits for the drain, or has returned without waiting
    flusher.join(10)
    assert flushed["ok"]
    assert_exact(flushed["stored"], [("Shop", {}, "Orders", 1, "None", 60)])  # stored when flush() returned


def test_threads_put_concurrently_and_nothing_is_lost(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream=STREAM, flush_interval=0.01)
    metrics = handler.metrics("Shop")
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait()
        for i in range(2000):
            metrics.put_metric("Latency", n * 10_000 + i, "Milliseconds")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handler.flush(timeout=10)
    assert_exact(docs_in(fake), [("Shop", {}, "Latency", n * 10_000 + i, "Milliseconds", 60)
                                 for n in range(4) for i in range(2000)])


@needs_fork
@pytest.mark.timeout(60)
def test_a_forked_child_starts_with_an_empty_aggregate(fake, make_handler):
    handler = make_handler(fake.endpoint_url, metrics_stream="m/{pid}", flush_interval=60)
    metrics = handler.metrics("Fork")
    metrics.put_metric("Parent", 1)  # still in the aggregate at the fork
    assert handler.stats()["sent"] == 0

    def child() -> bool:
        metrics.put_metric("Child", 2)
        return handler.flush(timeout=10)

    pid = helpers.fork_running(child)
    assert helpers.wait_child(pid, 30) == 0
    metrics.put_metric("Parent", 3)
    assert handler.flush(timeout=10)
    assert_exact(docs_in(fake, f"m/{pid}"), [("Fork", {}, "Child", 2, "None", 60)])
    assert_exact(docs_in(fake, f"m/{os.getpid()}"), [("Fork", {}, "Parent", 1, "None", 60),
                                                     ("Fork", {}, "Parent", 3, "None", 60)])


# uWSGI's master: no thread of ours runs there (lifecycle.ships_at_once), and it forks its workers from C,
# holding the GIL and running no os.register_at_fork hook.  In a process of its own: a fork like that in
# pytest's process could catch one of its threads holding a lock of the threading module.
RAW_FORK = """
    import ctypes, os
    import cwlhandler.lifecycle
    from cwlhandler import CloudWatchLogsHandler

    master = os.getpid()
    cwlhandler.lifecycle.ships_at_once = lambda: os.getpid() == master
    handler = CloudWatchLogsHandler("{group}", endpoint_url="{url}", metrics_stream="m/{{pid}}", flush_interval=60)
    metrics = handler.metrics("Fork")
    metrics.put_metric("Parent", 1)
    pid = ctypes.PyDLL(None).fork()
    if pid == 0:
        metrics.put_metric("Child", 2)
        os._exit(0 if handler.flush(timeout=10) else 1)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    metrics.put_metric("Parent", 3)
    print(master, pid, status, handler.flush(timeout=10))
"""


@needs_fork
def test_a_child_forked_without_pythons_hooks_starts_with_an_empty_aggregate(fake):
    result = helpers.run_script(RAW_FORK, group=GROUP, url=fake.endpoint_url)
    helpers.assert_clean_exit(result)
    master, child, status, flushed = result.stdout.split()
    assert (status, flushed) == ("0", "True")
    assert_exact(docs_in(fake, f"m/{child}"), [("Fork", {}, "Child", 2, "None", 60)])
    assert_exact(docs_in(fake, f"m/{master}"), [("Fork", {}, "Parent", 1, "None", 60),
                                                ("Fork", {}, "Parent", 3, "None", 60)])


# -- the pieces ----------------------------------------------------------------------------------------------------
NAMES = st.sampled_from(["Latency", "Errors", "x", "Zeit µs", "n" * 60])
VALUES = st.one_of(st.integers(0, 9), st.integers(-10 ** 18, 10 ** 18),
                   st.floats(allow_nan=False, allow_infinity=False))
# Short lists, and long ones that reach the 100-value and size limits.
LISTS = st.one_of(st.lists(VALUES, min_size=1, max_size=5), st.lists(VALUES, min_size=95, max_size=260))
ENTRIES = st.lists(st.tuples(NAMES, st.sampled_from(["None", "Count", "Bytes/Second"]), st.sampled_from([60, 1]),
                             LISTS), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(ENTRIES, st.dictionaries(st.sampled_from(["Service", "Host"]), st.text("abc", min_size=1, max_size=9)),
       st.one_of(st.integers(1024, 4096), st.integers(4096, 65536)), st.booleans())
def test_packing_obeys_every_rule_and_loses_nothing(entries, dims, max_event_bytes, with_property):
    properties = (("Build", property_member("Build", {"v": [1, "é"]})),) if with_property else ()
    key = DocKey("Shop", check_dimensions(dims), properties, max_event_bytes)
    table: Dict[Any, List[Any]] = {}
    for name, unit, resolution, values in entries:
        table.setdefault((name, unit, resolution), []).extend(values)
    docs, dropped = documents(key, NOW, table, max_event_bytes)
    assert dropped == 0
    got = emf.aggregate(docs, max_event_bytes)  # validates every document
    dim_pairs = tuple(sorted(dims.items()))
    assert got == {("Shop", dim_pairs, n, u, r): v for (n, u, r), v in table.items()}  # in order, too
    assert all(emf.validate(d)["_aws"]["Timestamp"] == NOW for d in docs)


def test_packing_splits_at_100_values_and_100_metrics():
    key = DocKey("Shop", (), (), 1_048_576)
    docs, _ = documents(key, NOW, {("Latency", "None", 60): list(range(250))}, 1_048_576)
    assert [len(emf.validate(d)["Latency"]) for d in docs] == [100, 100, 50]
    docs, _ = documents(key, NOW, {(f"M{i}", "None", 60): [i] for i in range(150)}, 1_048_576)
    assert [len(emf.validate(d)["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs] == [100, 50]


def test_a_value_that_fits_no_document_is_counted_not_shipped():
    key = DocKey("S", (), (), 300)
    docs, dropped = documents(key, NOW, {("n" * 255, "None", 60): [1, 2]}, 300)
    assert (docs, dropped) == ([], 2)


def test_metric_documents_never_wait_for_room_on_the_flusher():
    """append_due runs on the flusher, the only thread that makes room: under on_full='block' it drops instead."""
    buffer = Buffer(max_records=1, max_bytes=2 ** 20, on_full="block", batch_count=10, batch_bytes=2 ** 20,
                    flush_interval=60)
    buffer.append((NOW, "log line", 8, ("g", "s")))
    buffer.append_due([(NOW, "{}", 2, ("g", "s", "json/emf"))])
    assert (len(buffer), buffer.dropped_full, buffer.emitted) == (1, 1, 2)
