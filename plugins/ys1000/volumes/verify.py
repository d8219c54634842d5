"""``ys1000 verify BACKUP --data``: read a backup's volume data back and name what is damaged.

The resource archive is verified by ``Repository.verify``; a backup's PVC data lives in restic
repositories (one per cluster and namespace, shared by every backup of that namespace: restic
deduplicates). Here each restic repository that holds one of the backup's snapshots is checked
with ``restic check --read-data`` (or ``--read-data-subset``); a damaged or missing pack file is
then mapped to the snapshots that reference any blob in it (data blobs through ``restic find
--blob``, tree blobs through ``restic find --tree`` and the snapshots' root trees) and those
snapshots to the backups and PVCs whose manifests record them. A pack shared by several
backups (dedup) names each of them.

Granularity is the pack: every snapshot that references a blob of a damaged pack is named, even
when restic could still decrypt that particular blob — the conservative answer, and the one
restic's own repair (``repair packs`` then ``repair snapshots --forget``) starts from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ys1000.repository import Repository, RepositoryConfig
from ys1000.repository.errors import ObjectNotFound
from ys1000.volumes import restic

_SUBSET = re.compile(r"^(?:[1-9]\d*/[1-9]\d*|(?:100|[1-9]?\d)(?:\.\d+)?%)$")


def check_subset(value: str) -> str:
    """``N%`` (0 < N ≤ 100) or ``n/t`` (1 ≤ n ≤ t), as restic's ``--read-data-subset`` takes them."""
    v = value.strip()
    if _SUBSET.match(v):
        if "/" in v:
            n, t = (int(x) for x in v.split("/"))
            if n <= t:
                return v
        elif 0 < float(v[:-1]) <= 100:
            return v
    raise ValueError(f"--data-subset {value!r}: expected N% (0 < N <= 100) or n/t (1 <= n <= t), e.g. 10% or 1/5")


@dataclass
class DamagedSnapshot:
    """A restic snapshot that references a damaged pack, and the backup/PVC it belongs to."""

    repository: str  # restic repository, relative to the backup repository's prefix
    snapshot_id: str
    packs: list[str]
    files: list[str]  # paths in the snapshot that hit damaged blobs (a sample)
    backup_id: str | None = None  # None: no committed backup records this snapshot
    namespace: str | None = None
    pvc: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "namespace": self.namespace,
            "pvc": self.pvc,
            "repository": self.repository,
            "snapshot_id": self.snapshot_id,
            "packs": self.packs,
            "files": self.files,
        }


@dataclass
class RepositoryCheck:
    repository: str
    ok: bool
    damaged_packs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unattributed: bool = False  # errors restic did not tie to a pack it indexes: no snapshot can be named
    unreferenced: list[str] = field(default_factory=list)  # damaged packs no snapshot needs (prune drops them)

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "ok": self.ok,
            "damaged_packs": self.damaged_packs,
            "errors": self.errors,
            "unattributed": self.unattributed,
            "unreferenced_packs": self.unreferenced,
        }


@dataclass
class DataVerifyResult:
    backup_id: str
    read: str  # "all" or the subset
    repositories: list[RepositoryCheck] = field(default_factory=list)
    damaged: list[DamagedSnapshot] = field(default_factory=list)  # in this backup and any other
    volumes: list[dict[str, Any]] = field(default_factory=list)  # this backup's PVCs: status ok|damaged|…

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.repositories)

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "read": self.read,
            "ok": self.ok,
            "volumes": self.volumes,
            "damaged": [d.to_json() for d in self.damaged],
            "repositories": [r.to_json() for r in self.repositories],
        }


def _snapshot_owners(repo: Repository) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """(restic repository, snapshot id) → [(backup id, namespace, pvc)] over every committed backup."""
    out: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for entry in repo.list_backups():
        if not entry.volumes:
            continue
        try:
            m = repo.manifest(entry.backup_id)
        except ObjectNotFound:  # deleted meanwhile
            continue
        for v in m.volumes:
            r = v.get("restic") or {}
            if r.get("snapshot_id"):
                out.setdefault((r["repository"], r["snapshot_id"]), []).append(
                    (entry.backup_id, v["namespace"], v["pvc"])
                )
    return out


