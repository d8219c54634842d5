"""Volume data of a backup: per PVC, a file copy (restic mover), a CSI snapshot, or both (export).

Runs between capture and commit: its result — one record per PVC — goes into the manifest's
``volumes`` at commit, so a backup is complete only with its data.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from ys1000.kube import Kube
from ys1000.kube.discovery import PVCS
from ys1000.repository import RepositoryConfig, make_store
from ys1000.volumes import restic
from ys1000.volumes.jobs import DEFAULT_IMAGE, MoverRunner, MoverSpec
from ys1000.volumes.snapshots import SnapshotRecord, take_snapshot
from ys1000.waiting import wait_until

log = logging.getLogger(__name__)

Method = Literal["filecopy", "snapshot", "snapshot_export", "skip"]


@dataclass
class VolumeOptions:
    """How a backup treats its PVCs."""

    method: Method = "filecopy"
    per_pvc: dict[str, Method] = field(default_factory=dict)  # "ns/pvc" -> method
    export_pvcs: list[str] | None = None  # snapshot_export: which "ns/pvc" to export now (None: all)
    image: str = DEFAULT_IMAGE
    max_concurrent: int = 2
    limit_upload_kib: int | None = None  # bandwidth window applied by the caller
    limit_download_kib: int | None = None
    run_id: str = "manual"
    cluster_name: str = "cluster"
    snapshot_timeout: float = 600

    def method_for(self, key: str) -> Method:
        return self.per_pvc.get(key, self.method)


def mover_env(target: restic.ResticTarget) -> dict[str, str]:
    return target.environment()


def _limit_args(opts: VolumeOptions) -> list[str]:
    out = []
    if opts.limit_upload_kib:
        out += ["--limit-upload", str(opts.limit_upload_kib)]
    if opts.limit_download_kib:
        out += ["--limit-download", str(opts.limit_download_kib)]
    return out


def file_copy(runner: MoverRunner, kube: Kube, repo_cfg: RepositoryConfig, password: str, opts: VolumeOptions,
              *, namespace: str, pvc: str, backup_id: str, plan: str, node: str | None, source_pvc: str | None = None,
              purpose: str = "backup") -> dict:
    """Back up one PVC's files with a mover Job; ``source_pvc`` reads another PVC (an export's copy)."""
    target = restic.target_for(repo_cfg, password, opts.cluster_name, namespace)
    spec = MoverSpec(
        namespace=namespace, pvc=source_pvc or pvc, purpose=purpose, run_id=opts.run_id, node=node,
        image=opts.image, env=mover_env(target), read_only=True,
        labels={"ys1000.io/backup": backup_id[:63]},
        args=["backup", "--source", "/data", "--identity", f"namespace={namespace}", "--identity", f"pvc={pvc}",
              "--tag", f"plan={plan}", "--tag", f"backup={backup_id}", *_limit_args(opts)],
    )
    result = runner.run(spec)
    return {"repository": restic.restic_path(opts.cluster_name, namespace), "snapshot_id": result["snapshot_id"],
            "source_pvc": source_pvc or pvc,
            "total_bytes": result.get("total_bytes", 0), "total_files": result.get("total_files", 0),
            "bytes_added": result.get("bytes_added", 0), "files_new": result.get("files_new", 0),
            "files_changed": result.get("files_changed", 0)}


def _export(runner, kube: Kube, repo_cfg, password, opts: VolumeOptions, *, namespace, pvc_obj, snap, backup_id, plan):
    """A temporary PVC from the snapshot, a mover uploading it, then the temporary PVC removed."""
    pvc = pvc_obj["metadata"]["name"]
    tmp = f"ys1000-export-{hashlib.sha1(f'{backup_id}/{pvc}'.encode()).hexdigest()[:10]}"
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": tmp, "labels": {"ys1000.io/component": "export", "ys1000.io/backup": backup_id[:63]}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": pvc_obj["spec"].get("storageClassName"),
                     "resources": {"requests": {"storage": pvc_obj["spec"]["resources"]["requests"]["storage"]}},
                     "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap.snapshot}}}
    if kube.get_or_none(PVCS.path(namespace, tmp)) is None:
        kube.create(PVCS, body, namespace)
    try:
        wait_until(lambda: (kube.get(PVCS.path(namespace, tmp)).get("status") or {}).get("phase") == "Bound",
                   timeout=opts.snapshot_timeout, what=f"export PVC {namespace}/{tmp} to bind")
        return file_copy(runner, kube, repo_cfg, password, opts, namespace=namespace, pvc=pvc, backup_id=backup_id,
                         plan=plan, node=None, source_pvc=tmp, purpose="export")
    finally:
        kube.delete(PVCS, tmp, namespace)


def ensure_restic_repository(repo_cfg: RepositoryConfig, password: str, cluster: str, namespace: str) -> None:
    """``restic init`` a namespace's repository unless its ``config`` object is there.

    Asked of the object store, not of restic: every restic command that opens a repository first
    derives the key (scrypt, tuned by restic to take about half a second), once per backup here.
    """
    target = restic.target_for(repo_cfg, password, cluster, namespace)
    if repo_cfg.type == "local":
        exists = (Path(target.repository) / "config").is_file()
    else:
        exists = make_store(repo_cfg).exists(restic.restic_path(cluster, namespace) + "config")
    if not exists:
        restic.ensure_repository(target.environment())


def backup_volumes(kube: Kube, repo_cfg: RepositoryConfig, password: str, pvcs: list[dict],
                   nodes: dict[str, str | None], backup_id: str, plan: str, opts: VolumeOptions,
                   runner: MoverRunner | None = None, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Protect each PVC by its method; return the manifest's volume records.

    A PVC whose data could not be taken gets a record with ``error`` (the others go on); a
    cancel raises ``InterruptedError``."""
    runner = runner or MoverRunner(kube, opts.max_concurrent)
    report = progress or (lambda _: None)
    lock = threading.Lock()
    done = [0]

    def one(pvc_obj: dict) -> dict:
        ns, name = pvc_obj["metadata"]["namespace"], pvc_obj["metadata"]["name"]
        key = f"{ns}/{name}"
        method = opts.method_for(key)
        record: dict = {"namespace": ns, "pvc": name, "method": method,
                        "storage_class": pvc_obj["spec"].get("storageClassName"),
                        "capacity": ((pvc_obj.get("status") or {}).get("capacity") or {}).get("storage")}
        if method == "skip":
            return record
        try:
            if method == "filecopy":
                record["restic"] = file_copy(runner, kube, repo_cfg, password, opts, namespace=ns, pvc=name,
                                             backup_id=backup_id, plan=plan, node=nodes.get(key))
            else:
                snap = take_snapshot(kube, ns, name, backup_id, opts.snapshot_timeout)
                record["csi"] = snap.to_json()
                if method == "snapshot_export" and (opts.export_pvcs is None or key in opts.export_pvcs):
                    record["restic"] = _export(runner, kube, repo_cfg, password, opts, namespace=ns,
                                               pvc_obj=pvc_obj, snap=snap, backup_id=backup_id, plan=plan)
        except InterruptedError:
            raise
        except Exception as exc:
            if runner.cancel.is_set():
                raise InterruptedError(f"volume data of backup {backup_id} cancelled") from exc
            # one PVC's failure must not hide the others' data; the commit marks the backup
            # PartiallyFailed naming this PVC
            log.warning("PVC %s: data not protected: %s", key, exc)
            record["error"] = f"{exc}" or type(exc).__name__
        with lock:
            done[0] += 1
            report({"phase": "volumes", "volumes_done": done[0], "volumes_total": len(pvcs), "last": key})
        return record

    # One `restic init` per namespace repository before movers run side by side: concurrent
    # inits of one repository race and leave it with two incompatible keys.
    needs_repo = {p["metadata"]["namespace"] for p in pvcs
                  if opts.method_for(f"{p['metadata']['namespace']}/{p['metadata']['name']}") in ("filecopy", "snapshot_export")}
    for ns in sorted(needs_repo):
        ensure_restic_repository(repo_cfg, password, opts.cluster_name, ns)
    with ThreadPoolExecutor(max(1, opts.max_concurrent)) as pool:
        return list(pool.map(one, pvcs))


