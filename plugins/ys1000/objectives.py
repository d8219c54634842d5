"""Recovery objectives of backup plans (``rpo:``, ``rto:``): where each plan stands, and the RPO
watch that alerts the moment a plan's newest good backup is older than its RPO.

Airflow's deadline alerts fire only for runs that exist; a paused schedule, a DAG that stopped
being scheduled or a scheduler that is down never raise one. So the watch looks at the outcome
instead of the runs: the newest ``Completed`` backup in the repository. It runs every minute
(``ys1000_objectives``) and alerts once per breach (until a newer backup arrives), through the
plan's failure-alert channels; what it alerted is kept in the repository
(``alerts/rpo/<plan>.json``) so a restarted Airflow does not alert again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

log = logging.getLogger(__name__)

AT_RISK = 0.75  # share of the RPO after which a plan is "at risk"
ALERTS = "alerts/rpo/"


def rpo_state(last_backup: dt.datetime | None, rpo: dt.timedelta, now: dt.datetime) -> tuple[str, float | None]:
    """(``ok`` | ``at_risk`` | ``breached``, age of the newest good backup in seconds)."""
    if last_backup is None:
        return "breached", None
    age = (now - last_backup).total_seconds()
    if age > rpo.total_seconds():
        return "breached", age
    return ("at_risk" if age > AT_RISK * rpo.total_seconds() else "ok"), age


def plan_objectives(repo: Any, plan: Any, now: dt.datetime) -> dict[str, Any]:
    """One plan's RPO and RTO standing, from its catalog (newest first)."""
    entries = repo.list_backups(plan.name)
    good = next((e for e in entries if e.status == "Completed"), None)
    out: dict[str, Any] = {"plan": plan.name, "cluster": plan.cluster}
    out["last_backup"] = good.backup_id if good else None
    # the recovery point is when the backup captured the data (its creation), not when it committed
    out["last_backup_at"] = good.created.isoformat() if good else None
    if plan.rpo is not None:
        state, age = rpo_state(good.created if good else None, plan.rpo, now)
        out.update(rpo_seconds=plan.rpo.total_seconds(), rpo_state=state, age_seconds=age)
    drilled = next((e for e in entries if e.drill), None)
    if drilled is not None:
        d = drilled.drill or {}
        out["last_drill"] = {"backup_id": drilled.backup_id, **d}
        if plan.rto is not None and d.get("rto_seconds") is not None:
            out["rto_seconds"] = plan.rto.total_seconds()
            out["rto_state"] = "ok" if d["rto_seconds"] <= plan.rto.total_seconds() else "exceeded"
    return out


def watch_rpo(repo: Any, plan: Any, now: dt.datetime, send: Any) -> dict[str, Any]:
    """Alert (``send(subject, text)``) once when ``plan`` breaches its RPO; returns its standing."""
    from ys1000.repository.errors import ObjectNotFound

    status = plan_objectives(repo, plan, now)
    if status.get("rpo_state") != "breached":
        return status
    key = f"{ALERTS}{plan.name}.json"
    try:
        sent = json.loads(repo.store.get(key))
    except ObjectNotFound:
        sent = {}
    if sent and sent.get("last_backup") == status["last_backup"]:
        status["alerted"] = sent.get("alerted_at")  # this breach was reported already
        return status
    age = status["age_seconds"]
    subject = f"RPO breached: plan {plan.name} has no backup within {_dur(plan.rpo.total_seconds())}"
    text = "\n".join(
        [
            f"Plan:         {plan.name} (cluster {plan.cluster})",
            f"RPO:          {_dur(plan.rpo.total_seconds())}",
            "Last backup:  "
            + (f"{status['last_backup']} at {status['last_backup_at']} ({_dur(age)} ago)" if age else "none"),
            f"Checked at:   {now.isoformat()}",
            "",
            "No successful backup within the recovery point objective: data written since the last",
            "backup would be lost. Check that the plan's DAG is unpaused and its runs succeed.",
        ]
    )
    send(subject, text)
    repo.store.put(key, json.dumps({"last_backup": status["last_backup"], "alerted_at": now.isoformat()}).encode())
    status["alerted"] = now.isoformat()
    return status


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
