"""Small value types shared by the configuration models.

Every validator raises ``invalid(...)``: a pydantic custom error whose phrase reads after the bad
value (``'25:99' is not a time; expected HH:MM (00:00–23:59)``), so ``errors.py`` can turn any
validation failure into one line naming file, field, value and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

_NO_VALUE = object()


def invalid(
    phrase: str, *, field: str | tuple[str | int, ...] | None = None, value: Any = _NO_VALUE
) -> PydanticCustomError:
    """The one error type of the config models.

    ``phrase`` follows the value in the final message; ``field`` (a sub-field name) is appended
    to the error location when a model-level check is about one field; ``value`` replaces the
    input shown in the message (for model-level checks, where the input is the whole mapping).
    """
    ctx: dict[str, Any] = {"phrase": phrase}
    if field is not None:
        ctx["field"] = (field,) if isinstance(field, str) else tuple(field)
    if value is not _NO_VALUE:
        ctx["value"] = value
    return PydanticCustomError("ys1000", "{phrase}", ctx)


# -- strict base model: unknown fields are reported with what is allowed ----------------------


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (typos are caught), frozen values.

    Unknown keys are reported by a before-validator (not pydantic's ``extra_forbidden``) so the
    message lists the allowed fields and the closest match.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, hide_input_in_errors=True)

    # keys refused with a dedicated message (e.g. a literal key in a repository): name -> phrase
    _refused_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        cls._check_input(data)
        allowed = list(cls.model_fields)
        for key in data:
            if key in cls._refused_keys:
                raise invalid(cls._refused_keys[key], field=str(key), value=Redacted())
        for key in data:
            if key not in cls.model_fields:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise invalid(
                    f"is not a known field; {hint}allowed: {', '.join(allowed)}",
                    field=str(key),
                    value=_UnknownKey(str(key)),
                )
        return data

    @classmethod
    def _check_input(cls, data: dict) -> None:
        """Hook for subclasses: raise ``invalid(...)`` for inputs refused before field checks."""


class Redacted(str):
    """Shown instead of a (possible) secret in error messages."""

    def __new__(cls) -> "Redacted":
        return super().__new__(cls, "<redacted>")

    def __repr__(self) -> str:
        return "<redacted>"


class _UnknownKey(str):
    """Marker: the bad 'value' of an unknown-field error is the key itself."""


# -- names --------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_dns_label(value: Any) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 63:
        raise invalid(
            "is not a valid name; expected a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


DnsLabel = Annotated[str, BeforeValidator(check_dns_label)]

_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")


def check_conn_id(value: Any) -> str:
    if not isinstance(value, str) or not _CONN_ID.match(value):
        raise invalid("is not a valid Airflow connection/Variable id; expected letters, digits, '_', '.', '-'")
    return value


ConnId = Annotated[str, BeforeValidator(check_conn_id)]


def check_nonempty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise invalid("is empty; a value is required")
    return value


NonEmptyStr = Annotated[str, AfterValidator(check_nonempty)]

# -- clock times --------------------------------------------------------------------------------

_HHMM = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


def parse_hhmm(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return dt.time(int(m.group(1)), int(m.group(2)))
    raise invalid("is not a time; expected HH:MM (00:00–23:59)")


def format_hhmm(value: dt.time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


ClockTime = Annotated[
    dt.time,
    BeforeValidator(parse_hhmm),
    PlainSerializer(format_hhmm, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$"}),
]
"""A time of day written ``HH:MM`` (a ``datetime.time`` in Python, ``"HH:MM"`` when dumped)."""

# -- durations ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(value: Any) -> dt.timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"1d12h"``, ``"2w"`` -> timedelta (must be > 0)."""
    if isinstance(value, dt.timedelta):
        td = value
    elif isinstance(value, str) and _DURATION.match(value.strip()):
        td = dt.timedelta(**{_UNIT[u]: 0 for u in _UNIT})
        try:
            for num, unit in _DURATION_PART.findall(value.strip()):
                td += dt.timedelta(**{_UNIT[unit]: int(num)})
        except OverflowError:  # beyond timedelta's range (999999999 days): not a traceback
            raise invalid("is too long a duration; at most 999999999d") from None
    else:
        raise invalid(
            "is not a duration; expected a number and a unit, e.g. '30m', '12h', '7d', '2w' "
            "(units: s, m, h, d, w; combinations like '1d12h' are allowed)"
        )
    if td <= dt.timedelta(0):
        raise invalid("is not a positive duration; it must be greater than zero")
    return td


def format_duration(td: dt.timedelta) -> str:
    seconds = int(td.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+[wdhms])+$"}),
]
"""A positive duration written like ``7d`` (a ``datetime.timedelta`` in Python)."""

# -- time zones ---------------------------------------------------------------------------------


def check_timezone(value: Any) -> str:
    if isinstance(value, str) and value:
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'America' (a directory), a long name
            pass
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
    raise invalid(f"is not a time zone; expected an IANA name like 'UTC' or 'Asia/Shanghai'{hint}")


TimeZoneName = Annotated[str, BeforeValidator(check_timezone)]

# -- Kubernetes label selectors -----------------------------------------------------------------

_LABEL_KEY = r"(?:[a-z0-9A-Z.\-]+/)?[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?"
_LABEL_VAL = r"(?:[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?"
_REQ_EQ = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VAL})\s*$")
_REQ_SET = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_REQ_EXISTS = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")


def _split_selector(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_label_selector(selector: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Parse a Kubernetes label selector into ``(key, op, values)`` requirements.

    ``op`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!exists``. Raises
    ``ValueError`` on bad syntax.
    """
    reqs: list[tuple[str, str, tuple[str, ...]]] = []
    for part in _split_selector(selector):
        if m := _REQ_SET.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise ValueError(f"empty value set in {part.strip()!r}")
            reqs.append((m.group(1), m.group(2), values))
        elif m := _REQ_EQ.match(part):
            op = "=" if m.group(2) in ("=", "==") else "!="
            reqs.append((m.group(1), op, (m.group(3),)))
        elif m := _REQ_EXISTS.match(part):
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", ()))
        else:
            raise ValueError(f"bad requirement {part.strip()!r}")
    return reqs


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy the Kubernetes label ``selector`` (empty selector: all)."""
    if not selector.strip():
        return True
    for key, op, values in parse_label_selector(selector):
        present = key in labels
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op == "=" and labels.get(key) != values[0]:
            return False
        if op == "!=" and present and labels[key] == values[0]:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
    return True


def check_label_selector(value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, str) or not value.strip():
        raise invalid("is not a label selector; expected e.g. 'app=web,tier in (db,cache)'")
    try:
        parse_label_selector(value)
    except ValueError as exc:
        raise invalid(
            f"is not a valid label selector ({exc}); expected requirements like 'app=web', "
            "'env!=dev', 'tier in (db,cache)', 'release', '!legacy' separated by commas"
        ) from None
    return value


LabelSelector = Annotated[str, BeforeValidator(check_label_selector)]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
