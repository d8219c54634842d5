"""Retention of volume data: expired backups take their restic snapshots and CSI snapshots along.

Each backup owns its own restic snapshots (one per PVC), so forgetting them never touches another
backup's snapshot; ``prune`` then removes only data no remaining snapshot references — a later
backup that shares blocks with an expired one keeps them. The manifest is deleted first (the
backup stops being usable), the data after; a failure here leaves unreferenced data for the next
prune, never a listed backup without its data.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ys1000.kube import Kube, KubeError
from ys1000.repository import Repository, RepositoryConfig, RetentionReport
from ys1000.repository.manifest import Manifest
from ys1000.volumes import restic
from ys1000.volumes.snapshots import CONTENTS

log = logging.getLogger(__name__)


@dataclass
class VolumeCleanup:
    forgotten: dict[str, list[str]] = field(default_factory=dict)  # restic repository → snapshot ids
    snapshots_deleted: list[str] = field(default_factory=list)  # VolumeSnapshotContents
    errors: list[str] = field(default_factory=list)


def forget_volume_data(
    repo_cfg: RepositoryConfig, password: str, manifests: list[Manifest], kube: Kube | None = None
) -> VolumeCleanup:
    out = VolumeCleanup()
    by_repo: dict[str, list[str]] = defaultdict(list)
    for m in manifests:
        for v in m.volumes:
            if (v.get("restic") or {}).get("snapshot_id"):
                by_repo[v["restic"]["repository"]].append(v["restic"]["snapshot_id"])
            csi = v.get("csi")
            if csi and kube is not None:
                try:
                    # retained contents keep the data; switch to Delete, then delete, so the driver removes it
                    kube.patch(CONTENTS, csi["content"], {"spec": {"deletionPolicy": "Delete"}})
                    kube.delete(CONTENTS, csi["content"])
                    out.snapshots_deleted.append(csi["content"])
                except KubeError as exc:
                    if exc.status != 404:
                        out.errors.append(f"VolumeSnapshotContent {csi['content']}: {exc}")
    for rel, ids in by_repo.items():
        env = restic.target_at(repo_cfg, password, rel).environment()
        try:
            restic.run_json(["forget", *ids, "--prune"], env)
            out.forgotten[rel] = ids
        except restic.ResticError as exc:  # e.g. a backup holds the lock: the next retention prunes
            out.errors.append(f"{rel}: {exc}")
    return out


def expire_backups(
    repo: Repository,
    repo_cfg: RepositoryConfig,
    plan: str,
    older_than: timedelta,
    *,
    kube: Kube | None = None,
    now: datetime | None = None,
) -> tuple[RetentionReport, VolumeCleanup]:
    """Repository retention for ``plan`` plus the volume data of the backups it deleted."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - older_than
    manifests = {}
    for entry in repo.list_backups(plan):
        if entry.created < cutoff and entry.volumes:
            manifests[entry.backup_id] = repo.manifest(entry.backup_id)
    report = repo.apply_retention(plan, older_than, now=now)
    deleted = [manifests[b] for b in report.deleted if b in manifests]
    cleanup = forget_volume_data(repo_cfg, repo.restic_password(), deleted, kube) if deleted else VolumeCleanup()
    return report, cleanup
