"""Plans and cluster settings → the engine's specs: the one place that maps configuration.

The DAG operators, the CLI (``--config``) and migrations all build their ``BackupSpec``,
``VolumeOptions`` and ``VolumeRestoreOptions`` here, and resolve ``latest`` with
``resolve_backup``, so a plan means the same thing on every path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ys1000.backup import BackupSpec
    from ys1000.config import BackupPlan, ClusterSpec, Config, MigrationPlan
    from ys1000.repository import Repository
    from ys1000.volumes import VolumeOptions, VolumeRestoreOptions


log = logging.getLogger(__name__)


class BackupNotResolved(LookupError):
    """``latest`` has no completed backup to point at, or an id is unknown."""


def backup_spec_for(config: "Config", plan: "BackupPlan", backup_id: str) -> "BackupSpec":
    """The engine's view of one run of a backup plan."""
    from ys1000.backup import BackupSpec, Limits

    policy = config.policy_for(plan)
    res = plan.resources
    return BackupSpec(
        backup_id=backup_id,
        plan=plan.name,
        namespaces=list(plan.namespaces.names),
        namespace_globs=list(plan.namespaces.globs),
        namespace_selector=plan.namespaces.selector,
        include_kinds=list(res.include_kinds) if res else [],
        exclude_kinds=list(res.exclude_kinds) if res else [],
        label_selector=res.label_selector if res else None,
        scope=policy.scope,
        limits=Limits(plan.limits.max_namespaces, plan.limits.max_pods, plan.limits.max_pvcs),
        retention_days=policy.retention.total_seconds() / 86400,
        cluster_name=plan.cluster,
        anomaly=plan.anomaly,
    )


def bandwidth_limit(cluster: "ClusterSpec", now: datetime | None = None) -> int | None:
    """The cluster's mover bandwidth limit (KiB/s) in force now, or None."""
    if cluster.bandwidth is None:
        return None
    return cluster.bandwidth.limit_at((now or datetime.now(timezone.utc)).time())


def volume_options_for(
    config: "Config", plan: "BackupPlan", *, run_id: str, export_phase: bool = False, now: datetime | None = None
) -> "VolumeOptions":
    """How a backup plan's run treats its PVCs: the policy's method and export, per-PVC methods,
    the cluster's mover image, concurrency and bandwidth window."""
    from ys1000.volumes import VolumeOptions

    policy = config.policy_for(plan)
    cluster = config.clusters[plan.cluster]
    export = policy.export
    export_pvcs = None
    if export is not None and export.mode in ("selected_now", "selected_at"):
        export_pvcs = list(export.pvcs)
    if export is not None and export.mode == "selected_at" and not export_phase:
        export_pvcs = []  # snapshots now, export after the wait
    limit = bandwidth_limit(cluster, now)
    return VolumeOptions(
        method=policy.method,
        per_pvc=dict(plan.volumes),
        export_pvcs=export_pvcs,
        image=cluster.mover_image,
        max_concurrent=cluster.max_concurrent_movers,
        limit_upload_kib=limit,
        limit_download_kib=limit,
        run_id=run_id,
        cluster_name=plan.cluster,
    )


def cluster_volume_options(
    cluster: "ClusterSpec", cluster_name: str, *, run_id: str, now: datetime | None = None
) -> "VolumeOptions":
    """Mover settings of a cluster alone (the CLI's ``--config --cluster`` without a plan)."""
    from ys1000.volumes import VolumeOptions

    limit = bandwidth_limit(cluster, now)
    return VolumeOptions(
        image=cluster.mover_image,
        max_concurrent=cluster.max_concurrent_movers,
        limit_upload_kib=limit,
        limit_download_kib=limit,
        run_id=run_id,
        cluster_name=cluster_name,
    )


