"""Backup schedules: the manual's forms (several times a day, weekdays at a time, every N hours
at minute M), raw cron and on-demand — and their mapping to Airflow 3 timetables.

Every form carries an explicit ``timezone`` (IANA name, default ``UTC``); times are wall-clock
times in that zone (DST handled by Airflow's cron timetables).

``every_hours``: ``hours`` may be any value 1–23. Runs are anchored at midnight of the schedule's
time zone: hours 0, N, 2N, … (cron ``M */N * * *``). When N does not divide 24 the last gap of
the day is shorter (N=5 → 00, 05, 10, 15, 20, then 00 again: a 4-hour gap). Use ``times_daily``
or ``cron`` for anything else.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from .types import WEEKDAYS, ClockTime, StrictModel, TimeZoneName, Weekday, format_hhmm, invalid

if TYPE_CHECKING:
    from airflow.timetables.base import Timetable


class _ScheduleBase(StrictModel):
    timezone: TimeZoneName = "UTC"

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class OnDemand(_ScheduleBase):
    """Runs only when triggered (UI, CLI, REST)."""

    type: Literal["on_demand"] = "on_demand"

    def describe(self) -> str:
        return "on demand"


class TimesDaily(_ScheduleBase):
    """Every day at the given times (manual: 0:40, 9:40, 13:40 and 19:40)."""

    type: Literal["times_daily"] = "times_daily"
    times: list[ClockTime] = Field(min_length=1)

    @field_validator("times")
    @classmethod
    def _unique(cls, times: list[dt.time]) -> list[dt.time]:
        seen = set()
        for t in times:
            if t in seen:
                raise invalid(f"lists {format_hhmm(t)} twice; each time once")
            seen.add(t)
        return sorted(times)

    def describe(self) -> str:
        return f"daily at {', '.join(format_hhmm(t) for t in self.times)} ({self.timezone})"


class Weekly(_ScheduleBase):
    """On the chosen weekdays at one time (manual: Mon/Wed/Fri 10:15)."""

    type: Literal["weekly"] = "weekly"
    days: list[Weekday] = Field(min_length=1)
    at: ClockTime

    @field_validator("days", mode="before")
    @classmethod
    def _normalize(cls, days: Any) -> Any:
        if isinstance(days, list):
            out = []
            for d in days:
                key = d.strip().lower()[:3] if isinstance(d, str) else d
                if key not in WEEKDAYS:
                    raise invalid(f"lists {d!r}, not a weekday; expected: {', '.join(WEEKDAYS)}")
                if key in out:
                    raise invalid(f"lists {key!r} twice; each day once")
                out.append(key)
            return sorted(out, key=WEEKDAYS.index)
        return days

    def describe(self) -> str:
        return f"{', '.join(d.capitalize() for d in self.days)} at {format_hhmm(self.at)} ({self.timezone})"


class EveryHours(_ScheduleBase):
    """Every N hours at minute M, anchored at midnight (manual: every 3 hours at minute 10)."""

    type: Literal["every_hours"] = "every_hours"
    hours: int = Field(ge=1, le=23)
    minute: int = Field(0, ge=0, le=59)

    def describe(self) -> str:
        unit = "hour" if self.hours == 1 else f"{self.hours} hours"
        return f"every {unit} at minute {self.minute} ({self.timezone})"


_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


class Cron(_ScheduleBase):
    """A raw 5-field cron expression (or @hourly/@daily/@weekly/@monthly/@yearly)."""

    type: Literal["cron"] = "cron"
    expression: str

    @field_validator("expression")
    @classmethod
    def _valid(cls, expr: str) -> str:
        from croniter import croniter

        expr = " ".join(expr.split())
        full = _PRESETS.get(expr, expr)
        if len(full.split()) != 5 or not croniter.is_valid(full):
            raise invalid(
                "is not a cron expression; expected 5 fields 'minute hour day-of-month month "
                "day-of-week' (e.g. '30 2 * * 1-5') or @hourly/@daily/@weekly/@monthly/@yearly"
            )
        return expr

    def describe(self) -> str:
        return f"cron '{self.expression}' ({self.timezone})"


Schedule = Annotated[
    Union[OnDemand, TimesDaily, Weekly, EveryHours, Cron],
    Field(discriminator="type"),
]
"""One of the schedule forms, chosen by ``type``."""

SCHEDULE_TYPES = ("on_demand", "times_daily", "weekly", "every_hours", "cron")


def cron_expressions(schedule: OnDemand | TimesDaily | Weekly | EveryHours | Cron) -> list[str]:
    """The cron expressions (in ``schedule.timezone``) equivalent to ``schedule``; [] = on demand.

    times_daily groups times sharing a minute into one expression ('40 0,9,13,19 * * *');
    weekly → '15 10 * * mon,wed,fri'; every_hours → 'M */N * * *' ('M * * * *' for N=1).
    """
    if isinstance(schedule, OnDemand):
        return []
    if isinstance(schedule, TimesDaily):
        by_minute: dict[int, list[int]] = {}
        for t in schedule.times:
            by_minute.setdefault(t.minute, []).append(t.hour)
        return [
            f"{minute} {','.join(str(h) for h in sorted(hours))} * * *"
            for minute, hours in sorted(by_minute.items(), key=lambda kv: (min(kv[1]), kv[0]))
        ]
    if isinstance(schedule, Weekly):
        return [f"{schedule.at.minute} {schedule.at.hour} * * {','.join(schedule.days)}"]
    if isinstance(schedule, EveryHours):
        hours = "*" if schedule.hours == 1 else f"*/{schedule.hours}"
        return [f"{schedule.minute} {hours} * * *"]
    if isinstance(schedule, Cron):
        return [_PRESETS.get(schedule.expression, schedule.expression)]
    raise TypeError(f"not a schedule: {schedule!r}")


def to_timetable(schedule: OnDemand | TimesDaily | Weekly | EveryHours | Cron) -> "Timetable | None":
    """The Airflow timetable for ``schedule``: None (on demand), ``CronTriggerTimetable`` for one
    cron expression, ``MultipleCronTriggerTimetable`` for several — all with the schedule's
    time zone. Imports Airflow lazily (the config package itself stays Airflow-free)."""
    exprs = cron_expressions(schedule)
    if not exprs:
        return None
    from airflow.timetables.trigger import CronTriggerTimetable, MultipleCronTriggerTimetable

    if len(exprs) == 1:
        return CronTriggerTimetable(exprs[0], timezone=schedule.timezone)
    return MultipleCronTriggerTimetable(*exprs, timezone=schedule.timezone)
