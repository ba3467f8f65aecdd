"""Real Celery: ``celery -A app worker --pool prefork --concurrency 4 --max-tasks-per-child 1`` on kombu's filesystem
transport, with the handler set up the way users do it, by ``dictConfig`` in Celery's ``setup_logging`` signal.

billiard's pool children end through ``os._exit`` (billiard/pool.py ``Worker._do_exit``, after calling Celery's
``process_destructor``, which sends ``worker_process_shutdown``): no atexit hook, no ``logging.shutdown``.  With
``--max-tasks-per-child 1`` every task runs in a child that then exits that way.  Each task logs one record and
leaves a file naming its pid; once every file is there the test sends SIGTERM to the main worker process (Celery's
warm shutdown), requires a prompt exit, and reads the group back from moto: every task's record exactly once, in
the ``{pid}`` stream of the child that ran it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from typing import Dict, List

import pytest

from helpers import program, read_group, running, subprocess_env, wait_until

TASKS = 8
APP = '''
import logging
import logging.config
import os

from celery import Celery, signals

BROKER = os.environ["CWL_BROKER"]
app = Celery("cwl_celery_app", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": BROKER, "data_folder_out": BROKER, "data_folder_processed": BROKER + ".processed",
    "store_processed": False, "polling_interval": 0.05}


@signals.setup_logging.connect
def setup_logging(**kwargs):
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"cloudwatch": {
            "class": "cwlhandler.CloudWatchLogsHandler", "log_group": os.environ["CWL_GROUP"], "log_stream": "{pid}",
            "endpoint_url": os.environ["CWL_ENDPOINT"], "region_name": "us-east-1", "flush_interval": 0.2,
            "shutdown_timeout": 10}},
        "loggers": {"tasks": {"handlers": ["cloudwatch"], "level": "INFO", "propagate": False}},
    })


@app.task(name="log_one")
def log_one(n):
    logging.getLogger("tasks").info("task %d in %d", n, os.getpid())
    done = os.path.join(os.environ["CWL_DONE"], str(n))
    with open(done + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(done + ".tmp", done)
'''


def test_prefork_children_deliver_every_task_record_once(request, tmp_path, moto_url):
    from celery import Celery

    group = "celery-" + re.sub(r"[^A-Za-z0-9_\-]", "-", request.node.name)
    broker, done = tmp_path / "broker", tmp_path / "done"
    for folder in (broker, done, tmp_path / "broker.processed"):
        folder.mkdir()
    (tmp_path / "cwl_celery_app.py").write_text(APP)

    producer = Celery("producer", broker="filesystem://")
    producer.conf.broker_transport_options = {  # control_folder: kombu's default is ./control, in the checkout
        "data_folder_in": str(broker), "data_folder_out": str(broker), "control_folder": str(tmp_path / "control")}
    for n in range(TASKS):
        producer.send_task("log_one", args=(n,))

    env = subprocess_env(CWL_GROUP=group, CWL_ENDPOINT=moto_url, CWL_BROKER=str(broker), CWL_DONE=str(done))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    args = [program("celery"), "-A", "cwl_celery_app", "worker", "--pool", "prefork", "--concurrency", "4",
            "--max-tasks-per-child", "1", "--without-mingle", "--without-gossip", "--without-heartbeat"]
    with running(args, cwd=str(tmp_path), env=env) as proc:
        def fail(why: str) -> None:
            os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate(timeout=30)
            pytest.fail(f"{why}; celery stderr:\n{err[-3000:]}")

        if not wait_until(lambda: len(os.listdir(done)) == TASKS or proc.poll() is not None, 60):
            fail(f"only {len(os.listdir(done))} of {TASKS} tasks ran within 60 s")
        if proc.poll() is not None:
            fail(f"the worker exited early with {proc.returncode}")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            fail("the worker did not exit within 30 s of SIGTERM")
        elapsed = time.monotonic() - started
    # Celery alone needs up to ~5 s here (its loop notices the signal within 2 s, children sleep 1 s at exit);
    # the handler's shutdown_timeout is 10 s, so a process that waited out its deadline shows.
    assert proc.returncode == 0 and elapsed < 9, (
        f"the worker exited with {proc.returncode} {elapsed:.1f} s after SIGTERM; stderr:\n{err[-3000:]}")

    expected: Dict[str, List[str]] = {}
    for n in range(TASKS):
        pid = (done / str(n)).read_text()
        expected.setdefault(pid, []).append(f"task {n} in {pid}")
    stored = {stream: sorted(messages) for stream, messages in read_group(moto_url, group).items()}
    assert stored == {pid: sorted(messages) for pid, messages in expected.items()}, (
        f"stored events (left) differ from the records logged; celery stderr:\n{err[-3000:]}")
