"""Volume data on restore: PVCs are created first, filled, and only then do the workloads come.

Two ways to fill a restored PVC, chosen per volume from what the backup recorded:

* from its CSI snapshot — only in the cluster that took it (the handle means nothing elsewhere):
  the PVC is created with a VolumeSnapshot ``dataSource`` re-bound to the recorded handle;
* from restic (file copy or exported snapshot) — anywhere: a mover Job restores into the new PVC.

``VolumeRestorer`` plugs into the resource restore (``RestoreSpec.volume_restorer``): ``prepare``
edits each PVC before it is created, ``populate`` fills the created ones (``VolumeRestore`` per
PVC, driven in place) after the PVC class is in and before the workloads class starts. The
restore DAG runs the same ``VolumeRestore`` units as one mapped task per PVC instead.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ys1000.kube import Kube, jobs
from ys1000.repository import RepositoryConfig
from ys1000.volumes import restic
from ys1000.volumes.movers import DEFAULT_IMAGE, MoverSpec, describe, mover_job
from ys1000.volumes.snapshots import rebind_snapshot
from ys1000.volumes.steps import Done, Driver, Step, StepFailed, Wait, clean, job_wait

log = logging.getLogger(__name__)


@dataclass
class VolumeRestoreOptions:
    same_cluster: bool = False  # the target is the cluster the backup was taken in
    prefer_snapshots: bool = True
    image: str = DEFAULT_IMAGE
    max_concurrent: int = 2
    limit_download_kib: int | None = None
    run_id: str = "manual"
    bind_timeout: float = 120
    verify: bool = False  # restic restore --verify: every restored byte checked against the snapshot


@dataclass
class VolumeRestore:
    """Fill one restored PVC from its restic snapshot: wait until it is bound, then a mover."""

    kube: Kube
    repo_cfg: RepositoryConfig
    password: str
    restore_id: str
    opts: VolumeRestoreOptions

    def begin(self, namespace: str, pvc: str, rec: dict) -> Step:
        return Wait(
            {
                "kind": "pvc_bound",
                "namespace": namespace,
                "name": pvc,
                "timeout": self.opts.bind_timeout,
                "label": f"restored PVC {namespace}/{pvc} to bind",
            },
            {
                "stage": "bind",
                "namespace": namespace,
                "pvc": pvc,
                "repository": rec["restic"]["repository"],
                "snapshot_id": rec["restic"]["snapshot_id"],
            },
        )

    def resume(self, state: dict, event: dict) -> Step:
        ns, pvc = state["namespace"], state["pvc"]
        if event.get("status") != "success":
            if state.get("job"):
                clean(self.kube, {"jobs": [[ns, state["job"]]]})
            raise StepFailed(event.get("reason") or f"PVC {ns}/{pvc}: {state['stage']} failed")
        if state["stage"] == "bind":
            target = restic.target_at(self.repo_cfg, self.password, state["repository"])
            args = ["restore", "--target", "/data", "--snapshot", state["snapshot_id"]]
            if self.opts.limit_download_kib:
                args += ["--limit-download", str(self.opts.limit_download_kib)]
            if self.opts.verify:
                args.append("--verify")
            spec = MoverSpec(
                namespace=ns,
                pvc=pvc,
                purpose="restore",
                run_id=self.opts.run_id,
                image=self.opts.image,
                env=target.environment(),
                read_only=False,
                labels={"ys1000.io/restore": self.restore_id[:63]},
                args=args,
            )
            run = mover_job(spec)
            jobs.start(self.kube, run)  # a retried task finds its still-running mover
            return job_wait(run, describe(spec), spec.timeout, {**state, "stage": "restore", "job": run.name})
        result = event["result"]
        clean(self.kube, {"jobs": [[ns, state["job"]]]})
        return Done(
            {
                "namespace": ns,
                "pvc": pvc,
                "status": "data",
                "from": "restic",
                "snapshot_id": state["snapshot_id"],
                "bytes_restored": result.get("bytes_restored", 0),
                "files_restored": result.get("files_restored", 0),
                "total_files": result.get("total_files", 0),
                "total_bytes": result.get("total_bytes", 0),
                "verified": bool(result.get("verified")),
            }
        )


@dataclass
class VolumeRestorer:
    kube: Kube
    repo_cfg: RepositoryConfig
    password: str
    volumes: list[dict]  # the manifest's volume records
    namespace_mapping: dict[str, str]
    restore_id: str
    opts: VolumeRestoreOptions = field(default_factory=VolumeRestoreOptions)
    no_data_reason: str = ""  # why PVCs without a record come back empty (e.g. scope 'resources')
    results: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._by_key = {(v["namespace"], v["pvc"]): v for v in self.volumes}
        self._pending: dict[tuple[str, str], dict] = {}  # (target ns, pvc) -> record, for populate
        self._snapshots: dict[tuple[str, str], str] = {}  # (target ns, pvc) -> VolumeSnapshot filling it
        self._empty: dict[tuple[str, str], str] = {}  # (target ns, pvc) -> why it comes back empty
        self.driver = Driver(self.kube, self.opts.max_concurrent)

    def _source(self, rec: dict) -> str:
        if rec.get("csi") and self.opts.same_cluster and (self.opts.prefer_snapshots or not rec.get("restic")):
            return "snapshot"
        if rec.get("restic"):
            return "restic"
        if rec.get("csi"):
            raise RuntimeError(
                f"PVC {rec['namespace']}/{rec['pvc']} was backed up as a CSI snapshot only, which can be restored "
                "only in the cluster that took it; back it up with snapshot + export to restore elsewhere"
            )
        return "none"

    def prepare(self, obj: dict, source_namespace: str) -> dict:
        """Called with each transformed PVC before it is created."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        rec = self._by_key.get((source_namespace, name))
        if rec is None:
            self._empty[(ns, name)] = self.no_data_reason or "the backup has no data record for this PVC"
            return obj
        if rec.get("method") == "skip":
            self._empty[(ns, name)] = "backed up without data (method skip)"
            return obj
        if rec.get("error"):
            self._empty[(ns, name)] = f"the backup could not protect its data: {rec['error']}"
            return obj
        how = self._source(rec)
        if how == "snapshot":
            vs = rebind_snapshot(self.kube, rec["csi"], ns, self.restore_id)
            obj["spec"]["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": vs}
            self._snapshots[(ns, name)] = vs
        elif how == "restic" and rec["restic"].get("snapshot_id"):
            self._pending[(ns, name)] = rec
        else:
            self._empty[(ns, name)] = "the volume was empty at backup time"
        return obj

    def pending(self, created: list[tuple[str, str]]) -> list[dict]:
        """The created PVCs that get restic data: ``{"namespace", "pvc", "record"}`` each."""
        return [
            {"namespace": ns, "pvc": name, "record": self._pending[(ns, name)]}
            for ns, name in created
            if (ns, name) in self._pending
        ]

    def populate(self, created: list[tuple[str, str]]) -> None:
        """Restore restic data into the PVCs that this restore created (existing ones are left
        alone). A PVC whose mover fails is recorded as failed; the others go on."""
        unit = VolumeRestore(self.kube, self.repo_cfg, self.password, self.restore_id, self.opts)

        def one(item: dict) -> dict:
            ns, name, rec = item["namespace"], item["pvc"], item["record"]
            try:
                return self.driver.drive(unit, lambda: unit.begin(ns, name, rec), f"{ns}/{name}")
            except InterruptedError:
                raise
            except Exception as exc:
                if self.driver.cancel.is_set():
                    raise InterruptedError(f"restore {self.restore_id} cancelled") from exc
                log.warning("PVC %s/%s: data not restored: %s", ns, name, exc)
                return {
                    "namespace": ns,
                    "pvc": name,
                    "status": "failed",
                    "from": "restic",
                    "snapshot_id": rec["restic"]["snapshot_id"],
                    "reason": str(exc) or type(exc).__name__,
                }

        with ThreadPoolExecutor(max(1, self.opts.max_concurrent)) as pool:
            self.results.extend(pool.map(one, self.pending(created)))

    def report(self, items, *, pending_ok: bool = False) -> list[dict]:
        """One line per PVC of the restore: filled with data, empty by design (and why), left as it
        was (it existed), or failed (and why); with ``pending_ok``, ``pending`` for those whose
        data the restore's volume tasks are about to fill."""
        by_key = {(r["namespace"], r["pvc"]): r for r in self.results}
        out = []
        for item in items:
            if item.kind != "PersistentVolumeClaim":
                continue
            key = (item.namespace, item.name)
            if item.action == "failed":
                out.append(
                    {
                        "namespace": item.namespace,
                        "pvc": item.name,
                        "status": "failed",
                        "reason": f"the PVC was not created: {item.reason}",
                    }
                )
            elif item.action != "created":
                out.append(
                    {
                        "namespace": item.namespace,
                        "pvc": item.name,
                        "status": "existing",
                        "reason": f"the PVC was {item.action}; its data was left as it is",
                    }
                )
            elif key in by_key:
                out.append(by_key[key])
            elif key in self._snapshots:
                out.append(
                    {
                        "namespace": item.namespace,
                        "pvc": item.name,
                        "status": "data",
                        "from": "snapshot",
                        "snapshot": self._snapshots[key],
                    }
                )
            elif pending_ok and key in self._pending:
                out.append({"namespace": item.namespace, "pvc": item.name, "status": "pending"})
            elif key in self._empty:
                out.append(
                    {"namespace": item.namespace, "pvc": item.name, "status": "empty", "reason": self._empty[key]}
                )
            else:
                out.append(
                    {
                        "namespace": item.namespace,
                        "pvc": item.name,
                        "status": "failed",
                        "reason": "its data was not restored",
                    }
                )
        return out

    def cancel(self) -> list[str]:
        return self.driver.cancel_all()
