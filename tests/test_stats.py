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


def test_racing_reports_never_repeat_a_drop(capsys):
    """Issue 10, bug 6: the flusher's report and shutdown's forced one raced.

    The first report read its snapshot, then (inside the clock call, between its
    lock regions) the forced report of a newer snapshot ran to the end.  The
    first then reported its older drops again and wound the reported counts
    back, so a third report repeated them once more.
    """
    import threading

    times = iter([0.0, 1000.0, 2000.0])
    racer: list = []

    def clock() -> float:
        if not racer:  # the first report's clock call: shutdown's forced report runs to the end meanwhile
            racer.append(threading.Thread(target=reporter.drops, args=({"too_old": 5},), kwargs={"force": True}))
            racer[0].start()
            racer[0].join()
        return next(times)

    reporter = Reporter("grp", clock=clock)
    reporter.drops({"too_old": 3})
    reporter.drops({"too_old": 5}, force=True)  # nothing new since the forced report
    reported = sum(int(line.split()[3]) for line in capsys.readouterr().err.splitlines())
    assert reported == 5


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
