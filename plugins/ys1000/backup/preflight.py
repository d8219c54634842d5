"""Preflight of a backup (F30): count, check limits and volume kinds before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from ys1000.backup.listing import cluster_wide, objects_in, scopes
from ys1000.backup.selection import BackupSpec, resolve_namespaces
from ys1000.kube import Kube
from ys1000.kube.discovery import PODS, PVCS, PVS


class LimitExceeded(ValueError):
    """A backup over a limit, or with a volume that cannot be protected; nothing was written."""


@dataclass
class VolumeUse:
    namespace: str
    pvc: str
    pods: list[str] = field(default_factory=list)
    node: str | None = None  # where a mover must run for ReadWriteOnce volumes


@dataclass
class Inventory:
    namespaces: list[str]
    pod_count: int
    pvcs: list[dict]  # the PVC objects, for the volume-data part
    volumes: dict[str, VolumeUse]  # "<ns>/<pvc>" -> pods using it
    skipped: list[str] = field(default_factory=list)  # emptyDir and inline hostPath volumes, for the report
    # the namespaces when they are listed cluster-wide (``ys1000.backup.listing``), else None
    wide: frozenset[str] | None = None

    def summary(self) -> dict:
        return {
            "namespaces": len(self.namespaces),
            "pods": self.pod_count,
            "pvcs": len(self.pvcs),
            "skipped_volumes": self.skipped,
        }


def preflight(kube: Kube, spec: BackupSpec) -> Inventory:
    """Resolve the namespaces and check every limit; raise ``LimitExceeded`` naming what is over."""
    namespaces = resolve_namespaces(kube, spec)
    lim = spec.limits
    if len(namespaces) > lim.max_namespaces:
        raise LimitExceeded(
            f"backup selects {len(namespaces)} namespaces, more than the limit of {lim.max_namespaces} "
            f"({', '.join(namespaces)}); split the plan or raise limits.max_namespaces"
        )
    pods: list[dict] = []
    pvcs: list[dict] = []
    wide = cluster_wide(kube, namespaces)
    for ns in scopes(wide, namespaces):
        pods += [
            p
            for p in objects_in(kube, PODS, ns, only=wide or frozenset())
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        pvcs += list(objects_in(kube, PVCS, ns, only=wide or frozenset()))
    if len(pods) > lim.max_pods:
        raise LimitExceeded(
            f"backup selects {len(pods)} pods, more than the limit of {lim.max_pods}; "
            "split the plan or raise limits.max_pods"
        )
    if len(pvcs) > lim.max_pvcs:
        raise LimitExceeded(
            f"backup selects {len(pvcs)} PVCs, more than the limit of {lim.max_pvcs}; "
            "split the plan or raise limits.max_pvcs"
        )
    volumes = {
        f"{c['metadata']['namespace']}/{c['metadata']['name']}": VolumeUse(
            c["metadata"]["namespace"], c["metadata"]["name"]
        )
        for c in pvcs
    }
    skipped: list[str] = []
    for pod in pods:
        md, pspec = pod["metadata"], pod.get("spec") or {}
        where = f"pod {md['namespace']}/{md['name']}"
        for vol in pspec.get("volumes") or []:
            # inline hostPath volumes are node-local mounts (a node exporter's /, /sys, /proc),
            # like emptyDir: not the application's data, so skipped and said so, never refused
            if "hostPath" in vol:
                skipped.append(f"{where} volume {vol['name']} (hostPath {vol['hostPath'].get('path')})")
            elif "emptyDir" in vol:
                skipped.append(f"{where} volume {vol['name']} (emptyDir)")
            elif "persistentVolumeClaim" in vol:
                use = volumes.get(f"{md['namespace']}/{vol['persistentVolumeClaim']['claimName']}")
                if use is not None:
                    use.pods.append(md["name"])
                    use.node = use.node or pspec.get("nodeName")
    if spec.scope != "resources":
        refused = _node_local_claims(kube, pvcs)
        if refused:
            raise LimitExceeded(
                "PVCs bound to hostPath or local PVs cannot be backed up (their data lives on one node, "
                "outside any storage the product can copy or snapshot): "
                + "; ".join(refused)
                + ". Use scope 'resources' or move the data to a PVC of a CSI StorageClass."
            )
    return Inventory(namespaces, len(pods), pvcs, volumes, skipped, wide)


def _node_local_claims(kube: Kube, pvcs: list[dict]) -> list[str]:
    """ "PVC ns/name (PV pv, hostPath /path)" for each claim whose volume is a hostPath or local PV."""
    found: list[str] = []
    for c in pvcs:
        pv_name = (c.get("spec") or {}).get("volumeName")
        pv = kube.get_or_none(PVS.path(name=pv_name)) if pv_name else None
        pv_spec = (pv or {}).get("spec") or {}
        for kind in ("hostPath", "local"):
            if pv_spec.get(kind):
                found.append(
                    f"PVC {c['metadata']['namespace']}/{c['metadata']['name']} "
                    f"(PV {pv_name}, {kind} {pv_spec[kind].get('path')})"
                )
    return found
