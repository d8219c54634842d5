"""The protection dashboard: where each protected application stands against its objectives.

A protected application is a backup plan × one of its namespaces: the plan's ``names``, or, for a
plan selecting by glob or label selector, the namespaces of its newest backup (one row for the
plan while it has none). A row's backups are the plan's backups holding that namespace, so a
namespace that stopped being backed up (deleted, no longer matched) ages towards its RPO like a
plan without backups. RPO and RTO states come from ``ys1000.objectives.plan_objectives``, the
function the RPO watch alerts from, so the page and the alerts agree.

Each repository is listed once per request (its catalog and drill states), not once per row.

A row (``GET /ys1000/api/protection`` → ``{"generated_at", "rows": [...]}``)::

    plan, cluster, repository, namespace (None: the plan has no backup yet), dag_id,
    last_backup: {backup_id, created, completed, age_seconds} | None     newest Completed one
    rpo: {seconds, state: ok | at_risk | breached} | None                None: the plan has no rpo
    last_drill: {backup_id, drill_id, state: verified | failed, rto_seconds, reason, finished} | None
    rto: {seconds, state: ok | exceeded | None} | None                   state None: no RTO measured
    next_run: {state: scheduled | paused | not_scheduled | missing, at, logical_date, due, schedule}
    history: {backups: [{backup_id, created, status, archive_size, duration_seconds}],
              drills: [{backup_id, drill_id, state, rto_seconds, reason}]}   last 30, oldest first
    error: None, or why the repository could not be listed (then no backup, drill or history)
    links: {catalog, dag, backup, drill_backup, drill_evidence}          (added by the app)
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable

from markupsafe import Markup, escape

from ys1000.objectives import plan_objectives
from ys1000.units import human_size

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ys1000.config import BackupPlan, Config
    from ys1000.repository import CatalogEntry

    from .backups import Backups

log = logging.getLogger(__name__)

HISTORY = 30  # backups per chart


class _Listed:
    """What ``plan_objectives`` needs of a repository, over entries listed already."""

    def __init__(self, entries: list["CatalogEntry"]) -> None:
        self._entries = entries

    def list_backups(self, plan: str | None = None) -> list["CatalogEntry"]:
        return [e for e in self._entries if plan is None or e.plan == plan]


def row_namespaces(plan: "BackupPlan", entries: list["CatalogEntry"]) -> list[str | None]:
    """The namespaces a plan protects (``entries``: its backups, newest first); None: unknown yet."""
    if plan.namespaces.exact:
        return [*plan.namespaces.names]
    if entries and entries[0].namespaces:
        return [*sorted(entries[0].namespaces)]
    return [None]


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def next_runs(session: "Session", dag_ids: Iterable[str], now: datetime) -> dict[str, dict[str, Any]]:
    """dag id → when the scheduler creates its next run, from Airflow's ``DagModel``.

    ``state``: ``scheduled`` (``at``: ``next_dagrun_create_after``, ``logical_date``:
    ``next_dagrun``; ``due``: ``at`` has passed — the scheduler creates the run on its next loop,
    or it is not running), ``paused``, ``not_scheduled`` (on demand, or the schedule ended) or
    ``missing`` (the DAG is not in Airflow's database: not parsed yet, or the file is broken).
    """
    from sqlalchemy import select

    from airflow.models.dag import DagModel

    ids = sorted(set(dag_ids))
    found = {m.dag_id: m for m in session.scalars(select(DagModel).where(DagModel.dag_id.in_(ids)))}
    out: dict[str, dict[str, Any]] = {}
    for dag_id in ids:
        m = found.get(dag_id)
        if m is None or m.is_stale:
            out[dag_id] = {"state": "missing", "at": None, "logical_date": None, "due": False}
        elif m.is_paused:
            out[dag_id] = {"state": "paused", "at": None, "logical_date": None, "due": False}
        elif m.next_dagrun_create_after is None:
            out[dag_id] = {"state": "not_scheduled", "at": None, "logical_date": None, "due": False}
        else:
            out[dag_id] = {
                "state": "scheduled",
                "at": _iso(m.next_dagrun_create_after),
                "logical_date": _iso(m.next_dagrun),
                "due": m.next_dagrun_create_after <= now,
            }
    return out


def _history(entries: list["CatalogEntry"]) -> dict[str, list[dict[str, Any]]]:
    """The last ``HISTORY`` backups (oldest first) and the drills of those that were drilled."""
    recent = list(reversed(entries[:HISTORY]))
    backups = [
        {
            "backup_id": e.backup_id,
            "created": _iso(e.created),
            "status": e.status,
            "archive_size": e.archive_size,
            "duration_seconds": round((e.completed - e.created).total_seconds(), 2),
        }
        for e in recent
    ]
    drills = [
        {
            "backup_id": e.backup_id,
            "drill_id": e.drill.get("drill_id"),
            "state": e.drill.get("state"),
            "rto_seconds": e.drill.get("rto_seconds"),
            "reason": e.drill.get("reason"),
        }
        for e in recent
        if e.drill
    ]
    return {"backups": backups, "drills": drills}


def plan_rows(
    plan: "BackupPlan",
    entries: list["CatalogEntry"],
    now: datetime,
    next_run: dict[str, Any],
    schedule: str | None,
) -> list[dict[str, Any]]:
    """The rows of one plan (``entries``: the repository's backups of the plan, newest first)."""
    rows = []
    for ns in row_namespaces(plan, entries):
        mine = [e for e in entries if ns is None or ns in e.namespaces]
        obj = plan_objectives(_Listed(mine), plan, now)
        good = next((e for e in mine if e.status == "Completed"), None)
        drill = obj.get("last_drill")
        rows.append(
            {
                "plan": plan.name,
                "cluster": plan.cluster,
                "repository": plan.repository,
                "namespace": ns,
                "dag_id": plan.dag_id,
                "last_backup": None
                if good is None
                else {
                    "backup_id": good.backup_id,
                    "created": _iso(good.created),
                    "completed": _iso(good.completed),
                    "age_seconds": round((now - good.created).total_seconds(), 1),
                },
                "rpo": None if plan.rpo is None else {"seconds": obj["rpo_seconds"], "state": obj["rpo_state"]},
                "last_drill": None
                if drill is None
                else {k: drill.get(k) for k in ("backup_id", "drill_id", "state", "rto_seconds", "reason", "finished")},
                # state None: no drill measured an RTO yet (none, or the newest failed)
                "rto": None
                if plan.rto is None
                else {"seconds": plan.rto.total_seconds(), "state": obj.get("rto_state")},
                "next_run": {**next_run, "schedule": schedule},
                "history": _history(mine),
                "error": None,
            }
        )
    return rows


def error_row(plan: "BackupPlan", message: str, next_run: dict[str, Any], schedule: str | None) -> dict[str, Any]:
    """A plan whose repository could not be listed: the objectives without their states."""
    return {
        "plan": plan.name,
        "cluster": plan.cluster,
        "repository": plan.repository,
        "namespace": None,
        "dag_id": plan.dag_id,
        "last_backup": None,
        "rpo": None if plan.rpo is None else {"seconds": plan.rpo.total_seconds(), "state": None},
        "last_drill": None,
        "rto": None if plan.rto is None else {"seconds": plan.rto.total_seconds(), "state": None},
        "next_run": {**next_run, "schedule": schedule},
        "history": None,
        "error": message,
    }


def dashboard_rows(
    backups: "Backups",
    cfg: "Config",
    session: "Session",
    may_read: Callable[[str], bool],
    now: datetime,
) -> list[dict[str, Any]]:
    """Rows of the plans whose backup DAG ``may_read`` allows, sorted by plan and namespace."""
    plans = [p for _, p in sorted(cfg.backup_plans.items()) if may_read(p.dag_id)]
    runs = next_runs(session, (p.dag_id for p in plans), now)
    listed: dict[str, list["CatalogEntry"] | str] = {}
    rows: list[dict[str, Any]] = []
    for plan in plans:
        if plan.repository not in listed:
            try:
                listed[plan.repository] = backups.list_backups(plan.repository)
            except Exception as exc:  # one unreachable repository must not hide the others
                backups.forget(plan.repository)
                log.warning("ys1000 UI: repository %s: %s: %s", plan.repository, type(exc).__name__, exc)
                listed[plan.repository] = f"repository {plan.repository}: {type(exc).__name__}: {exc}"
        got = listed[plan.repository]
        try:
            schedule = cfg.schedule_for(plan).describe()
        except Exception:  # pragma: no cover - a policy name the loader let through
            schedule = None
        if isinstance(got, str):
            rows.append(error_row(plan, got, runs[plan.dag_id], schedule))
        else:
            rows.extend(plan_rows(plan, [e for e in got if e.plan == plan.name], now, runs[plan.dag_id], schedule))
    return rows


# -- charts: inline SVG, one <title> per point (the browser shows it on hover) ------------------

W, H, PAD = 100, 34, 2


def _svg(kind: str, label: str, n: int, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart chart-{kind}" data-points="{n}" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<line class="axis" x1="0" y1="{H - 0.5}" x2="{W}" y2="{H - 0.5}"/>' + "".join(body) + "</svg>"
    )


def _empty(kind: str, label: str) -> Markup:
    return _svg(kind, label, 0, [f'<text class="none" x="{W / 2}" y="{H / 2 + 4}" text-anchor="middle">–</text>'])


def bar_chart(kind: str, label: str, points: list[tuple[float, str, str]]) -> Markup:
    """Bars (``points``: value, title, css class), scaled to the largest value."""
    if not points:
        return _empty(kind, label)
    top = max(v for v, _, _ in points) or 1.0
    slot = W / max(len(points), 8)  # a few bars stay narrow instead of filling the width
    body = []
    for i, (value, title, cls) in enumerate(points):
        h = max(1.0, (H - PAD) * value / top)
        body.append(
            f'<rect class="pt {cls}" x="{i * slot + slot * 0.1:.1f}" y="{H - h:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{h:.1f}"><title>{escape(title)}</title></rect>'
        )
    return _svg(kind, label, len(points), body)


def rto_chart(label: str, drills: list[dict[str, Any]], objective: float | None) -> Markup:
    """A line through verified drills' RTOs; failed drills as red marks on the axis; the
    objective as a dashed line."""
    if not drills:
        return _empty("rto", label)
    values = [d["rto_seconds"] for d in drills if d.get("rto_seconds") is not None]
    top = max(values + ([objective] if objective else []) + [1.0])
    step = W / max(len(drills), 8)

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * v / top

    body, line = [], []
    if objective:
        body.append(f'<line class="objective" x1="0" y1="{y(objective):.1f}" x2="{W}" y2="{y(objective):.1f}"/>')
    for i, d in enumerate(drills):
        x = i * step + step / 2
        rto = d.get("rto_seconds")
        if d.get("state") == "verified" and rto is not None:
            over = objective is not None and rto > objective
            title = f"{d['backup_id']}: verified, RTO {fmt_seconds(rto)}" + (" (over the objective)" if over else "")
            line.append(f"{x:.1f},{y(rto):.1f}")
            body.append(
                f'<circle class="pt {"exceeded" if over else "verified"}" cx="{x:.1f}" cy="{y(rto):.1f}" r="2.5">'
                f"<title>{escape(title)}</title></circle>"
            )
        else:
            title = f"{d['backup_id']}: drill failed: {d.get('reason') or 'no reason recorded'}"
            body.append(
                f'<circle class="pt failed" cx="{x:.1f}" cy="{H - PAD - 1:.1f}" r="2.5">'
                f"<title>{escape(title)}</title></circle>"
            )
    if len(line) > 1:
        body.insert(1 if objective else 0, f'<polyline class="line" points="{" ".join(line)}"/>')
    return _svg("rto", label, len(drills), body)


def charts(row: dict[str, Any]) -> dict[str, Markup]:
    """The three charts of a row: archive sizes, durations and drill RTOs."""
    backups = row["history"]["backups"]

    def cls(b: dict) -> str:
        return "" if b["status"] == "Completed" else "failed"

    sizes = [
        (float(b["archive_size"]), f"{b['backup_id']}: {human_size(b['archive_size'])} ({b['status']})", cls(b))
        for b in backups
    ]
    durations = [
        (b["duration_seconds"], f"{b['backup_id']}: {fmt_seconds(b['duration_seconds'])}", cls(b)) for b in backups
    ]
    rto = row["rto"]["seconds"] if row.get("rto") else None
    return {
        "sizes": bar_chart("sizes", f"archive size of the last {len(sizes)} backups", sizes),
        "durations": bar_chart("durations", f"duration of the last {len(durations)} backups", durations),
        "rto": rto_chart(f"RTO of {len(row['history']['drills'])} drills", row["history"]["drills"], rto),
    }
