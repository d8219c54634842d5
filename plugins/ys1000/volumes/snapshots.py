"""CSI snapshots (snapshot.storage.k8s.io/v1): class readiness (F5), taking and re-binding snapshots.

A backup's snapshot must outlive the namespace it was taken in (a restore after the namespace
was deleted needs it), so the class must have ``deletionPolicy: Retain``. When the cluster's
class for a driver does not conform, a conforming copy is created next to it — the original is
never changed, since other tools may rely on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PVCS, PVS, STORAGE_CLASSES
from ys1000.waiting import wait_until

GROUP, VERSION = "snapshot.storage.k8s.io", "v1"
CLASSES = ResourceType(
    GROUP, VERSION, "volumesnapshotclasses", "VolumeSnapshotClass", False, frozenset({"list", "get", "create"})
)
SNAPSHOTS = ResourceType(
    GROUP, VERSION, "volumesnapshots", "VolumeSnapshot", True, frozenset({"list", "get", "create", "delete"})
)
CONTENTS = ResourceType(
    GROUP,
    VERSION,
    "volumesnapshotcontents",
    "VolumeSnapshotContent",
    False,
    frozenset({"list", "get", "create", "delete"}),
)
CLASS_LABELS = ("velero.io/csi-volumesnapshot-class", "ys1000.io/snapshot-class")
PROVISIONER_ANNOTATION = "ys1000.io/csi-provisioner"  # which StorageClass provisioner this driver serves


class SnapshotError(RuntimeError):
    pass


@dataclass
class SnapshotRecord:
    """What the manifest keeps of one PVC's snapshot, enough to provision from it later."""

    namespace: str
    pvc: str
    snapshot: str
    content: str
    handle: str
    driver: str
    snapshot_class: str
    restore_size: str | None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _conforms(cls: dict) -> bool:
    labels = cls["metadata"].get("labels") or {}
    return cls.get("deletionPolicy") == "Retain" and any(labels.get(k) == "true" for k in CLASS_LABELS)


def ensure_snapshot_class(kube: Kube, driver: str, provisioner: str | None = None) -> str:
    """The name of a conforming VolumeSnapshotClass for ``driver``, created when none conforms."""
    try:
        classes = [c for c in kube.list(CLASSES) if c.get("driver") == driver]
    except KubeError as exc:
        if exc.status == 404:
            raise SnapshotError(
                "this cluster serves no snapshot.storage.k8s.io/v1 API: install the CSI external-snapshotter "
                "CRDs and snapshot-controller, or use the file-copy method"
            ) from None
        raise
    for c in classes:
        if _conforms(c):
            return c["metadata"]["name"]
    base = classes[0] if classes else {}
    name = f"ys1000-{driver.replace('.', '-')}"[:63].rstrip("-")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": name,
            "labels": {"ys1000.io/snapshot-class": "true"},
            "annotations": {PROVISIONER_ANNOTATION: provisioner or driver},
        },
        "driver": driver,
        "deletionPolicy": "Retain",
    }
    if base.get("parameters"):
        body["parameters"] = base["parameters"]
    try:
        kube.create(CLASSES, body)
    except KubeError as exc:
        if exc.status != 409:
            raise
    return name


def driver_of(kube: Kube, pvc: dict) -> tuple[str, str]:
    """(CSI driver, StorageClass provisioner) of a bound PVC."""
    pv = kube.get(PVS.path(name=pvc["spec"]["volumeName"]))
    csi = (pv.get("spec") or {}).get("csi")
    if not csi:
        raise SnapshotError(
            f"PVC {pvc['metadata']['namespace']}/{pvc['metadata']['name']} is not a CSI volume: "
            "it cannot be snapshotted; use the file-copy method"
        )
    sc_name = pvc["spec"].get("storageClassName")
    sc = kube.get_or_none(STORAGE_CLASSES.path(name=sc_name)) if sc_name else None
    return csi["driver"], (sc or {}).get("provisioner", csi["driver"])


