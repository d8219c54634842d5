"""Schedule forms → cron expressions → Airflow timetables with the expected next run times."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from pydantic import TypeAdapter, ValidationError

from ys1000.config import (
    Cron,
    EveryHours,
    OnDemand,
    Schedule,
    TimesDaily,
    Weekly,
    cron_expressions,
    to_timetable,
)

SCHEDULE = TypeAdapter(Schedule)


def sched(**kw):
    return SCHEDULE.validate_python(kw)


@pytest.mark.parametrize(
    "spec, exprs",
    [
        ({"type": "on_demand"}, []),
        ({"type": "times_daily", "times": ["00:40", "09:40", "13:40", "19:40"]}, ["40 0,9,13,19 * * *"]),
        ({"type": "times_daily", "times": ["13:05", "01:30", "09:30"]}, ["30 1,9 * * *", "5 13 * * *"]),
        ({"type": "weekly", "days": ["fri", "mon", "wed"], "at": "10:15"}, ["15 10 * * mon,wed,fri"]),
        ({"type": "weekly", "days": ["Sunday", "SAT"], "at": "7:05"}, ["5 7 * * sat,sun"]),
        ({"type": "every_hours", "hours": 6, "minute": 30}, ["30 */6 * * *"]),
        ({"type": "every_hours", "hours": 3, "minute": 10}, ["10 */3 * * *"]),
        ({"type": "every_hours", "hours": 1}, ["0 * * * *"]),
        ({"type": "every_hours", "hours": 5, "minute": 0}, ["0 */5 * * *"]),
        ({"type": "cron", "expression": "30  2 * * 1-5"}, ["30 2 * * 1-5"]),
        ({"type": "cron", "expression": "@daily"}, ["0 0 * * *"]),
    ],
)
def test_cron_expressions(spec, exprs):
    assert cron_expressions(sched(**spec)) == exprs


def test_timezone_default_and_validation():
    assert sched(type="on_demand").timezone == "UTC"
    assert sched(type="weekly", days=["mon"], at="10:15", timezone="Asia/Shanghai").timezone == "Asia/Shanghai"
    with pytest.raises(ValidationError):
        sched(type="on_demand", timezone="Mars/Olympus")


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "times_daily", "times": []},
        {"type": "times_daily", "times": ["24:00"]},
        {"type": "times_daily", "times": ["10:00", "10:00"]},
        {"type": "weekly", "days": [], "at": "10:00"},
        {"type": "weekly", "days": ["mon"]},
        {"type": "every_hours", "hours": 0},
        {"type": "every_hours", "hours": 24},
        {"type": "every_hours", "hours": 2, "minute": 60},
        {"type": "cron", "expression": "* * * *"},
        {"type": "cron", "expression": "0 0 * * * *"},
        {"type": "cron", "expression": "99 * * * *"},
        {"type": "hourly"},
        {"type": "on_demand", "times": ["10:00"]},
    ],
)
def test_invalid_schedules(spec):
    with pytest.raises(ValidationError):
        sched(**spec)


def test_on_demand_has_no_timetable():
    assert to_timetable(OnDemand()) is None


def test_timetable_classes():
    from airflow.timetables.trigger import CronTriggerTimetable, MultipleCronTriggerTimetable

    single = to_timetable(TimesDaily(times=["00:40", "09:40"], timezone="Asia/Shanghai"))
    assert type(single) is CronTriggerTimetable
    assert single.serialize()["expression"] == "40 0,9 * * *"
    assert single.serialize()["timezone"] == "Asia/Shanghai"
    multi = to_timetable(TimesDaily(times=["01:30", "13:05"]))
    assert type(multi) is MultipleCronTriggerTimetable
    assert multi.serialize()["expressions"] == ["30 1 * * *", "5 13 * * *"]
    assert type(to_timetable(Weekly(days=["mon"], at="10:15"))) is CronTriggerTimetable
    assert type(to_timetable(EveryHours(hours=6, minute=30))) is CronTriggerTimetable
    assert type(to_timetable(Cron(expression="0 3 * * *", timezone="Europe/Berlin"))) is CronTriggerTimetable


def _runs(timetable, earliest: pendulum.DateTime, count: int) -> list[pendulum.DateTime]:
    """The first ``count`` scheduled run times at or after ``earliest`` (catchup on, as the
    scheduler computes them one after the other)."""
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=True)
    out, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        out.append(info.run_after)
        last = info.data_interval
    return out


def test_times_daily_next_runs_in_shanghai():
    tt = to_timetable(TimesDaily(times=["00:40", "09:40", "13:40", "19:40"], timezone="Asia/Shanghai"))
    sh = pendulum.timezone("Asia/Shanghai")
    start = pendulum.datetime(2025, 3, 3, 10, 0, tz=sh)  # after 09:40, before 13:40 local
    runs = _runs(tt, start, 5)
    expected = [
        pendulum.datetime(2025, 3, 3, 13, 40, tz=sh),
        pendulum.datetime(2025, 3, 3, 19, 40, tz=sh),
        pendulum.datetime(2025, 3, 4, 0, 40, tz=sh),
        pendulum.datetime(2025, 3, 4, 9, 40, tz=sh),
        pendulum.datetime(2025, 3, 4, 13, 40, tz=sh),
    ]
    assert runs == expected
    # the same instants in UTC (Shanghai is UTC+8): 05:40, 11:40, 16:40, 01:40 ...
    assert runs[0].in_timezone("UTC") == pendulum.datetime(2025, 3, 3, 5, 40, tz="UTC")


def test_weekly_next_runs_mon_wed_fri():
    tt = to_timetable(Weekly(days=["mon", "wed", "fri"], at="10:15"))
    start = pendulum.datetime(2025, 3, 5, 10, 16, tz="UTC")  # Wednesday, just after 10:15
    assert _runs(tt, start, 4) == [
        pendulum.datetime(2025, 3, 7, 10, 15, tz="UTC"),  # Fri
        pendulum.datetime(2025, 3, 10, 10, 15, tz="UTC"),  # Mon
        pendulum.datetime(2025, 3, 12, 10, 15, tz="UTC"),  # Wed
        pendulum.datetime(2025, 3, 14, 10, 15, tz="UTC"),  # Fri
    ]


def test_every_6_hours_at_minute_30():
    tt = to_timetable(EveryHours(hours=6, minute=30))
    start = pendulum.datetime(2025, 3, 5, 13, 0, tz="UTC")
    assert _runs(tt, start, 5) == [
        pendulum.datetime(2025, 3, 5, 18, 30, tz="UTC"),
        pendulum.datetime(2025, 3, 6, 0, 30, tz="UTC"),
        pendulum.datetime(2025, 3, 6, 6, 30, tz="UTC"),
        pendulum.datetime(2025, 3, 6, 12, 30, tz="UTC"),
        pendulum.datetime(2025, 3, 6, 18, 30, tz="UTC"),
    ]


def test_every_n_hours_not_dividing_24_restarts_at_midnight():
    tt = to_timetable(EveryHours(hours=5, minute=0))
    start = pendulum.datetime(2025, 3, 5, 16, 0, tz="UTC")
    assert [r.hour for r in _runs(tt, start, 4)] == [20, 0, 5, 10]


def test_multiple_cron_timetable_next_runs():
    tt = to_timetable(TimesDaily(times=["01:30", "13:05"], timezone="Asia/Shanghai"))
    sh = pendulum.timezone("Asia/Shanghai")
    start = pendulum.datetime(2025, 3, 3, 2, 0, tz=sh)
    assert _runs(tt, start, 3) == [
        pendulum.datetime(2025, 3, 3, 13, 5, tz=sh),
        pendulum.datetime(2025, 3, 4, 1, 30, tz=sh),
        pendulum.datetime(2025, 3, 4, 13, 5, tz=sh),
    ]


def test_describe():
    assert TimesDaily(times=["09:40", "00:40"]).describe() == "daily at 00:40, 09:40 (UTC)"
    assert Weekly(days=["mon", "fri"], at="10:15").describe() == "Mon, Fri at 10:15 (UTC)"
    assert OnDemand().describe() == "on demand"
    assert isinstance(Weekly(days=["mon"], at="7:05").at, dt.time)