def export_later(kube: Kube, repo_cfg: RepositoryConfig, password: str, records: list[dict], backup_id: str,
                 plan: str, opts: VolumeOptions, runner: MoverRunner | None = None) -> list[dict]:
    """Export snapshots that were taken earlier (export 'selected at a set time'): updates records."""
    runner = runner or MoverRunner(kube, opts.max_concurrent)
    out = []
    for rec in records:
        key = f"{rec['namespace']}/{rec['pvc']}"
        if rec.get("csi") and not rec.get("restic") and (opts.export_pvcs is None or key in opts.export_pvcs):
            try:
                pvc_obj = kube.get(PVCS.path(rec["namespace"], rec["pvc"]))
                snap = SnapshotRecord(**rec["csi"])
                rec = {**rec, "restic": _export(runner, kube, repo_cfg, password, opts, namespace=rec["namespace"],
                                                 pvc_obj=pvc_obj, snap=snap, backup_id=backup_id, plan=plan)}
            except InterruptedError:
                raise
            except Exception as exc:
                if runner.cancel.is_set():
                    raise InterruptedError(f"export of backup {backup_id} cancelled") from exc
                log.warning("PVC %s: snapshot not exported: %s", key, exc)
                rec = {**rec, "error": f"export failed: {exc}"}
        out.append(rec)
    return out
