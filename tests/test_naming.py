"""Routing records to streams: placeholders, process fields after fork, bounded memory."""
from __future__ import annotations

import logging
import os

from cwlhandler import naming
from cwlhandler.naming import NameTemplate, Router


def record(name="app", level=logging.INFO, created=0.0, thread="MainThread"):
    rec = logging.LogRecord(name, level, __file__, 1, "m", None, None)
    rec.created = created
    rec.threadName = thread
    return rec


def route(r, rec):
    return r.route(rec, int(rec.created * 1000))


def router(group="g", stream="{hostname}/{program}/{pid}"):
    return Router(NameTemplate("log_group", group, "group"), NameTemplate("log_stream", stream, "stream"), "u1")


def test_static_template_is_rendered_once_per_process():
    r = router(stream="{pid}-{uuid}")
    assert route(r, record()) == ("g", f"{os.getpid()}-u1")
    assert r._cache == {}  # no per-record work, nothing cached


def test_record_placeholders():
    r = router(group="app-{level}", stream="{logger}/{thread}/{date}")
    assert route(r, record("svc.db", logging.ERROR, created=86400 * 365.5, thread="T-1")) == (
        "app-ERROR",
        "svc.db/T-1/1971-01-01",
    )


def test_idle_names_are_forgotten_so_memory_stays_bounded():
    r = router(stream="{logger}/{date}")
    for day in range(3 * naming._CACHE_LIMIT):
        route(r, record(created=day * 86400.0))
        assert len(r._cache) <= naming._CACHE_LIMIT
    assert route(r, record(created=0.0)) == ("g", "app/1970-01-01")  # recomputed after being forgotten


def test_process_fields_change_after_reset(monkeypatch):
    r = router(stream="{pid}")
    monkeypatch.setattr(os, "getpid", lambda: 424242)
    r.reset()
    assert route(r, record()) == ("g", "424242")


def test_date_comes_from_the_timestamp_emit_computed():
    r = router(stream="{date}")
    assert r.route(record(created=float("nan")), 86_400_000 * 365) == ("g", "1971-01-01")
    assert r.route(record(), 10**20) == ("g", "invalid-date")  # past year 9999: dropped later as too new
