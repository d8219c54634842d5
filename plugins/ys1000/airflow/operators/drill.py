"""The restore drill task (``ys1000_drill__<plan>``): prove the plan's newest backup restores
(``ys1000.drill.run``). Scheduled on the plan's backup assets, it drills the backup whose event
started it (else the plan's newest); the evidence goes into the repository, the outcome into an
asset event of its own, and a failed drill fails the task, so the plan's failure alerts go out.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ys1000.airflow.errors import Cancelled, engine_errors
from ys1000.airflow.operators.backup import _BackupPlanOperator


class DrillOperator(_BackupPlanOperator):
    ui_color = "#d7ecd9"

    _scratch: list[str] = []

    def execute(self, context: Any) -> dict:
        from ys1000.airflow.assets import drill_assets, emit, triggering_backup
        from ys1000.config.specs import restore_volume_options_for
        from ys1000.drill.run import DrillSpec, run_drill, scratch_namespace

        p = self.plan_obj
        if p.drill is None:
            raise AirflowFailException(f"plan {p.name} declares no drill")
        repo = self.repository(p.repository)
        event = triggering_backup(context)
        if event is not None and event.get("status") not in (None, "Completed"):
            raise AirflowSkipException(f"backup {event['backup_id']} is {event['status']}: nothing to prove")
        with engine_errors("the backup to drill"):
            backup_id = event["backup_id"] if event else _newest(repo, p.name)
            if event is not None and p.drill.every > 1:
                undrilled = _undrilled(repo, p.name)
                if undrilled < p.drill.every:
                    raise AirflowSkipException(
                        f"{undrilled} backup(s) since the last drill; this plan drills every {p.drill.every}th"
                    )
        cluster = p.drill.cluster or p.cluster
        same_cluster = cluster == p.cluster
        kube = self.kube(cluster)
        run_id = context["dag_run"].run_id
        spec = DrillSpec(
            backup_id=backup_id,
            suffix=p.drill.namespace_suffix or "",
            timeout=p.drill.timeout.total_seconds(),
            checks=list(p.drill.checks),
            same_cluster=same_cluster,
            volume_opts=restore_volume_options_for(self.cluster_spec(cluster), run_id=f"{run_id}/drill"),
            rto_objective=p.rto.total_seconds() if p.rto else None,
        )
        spec.volume_opts.same_cluster = same_cluster
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled("the drill was cancelled before it started")
            self._scratch = [scratch_namespace(ns, spec.suffix) for ns in repo.manifest(backup_id).namespaces]
        self.log.info("drill %s: backup %s of plan %s into cluster %s", spec.drill_id, backup_id, p.name, cluster)
        with engine_errors(f"drill of {backup_id}"):
            result = run_drill(kube, repo, spec, cancel=self.cancel, say=self.log.info)
        ev = result.evidence
        for name, secs in ev["steps"].items():
            self.log.info("  %s: %.1f s", name, secs)
        for c in ev["checks"]:
            self.log.info("  check %s: %s (%s)", c["name"], "passed" if c["ok"] else "FAILED", c["detail"])
        self.log.info("  evidence: %s; scratch namespaces removed: %s", ev.get("evidence_key"), ev.get("cleanup"))
        summary = {
            "backup_id": backup_id,
            "drill_id": ev["drill_id"],
            "verified": result.verified,
            "rto_seconds": ev.get("rto_seconds"),
            "reason": result.reason or None,
        }
        if not result.verified:
            raise AirflowFailException(f"drill {ev['drill_id']} of backup {backup_id} failed: {result.reason}")
        emit(context, drill_assets(p), summary)
        self.log.info("backup %s verified: RTO %.1f s", backup_id, ev["rto_seconds"])
        if ev.get("rto_met") is False:
            self.log.warning(
                "the drill's RTO %.1f s exceeds the plan's objective (rto %.0f s)",
                ev["rto_seconds"],
                ev["rto_objective_seconds"],
            )
        return summary

    def cleanup(self) -> list[str]:
        """The scratch namespaces (``run_drill`` also removes them once it sees the cancel)."""
        from ys1000.kube.discovery import NAMESPACES

        if not self._scratch:
            return []
        p = self.plan_obj
        kube = self.kube((p.drill.cluster if p.drill else None) or p.cluster)
        for ns in self._scratch:
            kube.delete(NAMESPACES, ns)
        return [f"scratch namespace {ns}" for ns in self._scratch]


def _undrilled(repo: Any, plan: str) -> int:
    """Completed backups newer than the newest one a drill looked at (all of them if none)."""
    entries = [e for e in repo.list_backups(plan) if e.status == "Completed"]
    return next((i for i, e in enumerate(entries) if e.drill), len(entries))


def _newest(repo: Any, plan: str) -> str:
    for entry in repo.list_backups(plan):
        if entry.status == "Completed":
            return entry.backup_id
    raise AirflowFailException(f"plan {plan} has no completed backup to drill")
