"""The stderr reporter: problems and drops at most once a minute, never through logging."""
from __future__ import annotations

from cwlhandler.stats import REPORT_INTERVAL, Reporter, Stats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_drops_are_reported_at_most_once_a_minute_and_never_twice(capsys):
    clock = Clock()
    reporter = Reporter("grp", clock=clock)
    reporter.drops({"buffer_full": 3})
    reporter.drops({"buffer_full": 5})  # within the minute: held back
    clock.now += REPORT_INTERVAL
    reporter.drops({"buffer_full": 5, "too_old": 1})
    reporter.drops({"buffer_full": 5, "too_old": 1})  # nothing new
    clock.now += REPORT_INTERVAL
    reporter.drops({"buffer_full": 5, "too_old": 1})  # nothing new, even after a minute
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "cwlhandler (grp): dropped 3 log events (buffer_full: 3); see stats()",
        "cwlhandler (grp): dropped 3 log events (buffer_full: 2, too_old: 1); see stats()",
    ]


def test_forced_report_at_close_ignores_the_interval(capsys):
    clock = Clock()
    reporter = Reporter("grp", clock=clock)
    reporter.drops({"rejected": 1})
    reporter.drops({"rejected": 2}, force=True)
    assert capsys.readouterr().err.count("dropped 1 log events") == 2


def test_each_problem_is_reported_once_a_minute(capsys):
    clock = Clock()
    reporter = Reporter("grp", clock=clock)
    for _ in range(5):
        reporter.problem("auth", "bad key")
        reporter.problem("other", "different cause")
    clock.now += REPORT_INTERVAL
    reporter.problem("auth", "bad key")
    err = capsys.readouterr().err
    assert err.count("bad key") == 2 and err.count("different cause") == 1


def test_stats_snapshot_is_a_copy():
    stats = Stats()
    stats.add("sent", 3)
    stats.drop({"too_old": 2, "too_new": 0})
    snap = stats.snapshot()
    snap["dropped_by_reason"]["too_old"] = 99
    assert stats.snapshot() == {"sent": 3, "api_calls": 0, "retries": 0, "entity_rejected": 0,
                                "dropped_by_reason": {"too_old": 2}}


def test_once_reports_each_key_the_first_time_only(capsys):
    clock = Clock()
    reporter = Reporter("grp", clock=clock)
    reporter.once("entity:InvalidEntity", "rejected entity")
    clock.now += 10 * REPORT_INTERVAL
    reporter.once("entity:InvalidEntity", "rejected entity")
    reporter.once("entity:InvalidTypeValue", "rejected type")
    reporter.problem("entity:InvalidEntity", "a problem of the same name is another key")
    assert capsys.readouterr().err.splitlines() == [
        "cwlhandler (grp): rejected entity",
        "cwlhandler (grp): rejected type",
        "cwlhandler (grp): a problem of the same name is another key",
    ]
