"""Volume data of a backup: per PVC, a file copy (restic mover), a CSI snapshot, or both (export).

Runs between capture and commit: its result — one record per PVC — goes into the manifest's
``volumes`` at commit, so a backup is complete only with its data. ``VolumeBackup`` and
``VolumeExport`` are the per-PVC units (``ys1000.volumes.steps``): the DAG runs one mapped task
per PVC and defers their waits; ``backup_volumes`` and ``export_later`` drive them in place.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from ys1000.kube import Kube, jobs
from ys1000.kube.discovery import PVCS
from ys1000.repository import RepositoryConfig, make_store
from ys1000.volumes import restic
from ys1000.volumes.movers import DEFAULT_IMAGE, MoverSpec, describe, mover_job
from ys1000.volumes.snapshots import snapshot_record, start_snapshot
from ys1000.volumes.steps import Done, Driver, Step, StepFailed, Wait, clean, job_wait

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
    # a mover whose S3 keeps failing this long with no progress stops and fails its PVC
    backend_retry_seconds: int = restic.BACKEND_RETRY_SECONDS

    def method_for(self, key: str) -> Method:
        return self.per_pvc.get(key, self.method)


def mover_env(target: restic.ResticTarget) -> dict[str, str]:
    return target.environment()


def _limit_args(opts: VolumeOptions) -> list[str]:
    out = []
    if opts.backend_retry_seconds != restic.BACKEND_RETRY_SECONDS:
        out += ["--backend-retry-seconds", str(opts.backend_retry_seconds)]
    if opts.limit_upload_kib:
        out += ["--limit-upload", str(opts.limit_upload_kib)]
    if opts.limit_download_kib:
        out += ["--limit-download", str(opts.limit_download_kib)]
    return out


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


def prepare_restic_repositories(
    repo_cfg: RepositoryConfig, password: str, pvcs: list[dict], opts: VolumeOptions
) -> list[str]:
    """One ``restic init`` per namespace repository before movers run side by side (concurrent
    inits of one repository race and leave it with two incompatible keys)."""
    needs = sorted(
        {
            p["metadata"]["namespace"]
            for p in pvcs
            if opts.method_for(f"{p['metadata']['namespace']}/{p['metadata']['name']}")
            in ("filecopy", "snapshot_export")
        }
    )
    for ns in needs:
        ensure_restic_repository(repo_cfg, password, opts.cluster_name, ns)
    return needs


def _restic_record(result: dict, opts: VolumeOptions, namespace: str, source_pvc: str) -> dict:
    record = {
        "repository": restic.restic_path(opts.cluster_name, namespace),
        "snapshot_id": result["snapshot_id"],
        "source_pvc": source_pvc,
        "total_bytes": result.get("total_bytes", 0),
        "total_files": result.get("total_files", 0),
        "bytes_added": result.get("bytes_added", 0),
        "files_new": result.get("files_new", 0),
        "files_changed": result.get("files_changed", 0),
    }
    # for the anomaly guard (ys1000.backup.anomaly): files removed since the parent snapshot are
    # its total minus changed minus unmodified; packed/added says whether new data compresses
    # (absent from an older mover's result: then not judged rather than guessed)
    for key in ("files_unmodified", "bytes_added_packed"):
        if result.get(key) is not None:
            record[key] = result[key]
    return record


def export_pvc_name(backup_id: str, pvc: str) -> str:
    return f"ys1000-export-{hashlib.sha1(f'{backup_id}/{pvc}'.encode()).hexdigest()[:10]}"


@dataclass
class VolumeBackup:
    """One PVC of one backup, by its method: ``begin`` → (``resume`` …) → the manifest record."""

    kube: Kube
    repo_cfg: RepositoryConfig
    password: str
    opts: VolumeOptions
    backup_id: str
    plan: str

    # -- start
    def begin(self, pvc_obj: dict, node: str | None = None) -> Step:
        ns, name = pvc_obj["metadata"]["namespace"], pvc_obj["metadata"]["name"]
        key = f"{ns}/{name}"
        method = self.opts.method_for(key)
        record: dict = {
            "namespace": ns,
            "pvc": name,
            "method": method,
            "storage_class": pvc_obj["spec"].get("storageClassName"),
            "capacity": ((pvc_obj.get("status") or {}).get("capacity") or {}).get("storage"),
        }
        if method == "skip":
            return Done(record)
        if method == "filecopy":
            return self._copy(record, source_pvc=name, node=node, purpose="backup", stage="copy")
        started = start_snapshot(self.kube, ns, name, self.backup_id)
        return Wait(
            {
                "kind": "snapshot",
                "namespace": ns,
                "name": started["snapshot"],
                "timeout": self.opts.snapshot_timeout,
                "label": f"snapshot of PVC {key}",
            },
            {"stage": "snapshot", "record": record, "snapshot": started},
        )

    def _copy(
        self, record: dict, *, source_pvc: str, node: str | None, purpose: str, stage: str, tmp: str | None = None
    ) -> Wait:
        ns, pvc = record["namespace"], record["pvc"]
        target = restic.target_for(self.repo_cfg, self.password, self.opts.cluster_name, ns)
        spec = MoverSpec(
            namespace=ns,
            pvc=source_pvc,
            purpose=purpose,
            run_id=self.opts.run_id,
            node=node,
            image=self.opts.image,
            env=target.environment(),
            read_only=True,
            labels={"ys1000.io/backup": self.backup_id[:63]},
            args=[
                "backup",
                "--source",
                "/data",
                "--identity",
                f"namespace={ns}",
                "--identity",
                f"pvc={pvc}",
                "--tag",
                f"plan={self.plan}",
                "--tag",
                f"backup={self.backup_id}",
                *_limit_args(self.opts),
            ],
        )
        run = mover_job(spec)
        jobs.start(self.kube, run)  # a retried task finds its still-running mover
        return job_wait(
            run,
            describe(spec),
            spec.timeout,
            {"stage": stage, "record": record, "job": run.name, "source_pvc": source_pvc, "tmp": tmp},
            pvcs=[[ns, tmp]] if tmp else None,
        )

    # -- go on after a wait
    def resume(self, state: dict, event: dict) -> Step:
        record, stage = dict(state["record"]), state["stage"]
        ns = record["namespace"]
        if event.get("status") != "success":
            clean(
                self.kube,
                {
                    "jobs": [[ns, state["job"]]] if state.get("job") else [],
                    "pvcs": [[ns, state["tmp"]]] if state.get("tmp") else [],
                },
            )
            raise StepFailed(event.get("reason") or f"PVC {ns}/{record['pvc']}: {stage} failed")
        if stage == "snapshot":
            record["csi"] = snapshot_record(self.kube, state["snapshot"]).to_json()
            key = f"{ns}/{record['pvc']}"
            if record["method"] == "snapshot_export" and (
                self.opts.export_pvcs is None or key in self.opts.export_pvcs
            ):
                return VolumeExport(
                    self.kube, self.repo_cfg, self.password, self.opts, self.backup_id, self.plan
                ).begin(record)
            return Done(record)
        if stage == "export_bind":
            return self._copy(
                record, source_pvc=state["tmp"], node=None, purpose="export", stage="copy", tmp=state["tmp"]
            )
        if stage == "copy":
            record["restic"] = _restic_record(event["result"], self.opts, ns, state["source_pvc"])
            clean(self.kube, {"jobs": [[ns, state["job"]]], "pvcs": [[ns, state["tmp"]]] if state.get("tmp") else []})
            return Done(record)
        raise ValueError(f"unknown stage {stage!r}")


class VolumeExport(VolumeBackup):
    """Upload a taken snapshot: a temporary PVC from it, a mover reading it, the PVC removed."""

    def begin(self, record: dict, node: str | None = None) -> Step:  # type: ignore[override]
        ns, pvc = record["namespace"], record["pvc"]
        key = f"{ns}/{pvc}"
        if (
            not record.get("csi")
            or record.get("restic")
            or record.get("error")
            or not (self.opts.export_pvcs is None or key in self.opts.export_pvcs)
        ):
            return Done(record)  # nothing (more) to export for this PVC
        pvc_obj = self.kube.get(PVCS.path(ns, pvc))
        tmp = export_pvc_name(self.backup_id, pvc)
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": tmp,
                "labels": {"ys1000.io/component": "export", "ys1000.io/backup": self.backup_id[:63]},
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": pvc_obj["spec"].get("storageClassName"),
                "resources": {"requests": {"storage": pvc_obj["spec"]["resources"]["requests"]["storage"]}},
                "dataSource": {
                    "apiGroup": "snapshot.storage.k8s.io",
                    "kind": "VolumeSnapshot",
                    "name": record["csi"]["snapshot"],
                },
            },
        }
        if self.kube.get_or_none(PVCS.path(ns, tmp)) is None:
            self.kube.create(PVCS, body, ns)
        return Wait(
            {
                "kind": "pvc_bound",
                "namespace": ns,
                "name": tmp,
                "timeout": self.opts.snapshot_timeout,
                "label": f"export PVC {ns}/{tmp} to bind",
            },
            {"stage": "export_bind", "record": record, "tmp": tmp},
            {"pvcs": [[ns, tmp]]},
        )


def backup_volumes(
    kube: Kube,
    repo_cfg: RepositoryConfig,
    password: str,
    pvcs: list[dict],
    nodes: dict[str, str | None],
    backup_id: str,
    plan: str,
    opts: VolumeOptions,
    driver: Driver | None = None,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Protect each PVC by its method, waiting in place; return the manifest's volume records.

    A PVC whose data could not be taken gets a record with ``error`` (the others go on); a
    cancel raises ``InterruptedError``."""
    driver = driver or Driver(kube, opts.max_concurrent)
    unit = VolumeBackup(kube, repo_cfg, password, opts, backup_id, plan)
    report = progress or (lambda _: None)
    lock = threading.Lock()
    done = [0]

    def one(pvc_obj: dict) -> dict:
        ns, name = pvc_obj["metadata"]["namespace"], pvc_obj["metadata"]["name"]
        key = f"{ns}/{name}"
        try:
            record = driver.drive(unit, lambda: unit.begin(pvc_obj, nodes.get(key)), key)
        except InterruptedError:
            raise
        except Exception as exc:
            if driver.cancel.is_set():
                raise InterruptedError(f"volume data of backup {backup_id} cancelled") from exc
            # one PVC's failure must not hide the others' data; the commit marks the backup
            # PartiallyFailed naming this PVC
            log.warning("PVC %s: data not protected: %s", key, exc)
            record = {
                "namespace": ns,
                "pvc": name,
                "method": opts.method_for(key),
                "storage_class": pvc_obj["spec"].get("storageClassName"),
                "error": f"{exc}" or type(exc).__name__,
            }
        with lock:
            done[0] += 1
            report({"phase": "volumes", "volumes_done": done[0], "volumes_total": len(pvcs), "last": key})
        return record

    prepare_restic_repositories(repo_cfg, password, pvcs, opts)
    with ThreadPoolExecutor(max(1, opts.max_concurrent)) as pool:
        return list(pool.map(one, pvcs))


def export_later(
    kube: Kube,
    repo_cfg: RepositoryConfig,
    password: str,
    records: list[dict],
    backup_id: str,
    plan: str,
    opts: VolumeOptions,
    driver: Driver | None = None,
) -> list[dict]:
    """Export snapshots that were taken earlier (export 'selected at a set time'): updates records."""
    driver = driver or Driver(kube, opts.max_concurrent)
    unit = VolumeExport(kube, repo_cfg, password, opts, backup_id, plan)
    out = []
    for rec in records:
        try:
            rec = driver.drive(unit, functools.partial(unit.begin, rec), f"{rec['namespace']}/{rec['pvc']}")
        except InterruptedError:
            raise
        except Exception as exc:
            if driver.cancel.is_set():
                raise InterruptedError(f"export of backup {backup_id} cancelled") from exc
            log.warning("PVC %s/%s: snapshot not exported: %s", rec["namespace"], rec["pvc"], exc)
            rec = {**rec, "error": f"export failed: {exc}"}
        out.append(rec)
    return out
