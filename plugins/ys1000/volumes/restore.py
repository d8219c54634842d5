"""Volume data on restore: PVCs are created first, filled, and only then do the workloads come.

Two ways to fill a restored PVC, chosen per volume from what the backup recorded:

* from its CSI snapshot — only in the cluster that took it (the handle means nothing elsewhere):
  the PVC is created with a VolumeSnapshot ``dataSource`` re-bound to the recorded handle;
* from restic (file copy or exported snapshot) — anywhere: a mover Job restores into the new PVC.

``VolumeRestorer`` plugs into the resource restore (``RestoreSpec.volume_hooks``): ``prepare`` edits
each PVC before it is created, ``populate`` runs the movers after the PVC class is in and before
the workloads class starts.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ys1000.kube import Kube
from ys1000.kube.discovery import PVCS
from ys1000.repository import RepositoryConfig
from ys1000.volumes import restic
from ys1000.volumes.jobs import DEFAULT_IMAGE, MoverRunner, MoverSpec
from ys1000.volumes.snapshots import rebind_snapshot
from ys1000.waiting import wait_until

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


@dataclass
class VolumeRestorer:
    kube: Kube
    repo_cfg: RepositoryConfig
    password: str
    volumes: list[dict]  # the manifest's volume records
    namespace_mapping: dict[str, str]
    restore_id: str
    opts: VolumeRestoreOptions = field(default_factory=VolumeRestoreOptions)
    results: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._by_key = {(v["namespace"], v["pvc"]): v for v in self.volumes}
        self._pending: dict[tuple[str, str], dict] = {}  # (target ns, pvc) -> record, for populate
        self.runner = MoverRunner(self.kube, self.opts.max_concurrent)

    def _source(self, rec: dict) -> str:
        if rec.get("csi") and self.opts.same_cluster and (self.opts.prefer_snapshots or not rec.get("restic")):
            return "snapshot"
        if rec.get("restic"):
            return "restic"
        if rec.get("csi"):
            raise RuntimeError(
                f"PVC {rec['namespace']}/{rec['pvc']} was backed up as a CSI snapshot only, which can be restored "
                "only in the cluster that took it; back it up with snapshot + export to restore elsewhere")
        return "none"

    def prepare(self, obj: dict, source_namespace: str) -> dict:
        """Called with each transformed PVC before it is created."""
        rec = self._by_key.get((source_namespace, obj["metadata"]["name"]))
        if rec is None or rec.get("method") == "skip":
            return obj
        how = self._source(rec)
        ns = obj["metadata"]["namespace"]
        if how == "snapshot":
            vs = rebind_snapshot(self.kube, rec["csi"], ns, self.restore_id)
            obj["spec"]["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": vs}
            self.results.append({"namespace": ns, "pvc": rec["pvc"], "from": "snapshot", "snapshot": vs})
        elif how == "restic":
            self._pending[(ns, obj["metadata"]["name"])] = rec
        return obj

    def populate(self, created: list[tuple[str, str]]) -> None:
        """Restore restic data into the PVCs that this restore created (existing ones are left alone)."""
        todo = [(ns, name, self._pending[(ns, name)]) for ns, name in created
                if (ns, name) in self._pending and self._pending[(ns, name)]["restic"].get("snapshot_id")]

        def one(item):
            ns, name, rec = item
            wait_until(lambda: (self.kube.get(PVCS.path(ns, name)).get("status") or {}).get("phase") == "Bound",
                       timeout=self.opts.bind_timeout, what=f"restored PVC {ns}/{name} to bind")
            target = restic.target_at(self.repo_cfg, self.password, rec["restic"]["repository"])
            args = ["restore", "--target", "/data", "--snapshot", rec["restic"]["snapshot_id"]]
            if self.opts.limit_download_kib:
                args += ["--limit-download", str(self.opts.limit_download_kib)]
            result = self.runner.run(MoverSpec(namespace=ns, pvc=name, purpose="restore", run_id=self.opts.run_id,
                                               image=self.opts.image, env=target.environment(), read_only=False,
                                               labels={"ys1000.io/restore": self.restore_id[:63]}, args=args))
            return {"namespace": ns, "pvc": name, "from": "restic", "snapshot_id": rec["restic"]["snapshot_id"],
                    "bytes_restored": result.get("bytes_restored", 0), "files_restored": result.get("files_restored", 0)}

        with ThreadPoolExecutor(max(1, self.opts.max_concurrent)) as pool:
            self.results.extend(pool.map(one, todo))

    def cancel(self) -> list[str]:
        return self.runner.cancel_all()
