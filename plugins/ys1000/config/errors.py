"""Configuration errors: one line per problem, naming file, field path, bad value and what is
allowed. Pydantic's errors are translated into that shape here, in one place."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Iterable

from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: ``file: field.path: 'value' what is wrong; what is allowed (line N)``."""

    file: str
    loc: Loc
    message: str
    line: int | None = None

    @property
    def field(self) -> str:
        """The dotted field path (``policy.schedule.at``; list items by index). A key with a
        control character or line break is quoted, so that one problem stays one line."""
        return ".".join(str(p) if str(p).isprintable() else repr(str(p)) for p in self.loc)

    def __str__(self) -> str:
        parts = [self.file]
        if self.loc:
            parts.append(self.field)
        text = ": ".join(parts) + ": " + self.message
        if self.line is not None:
            text += f" (line {self.line})"
        return text


class ConfigError(ValueError):
    """Invalid configuration; ``issues`` lists every problem found (``str()`` has one per line)."""

    def __init__(self, issues: Iterable[ConfigIssue], path: Path | None = None) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.path = path
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(
        cls, file: str, message: str, loc: Loc = (), line: int | None = None, path: Path | None = None
    ) -> "ConfigError":
        return cls([ConfigIssue(file, tuple(loc), message, line)], path)


# -- pydantic → ConfigIssue -------------------------------------------------------------------

_UNION_CHOICES = {
    "type": ("on_demand", "times_daily", "weekly", "every_hours", "cron"),
    "kind": ("BackupPlan", "RestorePlan", "MigrationPlan"),
}


def show_value(value: Any) -> str | None:
    """How a bad value appears in a message (None: not shown)."""
    from .types import Redacted

    if isinstance(value, Redacted):
        return "<redacted>"
    if value is None:
        return None
    if isinstance(value, (str, int, float, bool)):
        text = repr(str(value)) if isinstance(value, str) else repr(value)
        return text if len(text) <= 80 else text[:77] + "...'"
    if isinstance(value, (dt.date, dt.time)):  # YAML reads a plain 2024-01-01 as a date
        return repr(str(value))
    if isinstance(value, (list, dict, tuple, set, frozenset)):
        text = repr(value)
        return text if len(text) <= 80 else None
    return None


def clean_loc(loc: Iterable[str | int], data: Any) -> Loc:
    """Drop union tags from pydantic's location (``('policy', 'inline', 'schedule', 'weekly',
    'at')`` → ``('policy', 'schedule', 'at')``) by walking the input data alongside it."""
    loc = list(loc)
    out: list[str | int] = []
    cur: Any = data
    for i, el in enumerate(loc):
        last = i == len(loc) - 1
        if el == "[key]":
            continue
        if isinstance(cur, dict):
            if el in cur:
                out.append(el)
                cur = cur[el]
            elif last:
                out.append(el)  # a missing or unknown field
                cur = None
            # else: a union tag
        elif isinstance(cur, list):
            if isinstance(el, int) and 0 <= el < len(cur):
                out.append(el)
                cur = cur[el]
            elif last and isinstance(el, int):
                out.append(el)
        # below a scalar: only union tags
    return tuple(out)


def _phrase(err: Mapping[str, Any]) -> tuple[str, Any, Loc]:
    """(phrase, value, extra loc) for one pydantic error dict."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    extra: Loc = ()
    if kind == "ys1000":
        if "value" in ctx:
            value = ctx["value"]
        return ctx["phrase"], value, tuple(ctx.get("field", ()))
    if kind == "missing":
        return "is required", None, extra
    if kind == "literal_error":
        return f"is not allowed; expected one of: {ctx.get('expected')}", value, extra
    if kind == "union_tag_invalid":
        disc = str(ctx.get("discriminator", "")).strip("'")
        return (f"is not allowed; expected one of: {ctx.get('expected_tags')}", ctx.get("tag"), (disc,))
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "")).strip("'")
        choices = ", ".join(_UNION_CHOICES.get(disc, ()))
        return f"is required; one of: {choices}" if choices else "is required", None, (disc,)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "is not a whole number", value, extra
    if kind in ("bool_type", "bool_parsing"):
        return "is not a boolean; expected true or false", value, extra
    if kind in ("string_type",):
        return "is not text; expected a string", value, extra
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "is not a mapping; expected 'key: value' entries", value, extra
    if kind in ("list_type", "tuple_type", "set_type"):
        return "is not a list; expected a YAML list ('- item' lines or [a, b])", value, extra
    if kind == "greater_than":
        return f"is too small; must be greater than {ctx.get('gt')}", value, extra
    if kind == "greater_than_equal":
        return f"is too small; must be at least {ctx.get('ge')}", value, extra
    if kind == "less_than":
        return f"is too large; must be less than {ctx.get('lt')}", value, extra
    if kind == "less_than_equal":
        return f"is too large; must be at most {ctx.get('le')}", value, extra
    if kind == "too_short":
        return f"is too short; needs at least {ctx.get('min_length')} item(s)", value, extra
    if kind == "too_long":
        return f"is too long; at most {ctx.get('max_length')} item(s)", value, extra
    msg = err.get("msg", "is invalid")
    return msg[0].lower() + msg[1:] if msg else "is invalid", value, extra


def issues_from_validation_error(
    exc: ValidationError, *, file: str, data: Any, prefix: Loc = (), line_of=None
) -> list[ConfigIssue]:
    """Translate a pydantic ``ValidationError`` for ``data`` (loaded from ``file``).

    ``prefix`` is prepended to every location (e.g. the cluster name when validating one entry);
    ``line_of(loc)`` may return the YAML line of a location.
    """
    issues: list[ConfigIssue] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        phrase, value, extra = _phrase(err)
        loc = tuple(prefix) + clean_loc(tuple(err["loc"]) + tuple(extra), data)
        shown = show_value(value)
        message = f"{shown} {phrase}" if shown is not None else phrase
        if (loc, message) in seen:
            continue
        seen.add((loc, message))
        issues.append(ConfigIssue(file, loc, message, line_of(loc) if line_of else None))
    return issues
