"""Human decisions (``ys1000.airflow.approval``) as the pages show them.

Each decision is a record ``approvals/<approval id>.json`` in the repository of the plan it was
asked for (``Repository.save_approval``): ``kind`` (cutover | restore | anomaly), ``plan``,
``about`` (the restore id of a restore or cutover, the backup id of an anomaly review; older
records only have ``subject``), ``decision`` (approved | rejected | timed_out), ``by``, ``at``,
``comment``, ``question`` and ``summary`` (what the approver was shown), ``approvers``,
``asked_at`` and the asking task (``dag_id``, ``run_id``, ``task_id``).

- the Approvals page (``/approvals``, JSON ``/api/approvals``): every decision of every configured
  repository, newest first, only those asked by DAGs the user may read (a repository that cannot
  be read is named, the others are still listed);
- the backup page, the job details of a backup, restore or migration run and its restore report:
  the decisions about that backup, restore or run (``concerning``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ys1000.config import Config

    from .backups import Backups

KINDS = ("cutover", "restore", "anomaly")
DECISIONS = ("approved", "rejected", "timed_out")
LABELS = {"approved": "approved", "rejected": "rejected", "timed_out": "timed out"}
FIELDS = (
    "approval_id",
    "kind",
    "plan",
    "about",
    "decision",
    "by",
    "at",
    "comment",
    "question",
    "summary",
    "approvers",
    "asked_at",
    "dag_id",
    "run_id",
    "task_id",
)
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def decided_at(rec: dict[str, Any]) -> datetime | None:
    """When the decision was taken (``at``), else the UTC stamp its id starts with."""
    value = rec.get("at")
    if isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    aid = str(rec.get("approval_id") or "")
    try:
        return datetime.strptime(aid[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (decided_at(r) or _EPOCH, str(r.get("approval_id") or "")), reverse=True)


def about(rec: dict[str, Any]) -> str | None:
    return rec.get("about") or rec.get("subject")


def dag_of(rec: dict[str, Any], cfg: "Config | None") -> str:
    """The DAG whose runs a user must be allowed to read to see the decision: the one that asked,
    else the plan's, else the generic restore's."""
    from .jobs import GENERIC_RESTORE

    if rec.get("dag_id"):
        return str(rec["dag_id"])
    plan = cfg.plans.get(rec.get("plan") or "") if cfg is not None else None
    return getattr(plan, "dag_id", None) or GENERIC_RESTORE


def row(rec: dict[str, Any], repository: str) -> dict[str, Any]:
    """A record in the shape of the JSON API (every field present, ``about`` filled in)."""
    out: dict[str, Any] = {k: rec.get(k) for k in FIELDS}
    out["about"] = about(rec)
    out["repository"] = repository
    out["summary"] = rec.get("summary") or {}
    out["approvers"] = rec.get("approvers") or []
    out["comment"] = rec.get("comment") or ""
    return out


def collect(
    b: "Backups",
    cfg: "Config",
    may_read: Callable[[str], bool],
    *,
    kind: str = "",
    decision: str = "",
    plan: str = "",
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(rows newest first, [{repository, error}]) over every configured repository."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for name in cfg.repositories:
        try:
            records = b.approvals(name)
        except Exception as exc:  # one unreadable repository must not hide the others' decisions
            b.forget(name)
            errors.append({"repository": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        for rec in records:
            if kind and rec.get("kind") != kind:
                continue
            if decision and rec.get("decision") != decision:
                continue
            if plan and rec.get("plan") != plan:
                continue
            if not may_read(dag_of(rec, cfg)):
                continue
            rows.append(row(rec, name))
    return newest_first(rows), errors


def concerning(
    records: list[dict[str, Any]],
    *,
    ids: set[str | None] | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The decisions about one of ``ids`` (a backup or restore id) or asked by the run
    ``dag_id``/``run_id`` (a rejected restore never got as far as a restore id), newest first."""
    wanted = {i for i in (ids or set()) if i}
    out = []
    for rec in records:
        if kinds is not None and rec.get("kind") not in kinds:
            continue
        same_run = bool(dag_id and run_id) and rec.get("dag_id") == dag_id and rec.get("run_id") == run_id
        if same_run or about(rec) in wanted:
            out.append(rec)
    return newest_first(out)