def start_snapshot(kube: Kube, namespace: str, pvc_name: str, backup_id: str) -> dict:
    """Create the VolumeSnapshot of one PVC with a conforming class (a retry finds its own);
    returns what ``snapshot_record`` needs once it is readyToUse."""
    pvc = kube.get(PVCS.path(namespace, pvc_name))
    if (pvc.get("status") or {}).get("phase") != "Bound":
        raise SnapshotError(f"PVC {namespace}/{pvc_name} is not bound")
    driver, provisioner = driver_of(kube, pvc)
    cls = ensure_snapshot_class(kube, driver, provisioner)
    name = snapshot_name(backup_id, pvc_name)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "labels": {"ys1000.io/backup": backup_id[:63], "ys1000.io/pvc": pvc_name[:63]}},
        "spec": {"volumeSnapshotClassName": cls, "source": {"persistentVolumeClaimName": pvc_name}},
    }
    try:
        kube.create(SNAPSHOTS, body, namespace)
    except KubeError as exc:
        if exc.status != 409:  # a retried task finds its own snapshot
            raise
    return {"namespace": namespace, "pvc": pvc_name, "snapshot": name, "driver": driver, "snapshot_class": cls}


def snapshot_record(kube: Kube, started: dict) -> SnapshotRecord:
    """The manifest's record of a snapshot that is readyToUse."""
    vs = kube.get(SNAPSHOTS.path(started["namespace"], started["snapshot"]))
    content = kube.get(CONTENTS.path(name=vs["status"]["boundVolumeSnapshotContentName"]))
    return SnapshotRecord(
        started["namespace"],
        started["pvc"],
        started["snapshot"],
        content["metadata"]["name"],
        content["status"]["snapshotHandle"],
        started["driver"],
        started["snapshot_class"],
        str(vs["status"].get("restoreSize") or ""),
    )


def take_snapshot(kube: Kube, namespace: str, pvc_name: str, backup_id: str, timeout: float = 300) -> SnapshotRecord:
    """Snapshot one PVC with a conforming class and wait (here) until it is readyToUse."""
    started = start_snapshot(kube, namespace, pvc_name, backup_id)
    wait_ready(kube, namespace, started["snapshot"], timeout)
    return snapshot_record(kube, started)


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float) -> dict:
    def ready():
        vs = kube.get(SNAPSHOTS.path(namespace, name))
        st = vs.get("status") or {}
        if st.get("error"):
            raise SnapshotError(f"snapshot {namespace}/{name} failed: {st['error'].get('message')}")
        return vs if st.get("readyToUse") else None

    return wait_until(ready, timeout=timeout, what=f"VolumeSnapshot {namespace}/{name} to be readyToUse")


def snapshot_name(backup_id: str, pvc: str) -> str:
    digest = hashlib.sha1(f"{backup_id}/{pvc}".encode()).hexdigest()[:8]
    return f"{pvc[:40]}-{digest}"


def rebind_snapshot(kube: Kube, rec: dict, namespace: str, restore_id: str, timeout: float = 120) -> str:
    """A VolumeSnapshot in ``namespace`` for a recorded snapshot handle (the original snapshot
    object may be gone with its namespace): a pre-provisioned content + a snapshot bound to it."""
    suffix = hashlib.sha1(f"{restore_id}/{namespace}/{rec['pvc']}".encode()).hexdigest()[:8]
    vs_name = f"{rec['pvc'][:40]}-r{suffix}"
    content_name = f"ys1000-{vs_name}"
    content = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": content_name, "labels": {"ys1000.io/restore": restore_id[:63]}},
        "spec": {
            "deletionPolicy": "Retain",
            "driver": rec["driver"],
            "volumeSnapshotClassName": rec["snapshot_class"],
            "source": {"snapshotHandle": rec["handle"]},
            "volumeSnapshotRef": {"name": vs_name, "namespace": namespace},
        },
    }
    snap = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {"name": vs_name, "labels": {"ys1000.io/restore": restore_id[:63]}},
        "spec": {
            "volumeSnapshotClassName": rec["snapshot_class"],
            "source": {"volumeSnapshotContentName": content_name},
        },
    }
    for rt, body, ns in ((CONTENTS, content, None), (SNAPSHOTS, snap, namespace)):
        try:
            kube.create(rt, body, ns)
        except KubeError as exc:
            if exc.status != 409:
                raise
    wait_ready(kube, namespace, vs_name, timeout)
    return vs_name
