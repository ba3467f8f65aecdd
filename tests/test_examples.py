"""Every example under examples/ runs as a real script and delivers what it logged.

(gunicorn_conf.py is a config file, not a script: tests/test_gunicorn.py runs real gunicorn with it.)

Each script is run as a subprocess against the session's moto server
(``CWL_ENDPOINT_URL``), prints the events it reads back, and the test checks
both the printed lines and the events read back independently.  The examples
write to distinct log groups, so they are started together, in the background,
the first time a test needs one (each takes seconds, mostly imports).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import emf
import pytest

from helpers import read_events

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = [
    "plain_logging.py",
    "dictconfig_setup.py",
    "django_settings.py",
    "flask_app.py",
    "lambda_function.py",
    "structured_json.py",
    "metrics.py",
]
# Not scripts: files a program reads, run with that program (gunicorn_conf.py: by tests/test_gunicorn.py).
CONFIGS = {"gunicorn_conf.py": "gunicorn -c examples/gunicorn_conf.py"}
# Runs without CWL_ENDPOINT_URL (and without any AWS setting): the embedded emulator path.
EMBEDDED = ["plain_logging.py", "lambda_function.py"]
HAVE_FLASK = importlib.util.find_spec("flask") is not None
HOST = socket.gethostname()


def _env(endpoint_url: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CWL_ENDPOINT_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    if endpoint_url is not None:
        env.update(
            CWL_ENDPOINT_URL=endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
    return env


def _run(script: str, endpoint_url: Optional[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"examples/{script}"],
        cwd=ROOT,
        env=_env(endpoint_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def runs(moto_url):
    """``get(script, embedded=False)``: the finished run of an example, all started at once."""
    pool = ThreadPoolExecutor(max_workers=len(SCRIPTS) + len(EMBEDDED))
    futures: Dict[Tuple[str, bool], Future] = {}
    for script in SCRIPTS:
        if script != "flask_app.py" or HAVE_FLASK:
            futures[script, False] = pool.submit(_run, script, moto_url)
    for script in EMBEDDED:
        futures[script, True] = pool.submit(_run, script, None)

    def get(script: str, embedded: bool = False) -> subprocess.CompletedProcess:
        proc = futures[script, embedded].result()
        assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    yield get
    pool.shutdown(wait=True)


def printed_events(stdout: str) -> List[Tuple[str, str]]:
    """The ``<stream>\\t<message>`` lines an example prints; indented lines continue a message."""
    events: List[Tuple[str, str]] = []
    for line in stdout.splitlines():
        if line.startswith("    ") and events:
            stream, message = events[-1]
            events[-1] = (stream, message + "\n" + line[4:])
        elif "\t" in line:
            stream, message = line.split("\t", 1)
            events.append((stream, message))
    return events


def stored(moto_url: str, group: str, stream: str) -> List[str]:
    return [message for _, message in read_events(moto_url, group, stream)]


def by_stream(events: List[Tuple[str, str]]) -> Dict[str, List[str]]:
    result: Dict[str, List[str]] = {}
    for stream, message in events:
        result.setdefault(stream, []).append(message)
    return result


def check_plain(stdout: str) -> List[str]:
    streams = by_stream(printed_events(stdout))
    assert len(streams) == 1, streams
    (stream, messages), = streams.items()
    assert re.fullmatch(re.escape(HOST) + r"/plain_logging\.py/\d+", stream), stream
    assert messages[:3] == [
        "INFO shop.orders: order 1 placed, total 19.99",
        "INFO shop.orders: order 2 placed, total 1500.00",
        "WARNING shop.orders: order 2 needs a manual review",
    ]
    assert len(messages) == 4
    assert messages[3].startswith("ERROR shop.orders: could not compute the discount\nTraceback")
    assert messages[3].endswith("ZeroDivisionError: division by zero")
    return [stream]


# -- the examples -----------------------------------------------------------------------------

def test_plain_logging(runs, moto_url):
    proc = runs("plain_logging.py")
    assert "embedded emulator" not in proc.stdout
    stream, = check_plain(proc.stdout)
    assert stored(moto_url, "/examples/plain", stream) == by_stream(printed_events(proc.stdout))[stream]
    # The root logger's StreamHandler got the same records.
    assert "order 2 needs a manual review" in proc.stderr


def test_plain_logging_starts_the_embedded_emulator(runs):
    """No CWL_ENDPOINT_URL, no AWS credentials or region: `python examples/x.py` just works."""
    proc = runs("plain_logging.py", embedded=True)
    assert re.match(r"# embedded emulator at http://127\.0\.0\.1:\d+\n", proc.stdout), proc.stdout
    check_plain(proc.stdout)


def test_dictconfig_setup(runs, moto_url):
    proc = runs("dictconfig_setup.py")
    streams = by_stream(printed_events(proc.stdout))
    assert streams == {
        f"{HOST}/shop.orders": ["INFO shop.orders: order 7 placed", "WARNING shop.orders: order 7 shipped late"],
        f"{HOST}/shop.payments": ["INFO shop.payments: payment for order 7 captured"],
    }
    for stream, messages in streams.items():
        assert stored(moto_url, "/examples/dictconfig", stream) == messages
    assert "not shipped" not in proc.stdout + proc.stderr


def test_django_settings(runs, moto_url):
    proc = runs("django_settings.py")
    streams = by_stream(printed_events(proc.stdout))
    (stream, messages), = streams.items()
    assert re.fullmatch(re.escape(HOST) + r"/django_settings\.py/\d+", stream), stream
    assert messages[0] == "INFO shop.views django_settings: checkout started for cart c-42"
    assert messages[1].startswith("ERROR django.request django_settings: Internal Server Error: /checkout/\n")
    assert messages[1].endswith("KeyError: 'cart'")
    assert len(messages) == 2  # the DEBUG SQL record was filtered out
    assert stored(moto_url, "/examples/django", stream) == messages


def test_django_settings_is_a_plain_dict_config():
    """The snippet is meant for settings.py: importable without Django, nothing but data."""
    module = _load("django_settings.py")
    handler = module.LOGGING["handlers"]["cloudwatch"]
    assert handler["class"] == "cwlhandler.CloudWatchLogsHandler"
    assert "{pid}" in handler["log_stream"]
    assert "cloudwatch" in module.LOGGING["root"]["handlers"]


def test_flask_app(runs, moto_url):
    pytest.importorskip("flask")
    proc = runs("flask_app.py")
    assert "GET /orders/42 -> 200" in proc.stdout
    assert "POST /orders -> 201" in proc.stdout
    assert "GET /pay -> 500" in proc.stdout
    (stream, messages), = by_stream(printed_events(proc.stdout)).items()
    assert messages[:2] == [
        "INFO GET /orders/42: order 42 looked up",
        "INFO POST /orders: order created with 2 items",
    ]
    assert messages[2].startswith("ERROR GET /pay: Exception on /pay [GET]\nTraceback")
    assert messages[2].endswith("RuntimeError: payment service unreachable")
    assert len(messages) == 3
    assert stored(moto_url, "/examples/flask", stream) == messages


def check_lambda(stdout: str) -> Tuple[str, List[str]]:
    # The events were read back before the handler was closed: flush() delivered them.
    stats = json.loads(re.search(r"^stats: (.*)$", stdout, re.M).group(1))
    assert stats["sent"] == 4 and stats["dropped"] == 0 and stats["buffered"] == 0, stats
    assert "flush timed out" not in stdout
    assert "{'statusCode': 200, 'total': 4.75}" in stdout
    assert "invocation failed: unsupported operand type" in stdout
    (stream, messages), = by_stream(printed_events(stdout)).items()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d/[0-9a-f]{32}", stream), stream
    records = [json.loads(m) for m in messages]
    assert len(records) == 4
    first, second = records[0]["requestId"], records[2]["requestId"]  # the FakeContext's, one per invocation
    assert re.fullmatch(r"[0-9a-f]{8}", first) and re.fullmatch(r"[0-9a-f]{8}", second) and first != second
    assert records[:3] == [
        {"level": "INFO", "message": "2 items", "requestId": first},
        {"level": "INFO", "message": "total 4.75", "requestId": first},
        {"level": "INFO", "message": "1 items", "requestId": second},
    ]
    error = records[3]
    assert (error["level"], error["message"], error["requestId"]) == ("ERROR", "order failed", second)
    assert error["exception"]["type"] == "TypeError"
    assert error["exception"]["traceback"].endswith("TypeError: unsupported operand type(s) for +: 'int' and 'str'")
    return stream, messages


def test_lambda_function_flushes_before_returning(runs, moto_url):
    proc = runs("lambda_function.py")
    stream, messages = check_lambda(proc.stdout)
    assert stored(moto_url, "/examples/lambda", stream) == messages


def test_lambda_function_with_the_embedded_emulator(runs):
    """The module-level handler needs the endpoint and a region at import: the script provides both first."""
    proc = runs("lambda_function.py", embedded=True)
    assert proc.stdout.startswith("# embedded emulator at http://127.0.0.1:")
    check_lambda(proc.stdout)


def test_gunicorn_conf_is_a_config_file():
    """What gunicorn reads from it: a complete logconfig_dict with {pid}; no post_fork hook.

    tests/test_gunicorn.py runs real gunicorn (sync and gevent workers) with this file.
    """
    module = _load("gunicorn_conf.py")
    config = module.logconfig_dict
    assert not hasattr(module, "post_fork")
    assert module.workers >= 2
    assert "{pid}" in config["handlers"]["cloudwatch"]["log_stream"]
    # gunicorn replaces its default "handlers" with these: every handler used must be defined here.
    used = set(config["root"]["handlers"])
    for logger in config["loggers"].values():
        used |= set(logger.get("handlers", []))
    assert used <= set(config["handlers"])
    assert {"gunicorn.error", "gunicorn.access"} <= set(config["loggers"])


def test_structured_json(runs, moto_url):
    proc = runs("structured_json.py")
    (stream, messages), = by_stream(printed_events(proc.stdout)).items()
    assert stored(moto_url, "/examples/structured", stream) == messages
    docs = [json.loads(m) for m in messages]
    assert [(d["level"], d["message"], d["order_id"]) for d in docs] == [
        ("INFO", "charging card", "o-1001"),
        ("INFO", "charged", "o-1001"),
        ("INFO", "charging card", "o-1002"),
        ("ERROR", "charge failed", "o-1002"),
    ]
    for doc in docs:
        assert doc["service"] == "checkout" and doc["env"] == "dev"
        assert doc["logger"] == "checkout.payments"
        assert isinstance(doc["amount_cents"], int)
    assert docs[1]["tags"] == ["card", "eu"]
    error = docs[3]
    assert error["card_last4"] == "3333"
    assert error["exception"]["type"] == "ValueError"
    assert error["exception"]["message"] == "card declined"
    assert error["exception"]["traceback"].startswith("Traceback (most recent call last):")
    assert "exception" not in docs[0]


def test_metrics(runs, moto_url):
    proc = runs("metrics.py")
    cost = re.search(r"^cost per call: put_metric ([\d.]+) us, logger.info ([\d.]+) us, ratio ([\d.]+)$",
                     proc.stdout, re.M)
    put, info, ratio = map(float, cost.groups())
    assert 0 < put and 0 < info and ratio == pytest.approx(put / info, abs=0.01)
    docs = stored(moto_url, "/examples/metrics", "metrics")
    series = emf.aggregate(docs)  # every document read back passes the validator
    checkout = (("Service", "checkout"),)
    got = {(name, unit): values for (ns, dims, name, unit, _), values in series.items() if ns == "Shop"
           and dims == checkout}
    assert got.pop(("Orders", "Count")) == [1, 1, 1]
    assert sorted(got.pop(("OrderTotal", "None"))) == [5.25, 19.99, 1500.0]
    assert got.pop(("BenchValue", "Count")) == list(range(20_000))
    times = got.pop(("CheckoutTime", "Milliseconds"))
    assert got == {} and len(times) == 3 and min(times) >= 0
    pay = (("Operation", "pay"), ("Service", "checkout"))
    assert series[("Shop", pay, "Latency", "Milliseconds", 60)] == [21, 22, 23]
    assert all(json.loads(d)["Version"] == "1.4.2" for d in docs)
    # What it printed is what was read back.
    printed = proc.stdout[proc.stdout.index("# "):].splitlines()
    assert printed[0] == f"# {len(docs)} EMF documents, {len(series)} metrics"
    assert printed[1:] == [
        f"{ns}\t{','.join(f'{d}={v}' for d, v in dims)}\t{name}\t{unit}\t"
        f"count={len(v)} sum={sum(v):g} min={min(v):g} max={max(v):g}"
        for (ns, dims, name, unit, _), v in sorted(series.items(), key=lambda kv: kv[0][:4])]
    lines = stored(moto_url, "/examples/metrics", "app")
    assert lines[:3] == ["order 1 placed, total 19.99", "order 2 placed, total 1500.00", "order 3 placed, total 5.25"]
    assert len(lines) == 3 + 20_000


# -- the directory ----------------------------------------------------------------------------

def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text()
    found = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
    assert found == sorted(SCRIPTS + list(CONFIGS))
    for config, command in CONFIGS.items():
        assert command in readme, config
        assert command in (EXAMPLES / config).read_text(), config
    for script in SCRIPTS:
        assert f"python examples/{script}" in readme, script
        assert 'if __name__ == "__main__":' in (EXAMPLES / script).read_text(), script


def _load(script: str):
    """Import an example as a module (not as __main__: its demo part does not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
