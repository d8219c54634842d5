"""The storage side of a sandbox cluster: a local CSI-like driver for volumes and snapshots.

A real cluster has a CSI driver with an external-provisioner and a snapshot-controller; here one
Python controller plays both against the real API server:

* StorageClasses ``ys1000-local`` (default) and ``ys1000-local-alt`` name the provisioner
  ``local.csi.ys1000.io``. A PVC of either class gets a PV (a ``csi`` volume whose
  ``volumeAttributes.path`` is a directory under the sandbox) and the real PV controller binds them.
  A PVC whose ``dataSource`` is a VolumeSnapshot (or a PVC) starts with a copy of that data.
* A VolumeSnapshot of a bound PVC copies the PV directory to a snapshot directory, creates its
  VolumeSnapshotContent and becomes ``readyToUse``; a pre-provisioned content (``snapshotHandle``)
  binds to the snapshot that names it. ``deletionPolicy`` decides whether the data outlives them.
* Released PVs with reclaim policy Delete are removed with their directory.

The driver also installs a VolumeSnapshotClass ``ys1000-snapclass`` shaped like a typical CSI
install (``deletionPolicy: Delete``, no backup-tool label), which the product must check (F5).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ys1000_dev.sandbox.informer import Informer, Retry

log = logging.getLogger(__name__)

DRIVER = "local.csi.ys1000.io"
STORAGE_CLASSES = {"ys1000-local": "volumes", "ys1000-local-alt": "volumes-alt"}
DEFAULT_SNAPSHOT_CLASS = "ys1000-snapclass"
SNAP = ("snapshot.storage.k8s.io", "v1")
CRD_FILE = Path(__file__).with_name("crds") / "snapshot.storage.k8s.io.yaml"


def pv_dir_of(pv: dict) -> Path | None:
    """The directory behind a PV of this driver (or a hostPath/local PV)."""
    spec = pv.get("spec") or {}
    if (spec.get("csi") or {}).get("driver") == DRIVER:
        return Path(spec["csi"]["volumeAttributes"]["path"])
    for kind in ("hostPath", "local"):
        if spec.get(kind):
            return Path(spec[kind]["path"])
    return None


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory with modes, times and symlinks, via a temporary name so it is all-or-nothing."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    os.replace(tmp, dst)


class LocalDriver:
    def __init__(self, api: client.ApiClient, root: Path, stop: threading.Event):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.root = root
        self.stop = stop
        self.snap_root = root / "snapshots"
        for d in [self.snap_root, *(root / v for v in STORAGE_CLASSES.values())]:
            d.mkdir(parents=True, exist_ok=True)

    # -- installation -----------------------------------------------------------------------
    def install(self) -> None:
        ext = client.ApiextensionsV1Api(self.api)
        for doc in yaml.safe_load_all(CRD_FILE.read_text()):
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        for name in STORAGE_CLASSES:
            body = {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": name, "annotations": {}},
                "provisioner": DRIVER,
                "parameters": {"tier": "alt" if name.endswith("-alt") else "standard"},
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": True,
            }
            if name == "ys1000-local":
                body["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] = "true"
            try:
                self.storage.create_storage_class(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        self._wait_crds_established(ext)
        try:
            self.custom.create_cluster_custom_object(
                *SNAP,
                "volumesnapshotclasses",
                {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshotClass",
                    "metadata": {
                        "name": DEFAULT_SNAPSHOT_CLASS,
                        "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
                    },
                    "driver": DRIVER,
                    "deletionPolicy": "Delete",
                },
            )
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _wait_crds_established(self, ext: client.ApiextensionsV1Api) -> None:
        names = [d["metadata"]["name"] for d in yaml.safe_load_all(CRD_FILE.read_text())]
        for _ in range(100):
            done = 0
            for n in names:
                crd = ext.read_custom_resource_definition(n)
                conds = (crd.status.conditions or []) if crd.status else []
                done += any(c.type == "Established" and c.status == "True" for c in conds)
            if done == len(names):
                return
            self.stop.wait(0.1)
        raise RuntimeError("snapshot CRDs were not Established within 10 s")

    def start(self) -> None:
        Informer(
            "pvcs", lambda **kw: self.core.list_persistent_volume_claim_for_all_namespaces(**kw), self.on_pvc, self.stop
        ).start()
        Informer("pvs", lambda **kw: self.core.list_persistent_volume(**kw), self.on_pv, self.stop).start()
        Informer(
            "volumesnapshots",
            lambda **kw: self.custom.list_cluster_custom_object(*SNAP, "volumesnapshots", **kw),
            self.on_snapshot,
            self.stop,
        ).start()
        Informer(
            "volumesnapshotcontents",
            lambda **kw: self.custom.list_cluster_custom_object(*SNAP, "volumesnapshotcontents", **kw),
            self.on_content,
            self.stop,
        ).start()

    # -- provisioning -----------------------------------------------------------------------
    def on_pvc(self, event: str, pvc: dict) -> None:
        md, spec = pvc["metadata"], pvc.get("spec") or {}
        if event == "DELETED" or md.get("deletionTimestamp") or spec.get("volumeName"):
            return
        sc_name = spec.get("storageClassName")
        if sc_name not in STORAGE_CLASSES:
            return
        pv_name = f"pvc-{md['uid']}"
        try:
            self.core.read_persistent_volume(pv_name)
            return  # already provisioned; the PV controller binds it
        except ApiException as exc:
            if exc.status != 404:
                raise
        sc = self.storage.read_storage_class(sc_name)
        path = self.root / STORAGE_CLASSES[sc_name] / pv_name
        source = spec.get("dataSourceRef") or spec.get("dataSource")
        if source:
            self._populate(md["namespace"], source, path)
        else:
            path.mkdir(parents=True, exist_ok=True)
        size = (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": sc.reclaim_policy or "Delete",
                "storageClassName": sc_name,
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": md["namespace"],
                    "name": md["name"],
                    "uid": md["uid"],
                },
                "csi": {"driver": DRIVER, "volumeHandle": pv_name, "volumeAttributes": {"path": str(path)}},
            },
        }
        self.core.create_persistent_volume(pv)
        log.info("provisioned %s for %s/%s", pv_name, md["namespace"], md["name"])

    def _populate(self, ns: str, source: dict, path: Path) -> None:
        kind, name = source.get("kind"), source.get("name")
        if kind == "VolumeSnapshot":
            try:
                vs = self.custom.get_namespaced_custom_object(*SNAP, ns, "volumesnapshots", name)
            except ApiException as exc:
                if exc.status == 404:
                    raise Retry(f"VolumeSnapshot {ns}/{name} not found", 1.0) from exc
                raise
            status = vs.get("status") or {}
            if not status.get("readyToUse"):
                raise Retry(f"VolumeSnapshot {ns}/{name} not ready", 0.5)
            vsc = self.custom.get_cluster_custom_object(
                *SNAP, "volumesnapshotcontents", status["boundVolumeSnapshotContentName"]
            )
            src = self.snap_root / vsc["status"]["snapshotHandle"]
        elif kind == "PersistentVolumeClaim":
            src_pvc = self.core.read_namespaced_persistent_volume_claim(name, ns)
            if not src_pvc.spec.volume_name:
                raise Retry(f"source PVC {ns}/{name} not bound", 0.5)
            src = pv_dir_of(
                self.api.sanitize_for_serialization(self.core.read_persistent_volume(src_pvc.spec.volume_name))
            )
        else:
            raise ValueError(f"unsupported dataSource kind {kind}")
        if src is None or not src.is_dir():
            raise Retry(f"data of {kind} {ns}/{name} not on disk", 2.0)
        copy_tree(src, path)

    def on_pv(self, event: str, pv: dict) -> None:
        md, spec = pv["metadata"], pv.get("spec") or {}
        if (md.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") != DRIVER:
            return
        path = pv_dir_of(pv)
        if event == "DELETED":
            if path is not None and self.root in path.parents:
                shutil.rmtree(path, ignore_errors=True)
            return
        phase = (pv.get("status") or {}).get("phase")
        if phase == "Released" and spec.get("persistentVolumeReclaimPolicy") == "Delete":
            try:
                self.core.delete_persistent_volume(md["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # -- snapshots --------------------------------------------------------------------------
    def _snapshot_class(self, name: str | None) -> dict:
        if name:
            return self.custom.get_cluster_custom_object(*SNAP, "volumesnapshotclasses", name)
        for c in self.custom.list_cluster_custom_object(*SNAP, "volumesnapshotclasses")["items"]:
            ann = c["metadata"].get("annotations") or {}
            if c["driver"] == DRIVER and ann.get("snapshot.storage.kubernetes.io/is-default-class") == "true":
                return c
        raise Retry("no default VolumeSnapshotClass for the sandbox driver", 2.0)

    def on_snapshot(self, event: str, vs: dict) -> None:
        md, spec, status = vs["metadata"], vs.get("spec") or {}, vs.get("status") or {}
        ns, name = md["namespace"], md["name"]
        if event == "DELETED":
            content = status.get("boundVolumeSnapshotContentName")
            if content and not spec.get("source", {}).get("volumeSnapshotContentName"):
                self._delete_content_if_policy(content)
            return
        if status.get("readyToUse"):
            return
        source = spec.get("source") or {}
        if source.get("volumeSnapshotContentName"):
            content_name = source["volumeSnapshotContentName"]
            try:
                vsc = self.custom.get_cluster_custom_object(*SNAP, "volumesnapshotcontents", content_name)
            except ApiException as exc:
                if exc.status == 404:
                    raise Retry(f"VolumeSnapshotContent {content_name} not found", 1.0) from exc
                raise
            handle = vsc["spec"]["source"].get("snapshotHandle")
            if not handle or not (self.snap_root / handle).is_dir():
                self._set_status(
                    "volumesnapshots",
                    name,
                    ns,
                    {
                        "readyToUse": False,
                        "error": {
                            "message": f"snapshot handle {handle!r} not found by driver {DRIVER}",
                            "time": _now(),
                        },
                    },
                )
                return
            self._mark_content_ready(vsc, handle)
            self._mark_snapshot_ready(vs, content_name, dir_size(self.snap_root / handle))
            return
        pvc_name = source.get("persistentVolumeClaimName")
        pvc = self.core.read_namespaced_persistent_volume_claim(pvc_name, ns)
        if not pvc.spec.volume_name or pvc.status.phase != "Bound":
            raise Retry(f"PVC {ns}/{pvc_name} not bound", 0.5)
        pv = self.api.sanitize_for_serialization(self.core.read_persistent_volume(pvc.spec.volume_name))
        src = pv_dir_of(pv)
        if (pv["spec"].get("csi") or {}).get("driver") != DRIVER or src is None:
            self._set_status(
                "volumesnapshots",
                name,
                ns,
                {
                    "readyToUse": False,
                    "error": {"message": f"PV {pv['metadata']['name']} is not provisioned by {DRIVER}", "time": _now()},
                },
            )
            return
        vclass = self._snapshot_class(spec.get("volumeSnapshotClassName"))
        content_name = f"snapcontent-{md['uid']}"
        handle = f"snap-{md['uid']}"
        if not (self.snap_root / handle).is_dir():
            copy_tree(src, self.snap_root / handle)
        try:
            vsc = self.custom.create_cluster_custom_object(
                *SNAP,
                "volumesnapshotcontents",
                {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshotContent",
                    "metadata": {"name": content_name},
                    "spec": {
                        "deletionPolicy": vclass["deletionPolicy"],
                        "driver": DRIVER,
                        "volumeSnapshotClassName": vclass["metadata"]["name"],
                        "source": {"volumeHandle": pv["spec"]["csi"]["volumeHandle"]},
                        "volumeSnapshotRef": {
                            "apiVersion": "snapshot.storage.k8s.io/v1",
                            "kind": "VolumeSnapshot",
                            "namespace": ns,
                            "name": name,
                            "uid": md["uid"],
                        },
                    },
                },
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            vsc = self.custom.get_cluster_custom_object(*SNAP, "volumesnapshotcontents", content_name)
        size = dir_size(self.snap_root / handle)
        self._mark_content_ready(vsc, handle, size)
        self._mark_snapshot_ready(vs, content_name, size)
        log.info("snapshot %s/%s of %s ready (%s)", ns, name, pvc_name, handle)

    def on_content(self, event: str, vsc: dict) -> None:
        spec = vsc.get("spec") or {}
        handle = (vsc.get("status") or {}).get("snapshotHandle") or spec.get("source", {}).get("snapshotHandle")
        if event == "DELETED":
            if spec.get("deletionPolicy") == "Delete" and spec.get("driver") == DRIVER and handle:
                shutil.rmtree(self.snap_root / handle, ignore_errors=True)
            return
        if (
            spec.get("driver") == DRIVER
            and spec.get("source", {}).get("snapshotHandle")
            and not (vsc.get("status") or {}).get("readyToUse")
        ):
            if (self.snap_root / handle).is_dir():
                self._mark_content_ready(vsc, handle)

    def _delete_content_if_policy(self, name: str) -> None:
        try:
            vsc = self.custom.get_cluster_custom_object(*SNAP, "volumesnapshotcontents", name)
            if vsc["spec"].get("deletionPolicy") == "Delete":
                self.custom.delete_cluster_custom_object(*SNAP, "volumesnapshotcontents", name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _mark_content_ready(self, vsc: dict, handle: str, size: int | None = None) -> None:
        size = dir_size(self.snap_root / handle) if size is None else size
        self.custom.patch_cluster_custom_object_status(
            *SNAP,
            "volumesnapshotcontents",
            vsc["metadata"]["name"],
            {
                "status": {
                    "snapshotHandle": handle,
                    "readyToUse": True,
                    "restoreSize": size,
                    "creationTime": int(dt.datetime.now().timestamp() * 1e9),
                }
            },
        )

    def _mark_snapshot_ready(self, vs: dict, content_name: str, size: int) -> None:
        self._set_status(
            "volumesnapshots",
            vs["metadata"]["name"],
            vs["metadata"]["namespace"],
            {
                "boundVolumeSnapshotContentName": content_name,
                "readyToUse": True,
                "restoreSize": str(size),
                "creationTime": _now(),
            },
        )

    def _set_status(self, plural: str, name: str, ns: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(*SNAP, ns, plural, name, {"status": status})


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
