"""Airflow assets for what ys1000 protects: every committed backup, migration sync and restore
drill emits an asset event, so the Assets view shows each application's history and a drill DAG
can be scheduled on its plan's backups.

- backups: one asset per plan namespace, ``ys1000://<cluster>/<namespace>`` (a plan selecting
  namespaces by glob or label selector, whose names are known only at run time, has one asset
  for the plan, ``ys1000://<cluster>/plans/<plan>``); the event's extra carries the backup id,
  status, object count, bytes and duration;
- drills: ``ys1000://<cluster>/<namespace>/drill`` (extra: backup, drill id, verified or not, RTO);
- migrations: ``ys1000://<source cluster>/<namespace>/migration``, one event per sync and one at
  the end of a cutover (extra: plan, mode, sync backup id, bytes sent, target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

if TYPE_CHECKING:
    from ys1000.config import BackupPlan

GROUP = "ys1000"


def _asset(uri: str) -> Asset:
    return Asset(name=uri, uri=uri, group=GROUP)


def _per_namespace(cluster: str, plan: Any, suffix: str = "") -> list[Asset]:
    ns = plan.namespaces
    if ns.names and not ns.globs and ns.selector is None:
        return [_asset(f"ys1000://{cluster}/{name}{suffix}") for name in ns.names]
    return [_asset(f"ys1000://{cluster}/plans/{plan.name}{suffix}")]


def backup_assets(plan: "BackupPlan") -> list[Asset]:
    return _per_namespace(plan.cluster, plan)


def migration_assets(plan: Any) -> list[Asset]:
    return _per_namespace(plan.source_cluster, plan, "/migration")


def drill_assets(plan: "BackupPlan") -> list[Asset]:
    return [_asset(f"{a.uri}/drill") for a in backup_assets(plan)]


def emit(context: Any, assets: list[Asset], extra: dict[str, Any]) -> None:
    """Attach ``extra`` to this task's events for ``assets`` (the task declares them as outlets;
    Airflow records the events when the task succeeds)."""
    events = context.get("outlet_events")
    if events is None:  # run outside a real task (tests calling execute)
        return
    for asset in assets:
        events[asset].extra = extra


def triggering_backup(context: Any) -> dict[str, Any] | None:
    """The newest backup event that started this run (an asset-scheduled drill), if any."""
    events = context.get("triggering_asset_events") or {}
    newest: dict[str, Any] | None = None
    for asset_events in events.values():
        for ev in asset_events:
            extra = dict(getattr(ev, "extra", None) or {})
            if extra.get("backup_id") and (newest is None or extra["backup_id"] > newest["backup_id"]):
                newest = extra
    return newest