def _damaged_snapshots(env: dict[str, str], rel: str, packs: list[str]) -> tuple[list[DamagedSnapshot], list[str]]:
    """The snapshots referencing the packs' blobs, and the packs the index does not know (what
    they held, hence who needs them, cannot be told)."""
    blobs = restic.pack_blobs(env, set(packs))
    pack_of: dict[str, str] = {}
    data_ids: list[str] = []
    tree_ids: list[str] = []
    for pack, contents in blobs.items():
        for kind, blob in contents:
            pack_of[blob] = pack
            (tree_ids if kind == "tree" else data_ids).append(blob)
    hits: list[dict] = []
    if data_ids:
        hits += restic.find_blobs(env, data_ids, "blob")
    if tree_ids:
        hits += restic.find_blobs(env, tree_ids, "tree")
        # a snapshot whose root tree is damaged: find may not be able to walk it at all
        for sn in restic.snapshots(env):
            if sn.get("tree") in pack_of:
                hits.append({"snapshot": sn["id"], "id": sn["tree"], "path": "/"})
    by_snapshot: dict[str, DamagedSnapshot] = {}
    for hit in hits:
        sid = hit.get("snapshot")
        if not sid:
            continue
        d = by_snapshot.setdefault(sid, DamagedSnapshot(rel, sid, [], []))
        blob_pack = pack_of.get(hit.get("id", ""))
        if blob_pack and blob_pack not in d.packs:
            d.packs.append(blob_pack)
        path = hit.get("path")
        if path and path not in d.files and len(d.files) < 20:
            d.files.append(path)
    return list(by_snapshot.values()), sorted(set(packs) - set(blobs))


def verify_volume_data(
    repo: Repository,
    backup_id: str,
    *,
    subset: str | None = None,
    repo_cfg: RepositoryConfig | None = None,
) -> DataVerifyResult:
    """Check the restic repositories holding ``backup_id``'s PVC data; name every damaged
    backup/PVC. ``subset`` None reads all data, else ``check_subset``'s forms."""
    cfg = repo_cfg or repo.location
    if cfg is None:
        raise ValueError("the repository's location is unknown: open it with open_repository")
    read = check_subset(subset) if subset else "all"
    m = repo.manifest(backup_id)
    password = repo.restic_password()
    result = DataVerifyResult(backup_id, read)
    mine = [v for v in m.volumes if (v.get("restic") or {}).get("snapshot_id")]
    rels = sorted({v["restic"]["repository"] for v in mine})
    owners: dict[tuple[str, str], list[tuple[str, str, str]]] | None = None
    for rel in rels:
        env = restic.target_at(cfg, password, rel).environment()
        found = restic.check(env, read)
        rc = RepositoryCheck(rel, found.ok, found.damaged_packs, found.errors)
        result.repositories.append(rc)
        if found.ok:
            continue
        damaged, unindexed = _damaged_snapshots(env, rel, found.damaged_packs) if found.damaged_packs else ([], [])
        rc.unattributed = bool(unindexed) or any(not restic.PACK_IN_ERROR.search(e) for e in found.errors)
        rc.unreferenced = sorted(set(found.damaged_packs) - set(unindexed) - {p for d in damaged for p in d.packs})
        if damaged and owners is None:
            owners = _snapshot_owners(repo)
        for d in damaged:
            holders = (owners or {}).get((rel, d.snapshot_id))
            if not holders:  # e.g. a backup that failed before its commit
                result.damaged.append(d)
            for bid, ns, pvc in holders or []:
                result.damaged.append(
                    DamagedSnapshot(rel, d.snapshot_id, d.packs, d.files, backup_id=bid, namespace=ns, pvc=pvc)
                )
    result.damaged.sort(key=lambda d: (d.backup_id != backup_id, d.backup_id or "~", d.namespace or "", d.pvc or ""))
    checked = {r.repository: r for r in result.repositories}
    for v in m.volumes:
        entry: dict[str, Any] = {"namespace": v["namespace"], "pvc": v["pvc"]}
        r = v.get("restic") or {}
        if not r.get("snapshot_id"):
            entry["status"] = "not-checked"
            entry["reason"] = (
                f"no data to check: {v['error']}"
                if v.get("error")
                else "method skip"
                if v.get("method") == "skip"
                else "CSI snapshot only (not in restic)"
                if v.get("csi")
                else "the volume was empty at backup time"
            )
        else:
            entry["snapshot_id"] = r["snapshot_id"]
            hit = [
                d
                for d in result.damaged
                if d.backup_id == backup_id
                and (d.namespace, d.pvc) == (v["namespace"], v["pvc"])
                and d.snapshot_id == r["snapshot_id"]
            ]
            repo_check = checked[r["repository"]]
            if hit:
                entry["status"] = "damaged"
                entry["packs"] = hit[0].packs
                entry["files"] = hit[0].files
            elif repo_check.unattributed:
                entry["status"] = "unknown"
                entry["reason"] = "restic found errors in its repository that it did not tie to a pack"
            else:
                entry["status"] = "ok"
        result.volumes.append(entry)
    return result
