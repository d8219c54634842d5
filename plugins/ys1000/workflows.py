"""Whole backups and restores, resources and volume data, in one call (the CLI and tests).

The Airflow DAGs run the same steps as separate tasks: capture (pending) → volumes → verify →
commit. Here they run in a row, with the same guarantee: a backup is complete only with its data.
"""

from __future__ import annotations

from ys1000.backup import BackupResult, BackupSpec, run_backup
from ys1000.kube import Kube
from ys1000.repository import Repository, RepositoryConfig
from ys1000.restore import RestoreReport, RestoreSpec, run_restore
from ys1000.volumes import VolumeOptions, VolumeRestoreOptions, VolumeRestorer, backup_volumes


def backup_with_volumes(kube: Kube, repo: Repository, repo_cfg: RepositoryConfig, spec: BackupSpec,
                        volume_opts: VolumeOptions | None = None) -> BackupResult:
    """Capture resources, protect volume data per PVC (unless scope is ``resources``), commit."""
    result = run_backup(kube, repo, spec, finalize=False)
    volumes: list[dict] = []
    try:
        if spec.scope != "resources" and result.inventory.pvcs:
            opts = volume_opts or VolumeOptions()
            opts.cluster_name = spec.cluster_name or kube.name or opts.cluster_name
            nodes = {key: use.node for key, use in result.inventory.volumes.items()}
            volumes = backup_volumes(kube, repo_cfg, repo.restic_password(), result.inventory.pvcs, nodes,
                                     spec.backup_id, spec.plan, opts)
        repo.verify(spec.backup_id, pending=True)
        result.manifest = repo.finalize_backup(spec.backup_id, volumes=volumes)
    except BaseException:
        repo.discard_pending(spec.backup_id)
        raise
    return result


def restore_with_volumes(kube: Kube, repo: Repository, repo_cfg: RepositoryConfig, spec: RestoreSpec,
                         same_cluster: bool, volume_opts: VolumeRestoreOptions | None = None,
                         progress=None, cancel=None) -> RestoreReport:
    """Restore resources; PVCs get their data (snapshot or restic) before the workloads start."""
    manifest = repo.manifest(spec.backup_id)
    if manifest.volumes and not spec.dry_run:
        opts = volume_opts or VolumeRestoreOptions()
        opts.same_cluster = same_cluster
        spec.volume_hooks = VolumeRestorer(kube, repo_cfg, repo.restic_password(), manifest.volumes,
                                           spec.options.namespace_mapping, spec.restore_id, opts)
    return run_restore(kube, repo, spec, progress=progress, cancel=cancel)
