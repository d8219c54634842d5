"""A backup, step by step: capture → volumes → verify → commit.

This is the only way a backup is made. The backup DAG runs one step per task; the CLI, migrations
and benchmarks call ``run_backup``, which runs the same steps in a row. So every path protects the
same data and reports it the same way: a backup whose scope includes volume data is ``Completed``
only when every PVC's data was taken; a PVC that could not be protected makes it
``PartiallyFailed``, naming the PVC and why, and ``latest`` never picks it. The commit also
runs the anomaly guard (``ys1000.backup.anomaly``): a backup far outside the plan's normal change
is committed but marked suspicious (``manifest.anomaly``), and ``latest`` skips it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from ys1000.backup.anomaly import Verdict, assess
from ys1000.backup.capture import BackupResult, capture_resources
from ys1000.backup.preflight import Inventory, preflight
from ys1000.backup.selection import BackupSpec
from ys1000.kube import Kube
from ys1000.repository import Repository, RepositoryConfig, VerifyResult, layout
from ys1000.repository.manifest import Manifest

if TYPE_CHECKING:
    from ys1000.config.plans import AnomalyGuard
    from ys1000.volumes import VolumeOptions
    from ys1000.volumes.backup import VolumeBackup
    from ys1000.volumes.steps import Driver

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


class VolumeDataUnavailable(ValueError):
    """Volume data is in scope but movers cannot reach the repository (its location is unknown)."""


def capture(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """Step 1: preflight, then the resources into a pending backup (nothing counts yet)."""
    return capture_resources(kube, repo, spec, progress=progress, cancel=cancel)


def _location(repo: Repository, repo_cfg: RepositoryConfig | None, what: str) -> RepositoryConfig:
    cfg = repo_cfg or repo.location
    if cfg is None:
        raise VolumeDataUnavailable(
            f"{what}, but the repository was opened without its location, so movers "
            "cannot write to it (open it with open_repository)"
        )
    return cfg


def volume_items(spec: BackupSpec, inventory: Inventory) -> list[dict]:
    """The PVCs whose data this backup takes, one ``{"namespace", "pvc", "node"}`` each: what the
    backup DAG's ``volumes`` task is mapped over."""
    if spec.scope == "resources":
        return []
    return [
        {
            "namespace": c["metadata"]["namespace"],
            "pvc": c["metadata"]["name"],
            "node": inventory.volumes[f"{c['metadata']['namespace']}/{c['metadata']['name']}"].node,
        }
        for c in inventory.pvcs
    ]


def prepare_volumes(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    opts: "VolumeOptions",
    inventory: Inventory,
    *,
    repo_cfg: RepositoryConfig | None = None,
) -> None:
    """Before PVCs are copied side by side: each namespace's restic repository exists (one
    ``restic init`` each; concurrent inits of one repository would race)."""
    if spec.scope == "resources" or not inventory.pvcs:
        return
    from ys1000.volumes.backup import prepare_restic_repositories

    opts.cluster_name = spec.cluster_name or kube.name or opts.cluster_name
    cfg = _location(repo, repo_cfg, f"backup {spec.backup_id} has PVCs in scope {spec.scope!r}")
    prepare_restic_repositories(cfg, repo.restic_password(), inventory.pvcs, opts)


def volume_unit(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    opts: "VolumeOptions",
    *,
    repo_cfg: RepositoryConfig | None = None,
    export: bool = False,
) -> "VolumeBackup":
    """The per-PVC step of this backup (``VolumeBackup``; ``VolumeExport`` for a later export)."""
    from ys1000.volumes.backup import VolumeBackup, VolumeExport

    opts.cluster_name = spec.cluster_name or kube.name or opts.cluster_name
    cfg = _location(repo, repo_cfg, f"backup {spec.backup_id} has PVCs in scope {spec.scope!r}")
    return (VolumeExport if export else VolumeBackup)(
        kube, cfg, repo.restic_password(), opts, spec.backup_id, spec.plan
    )


