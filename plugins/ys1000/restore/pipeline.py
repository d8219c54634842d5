"""A restore, step by step: resources by priority, PVCs created and filled before the workloads.

The only way a restore is made: the restore DAGs, the CLI, migrations and benchmarks all call
``run_restore``. When the backup holds volume data, a ``VolumeRestorer`` fills each PVC the
restore creates (CSI snapshot in the cluster that took it, else restic) after the PVC class is
in and before the workloads class starts; the report says, per PVC, whether it came back with
data, empty by design (and why), left as it was, or failed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

from ys1000.kube import Kube
from ys1000.repository import Repository, RepositoryConfig
from ys1000.restore.apply import Restorer, RestoreReport, RestoreSpec

if TYPE_CHECKING:
    from ys1000.volumes import VolumeRestoreOptions

Progress = Callable[[dict], None]


def run_restore(
    kube: Kube,
    repo: Repository,
    spec: RestoreSpec,
    *,
    same_cluster: bool | None = None,
    volume_opts: "VolumeRestoreOptions | None" = None,
    repo_cfg: RepositoryConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RestoreReport:
    """Restore ``spec.backup_id`` into ``kube``, volume data included.

    ``same_cluster`` (default: the backup's cluster name equals ``kube.name``) allows filling PVCs
    from CSI snapshots, whose handles mean something only where they were taken.
    """
    if not spec.dry_run:
        spec.volume_restorer = volume_restorer(
            kube, repo, spec, same_cluster=same_cluster, volume_opts=volume_opts, repo_cfg=repo_cfg
        )
    try:
        return Restorer(kube, repo, spec, progress, cancel).run()
    except BaseException:
        if spec.volume_restorer is not None:
            spec.volume_restorer.cancel()  # no mover may go on writing into a half-restored PVC
        raise


def restore_resources(
    kube: Kube,
    repo: Repository,
    spec: RestoreSpec,
    *,
    same_cluster: bool | None = None,
    volume_opts: "VolumeRestoreOptions | None" = None,
    repo_cfg: RepositoryConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[RestoreReport, list[dict]]:
    """The restore DAG's first part: everything up to and including the PVCs (a dry run does it
    all). Returns the report so far and the created PVCs that need data: ``{"namespace", "pvc",
    "record"}``, one mapped ``volumes`` task each (``volume_unit``)."""
    if not spec.dry_run:
        spec.volume_restorer = volume_restorer(
            kube, repo, spec, same_cluster=same_cluster, volume_opts=volume_opts, repo_cfg=repo_cfg
        )
    restorer = Restorer(kube, repo, spec, progress, cancel)
    report = restorer.run("all" if spec.dry_run else "resources")
    return report, list(restorer.pending_volumes)


def volume_unit(
    kube: Kube,
    repo: Repository,
    restore_id: str,
    volume_opts: "VolumeRestoreOptions",
    *,
    repo_cfg: RepositoryConfig | None = None,
):
    """The per-PVC step of a restore (``ys1000.volumes.restore.VolumeRestore``)."""
    from ys1000.volumes.restore import VolumeRestore

    return VolumeRestore(kube, repo_cfg or repo.location, repo.restic_password(), restore_id, volume_opts)


def restore_workloads(
    kube: Kube,
    repo: Repository,
    spec: RestoreSpec,
    volume_results: list[dict],
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RestoreReport:
    """The restore DAG's last part: what comes after the PVCs, once the volume tasks filled them."""
    return Restorer(kube, repo, spec, progress, cancel).run("workloads", volume_results)


def volume_restorer(
    kube: Kube,
    repo: Repository,
    spec: RestoreSpec,
    *,
    same_cluster: bool | None = None,
    volume_opts: "VolumeRestoreOptions | None" = None,
    repo_cfg: RepositoryConfig | None = None,
):
    """The ``VolumeRestorer`` for this restore (also when the backup holds no data: it then
    reports each restored PVC as empty, saying why)."""
    from ys1000.volumes import VolumeRestoreOptions, VolumeRestorer

    manifest = repo.manifest(spec.backup_id)
    opts = volume_opts or VolumeRestoreOptions()
    opts.same_cluster = (manifest.cluster_name == kube.name) if same_cluster is None else same_cluster
    cfg = repo_cfg or repo.location
    if manifest.volumes and cfg is None:
        raise ValueError(
            f"backup {spec.backup_id} holds volume data, but the repository was opened without its "
            "location, so movers cannot read it (open it with open_repository)"
        )
    no_data = (
        "the backup's scope is 'resources': it holds no volume data"
        if manifest.scope == "resources"
        else "the backup has no data record for this PVC"
    )
    return VolumeRestorer(
        kube,
        cfg,
        repo.restic_password(),
        manifest.volumes,
        spec.options.namespace_mapping,
        spec.restore_id,
        opts,
        no_data_reason=no_data,
    )