def restore_volume_options_for(
    cluster: "ClusterSpec", *, run_id: str, now: datetime | None = None
) -> "VolumeRestoreOptions":
    """Mover settings for restoring PVC data into ``cluster``."""
    from ys1000.volumes import VolumeRestoreOptions

    return VolumeRestoreOptions(
        image=cluster.mover_image,
        max_concurrent=cluster.max_concurrent_movers,
        limit_download_kib=bandwidth_limit(cluster, now),
        run_id=run_id,
    )


def migration_spec_for(config: "Config", plan: "MigrationPlan"):
    """The engine's view of a migration plan."""
    from ys1000.backup import Limits
    from ys1000.migration import MigrationSpec

    res = plan.resources
    return MigrationSpec(
        plan=plan.name,
        source_cluster=plan.source_cluster,
        target_cluster=plan.target_cluster,
        namespaces=list(plan.namespaces.names),
        namespace_globs=list(plan.namespaces.globs),
        namespace_selector=plan.namespaces.selector,
        include_kinds=list(res.include_kinds) if res else [],
        exclude_kinds=list(res.exclude_kinds) if res else [],
        namespace_mapping=dict(plan.namespace_mapping),
        storage_class_mapping=dict(plan.storage_class_mapping),
        image_registry_mapping=dict(config.clusters[plan.target_cluster].image_registry_rewrite),
        remove_node_constraints=plan.remove_node_constraints,
        remove_tolerations=plan.remove_tolerations,
        limits=Limits(plan.limits.max_namespaces, plan.limits.max_pods, plan.limits.max_pvcs),
        method=plan.method,
        per_pvc=dict(plan.volumes),
    )


@dataclass
class Resolved:
    """Which backup ``latest`` means, and the newer ones it passed over as suspicious."""

    backup_id: str
    skipped: list[tuple[str, list[str]]] = field(default_factory=list)  # (backup id, reasons)

    def notes(self) -> list[str]:
        """One line per suspicious backup passed over, for the operator."""
        return [
            f"latest: skipped backup {bid}, marked suspicious by the anomaly guard "
            f"({'; '.join(reasons) or 'no reason recorded'}); it is used when given by id, with "
            "--allow-suspicious, or once a human confirms the change"
            for bid, reasons in self.skipped
        ]


def resolve_latest(
    repo: "Repository", backup: str | None, plan: str | None, *, allow_suspicious: bool = False
) -> Resolved:
    """Like ``resolve_backup``, saying which suspicious backups ``latest`` skipped and why."""
    if backup and backup != "latest":
        return Resolved(backup)
    if not plan:
        raise BackupNotResolved("backup 'latest' needs the plan whose newest backup to restore")
    skipped: list[tuple[str, list[str]]] = []
    for e in repo.list_backups(plan):
        if e.status != "Completed":
            continue
        if e.suspicious and not allow_suspicious:
            skipped.append((e.backup_id, list((e.anomaly or {}).get("reasons") or [])))
            continue
        return Resolved(e.backup_id, skipped)
    where = f"plan {plan!r} in repository {repo.store.describe()}"
    if skipped:
        raise BackupNotResolved(
            f"no clean completed backup of {where}: {len(skipped)} suspicious one(s) ("
            + ", ".join(b for b, _ in skipped)
            + "); give a backup id, allow suspicious backups, or confirm the change"
        )
    raise BackupNotResolved(f"no completed backup of {where}")


def resolve_backup(repo: "Repository", backup: str | None, plan: str | None, *, allow_suspicious: bool = False) -> str:
    """A backup id as given, or for ``latest`` the newest *Completed* backup of ``plan`` (a
    ``PartiallyFailed`` backup lacks data in its scope and is never picked implicitly) that is
    not suspicious (``ys1000.backup.anomaly``; unless ``allow_suspicious``, or a human confirmed
    the change). Skipped suspicious backups are logged with their reasons."""
    resolved = resolve_latest(repo, backup, plan, allow_suspicious=allow_suspicious)
    for note in resolved.notes():
        log.warning("%s", note)
    return resolved.backup_id