def protect_volumes(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    opts: "VolumeOptions | None" = None,
    *,
    inventory: Inventory | None = None,
    repo_cfg: RepositoryConfig | None = None,
    driver: "Driver | None" = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Step 2, in place: each selected PVC's data by its method (restic mover, CSI snapshot, or
    both), several at a time. (The DAG maps ``volume_unit`` over ``volume_items`` instead.)

    Returns the manifest's volume records; a PVC whose data could not be taken has ``error``.
    Scope ``resources`` protects no data. Raises ``InterruptedError`` when cancelled.
    """
    if spec.scope == "resources":
        return []
    from ys1000.volumes import VolumeOptions, backup_volumes

    inventory = inventory or preflight(kube, spec)
    if not inventory.pvcs:
        return []
    opts = opts or VolumeOptions()
    opts.cluster_name = spec.cluster_name or kube.name or opts.cluster_name
    cfg = _location(repo, repo_cfg, f"backup {spec.backup_id} has {len(inventory.pvcs)} PVC(s) in scope {spec.scope!r}")
    nodes = {key: use.node for key, use in inventory.volumes.items()}
    return backup_volumes(
        kube,
        cfg,
        repo.restic_password(),
        inventory.pvcs,
        nodes,
        spec.backup_id,
        spec.plan,
        opts,
        driver,
        progress=progress,
    )


def volume_failures(records: list[dict] | None) -> list[str]:
    """``"<ns>/<pvc>: <why>"`` for each PVC whose data the backup does not hold."""
    return [f"{r['namespace']}/{r['pvc']}: {r['error']}" for r in records or [] if r.get("error")]


def verify(repo: Repository, backup_id: str) -> VerifyResult:
    """Step 3: checksums, decryption and every document of the (pending) backup."""
    pending = repo.store.exists(layout.pending_key(backup_id))
    return repo.verify(backup_id, pending=pending)


def judge(repo: Repository, backup_id: str, volumes: list[dict] | None, guard: "AnomalyGuard | None" = None) -> Verdict:
    """The anomaly guard's verdict on the pending backup (``ys1000.backup.anomaly``). A guard
    that cannot read the plan's history never stops a commit: the verdict says why it could not
    judge, and the backup is committed unjudged."""
    try:
        return assess(repo, backup_id, volumes, guard)
    except Exception as exc:
        log.warning("backup %s: the anomaly guard could not judge it: %s", backup_id, exc)
        return Verdict(error=f"not judged: {exc}")


def commit(
    repo: Repository, backup_id: str, volumes: list[dict] | None, *, guard: "AnomalyGuard | None" = None
) -> Manifest:
    """Step 4: write the manifest (last): from now on the backup counts. ``PartiallyFailed``
    when a PVC's data is missing, with one warning per such PVC. Idempotent.

    The anomaly guard judges the backup against the plan's history first (``guard``: the plan's
    settings; default: those recorded at capture from ``BackupSpec.anomaly``, else the defaults):
    ``manifest.anomaly`` = ``{"suspicious", "reasons", "profile"}``. A suspicious backup is
    committed with its status (``Completed``/``PartiallyFailed``) all the same."""
    if not repo.store.exists(layout.pending_key(backup_id)) and repo.store.exists(layout.manifest_key(backup_id)):
        return repo.manifest(backup_id)  # committed by an earlier attempt
    failures = volume_failures(volumes)
    verdict = judge(repo, backup_id, volumes, guard)
    if verdict.suspicious:
        log.warning("backup %s is suspicious:\n  %s", backup_id, "\n  ".join(verdict.reasons))
    return repo.finalize_backup(
        backup_id,
        volumes=volumes or [],
        status="PartiallyFailed" if failures else "Completed",
        warnings=[f"PVC {f} — its data is NOT in this backup" for f in failures],
        anomaly=verdict.to_json(),
    )


def run_backup(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    *,
    volume_opts: "VolumeOptions | None" = None,
    repo_cfg: RepositoryConfig | None = None,
    driver: "Driver | None" = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """The whole backup in a row. On an error or a cancel the pending backup is removed; nothing
    half-made is ever listed or restored."""
    from ys1000.volumes import VolumeOptions
    from ys1000.volumes.steps import Driver

    result = capture(kube, repo, spec, progress=progress, cancel=cancel)
    volume_opts = volume_opts or VolumeOptions()
    driver = driver or Driver(kube, volume_opts.max_concurrent)
    volumes: list[dict] | None = None
    try:
        if cancel is not None and cancel.is_set():
            raise InterruptedError(f"backup {spec.backup_id} cancelled")
        volumes = protect_volumes(
            kube,
            repo,
            spec,
            volume_opts,
            inventory=result.inventory,
            repo_cfg=repo_cfg,
            driver=driver,
            progress=progress,
        )
        verify(repo, spec.backup_id)
        result.manifest = commit(repo, spec.backup_id, volumes)
        result.warnings = list(result.manifest.warnings)
    except BaseException as exc:
        driver.cancel_all()  # e.g. Ctrl-C in the CLI: no mover may go on writing
        for failure in volume_failures(volumes):  # the PVCs that had already failed, e.g. S3 down for their movers
            exc.add_note(f"PVC {failure}")
        try:
            repo.discard_pending(spec.backup_id)
        except Exception as cleanup:  # e.g. S3 still down: report the backup's own error, not this
            note = (
                f"the incomplete backup {spec.backup_id} could not be removed now ({cleanup}); it is never "
                "listed or restored, and the incomplete-backup cleanup (retention) removes it later"
            )
            log.warning("backup %s failed: %s; %s", spec.backup_id, exc, note)
            exc.add_note(note)
        raise
    if progress:
        progress({"phase": "committed", "objects_done": result.manifest.total, "status": result.manifest.status})
    return result
