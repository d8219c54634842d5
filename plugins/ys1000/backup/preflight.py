"""Preflight of a backup (F30): count, check limits and volume kinds before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from ys1000.backup.selection import BackupSpec, resolve_namespaces
from ys1000.kube import Kube
from ys1000.kube.discovery import PODS, PVCS


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
    skipped: list[str] = field(default_factory=list)  # emptyDir volumes, noted for the report

    def summary(self) -> dict:
        return {"namespaces": len(self.namespaces), "pods": self.pod_count, "pvcs": len(self.pvcs),
                "skipped_volumes": self.skipped}


def preflight(kube: Kube, spec: BackupSpec) -> Inventory:
    """Resolve the namespaces and check every limit; raise ``LimitExceeded`` naming what is over."""
    namespaces = resolve_namespaces(kube, spec)
    lim = spec.limits
    if len(namespaces) > lim.max_namespaces:
        raise LimitExceeded(
            f"backup selects {len(namespaces)} namespaces, more than the limit of {lim.max_namespaces} "
            f"({', '.join(namespaces)}); split the plan or raise limits.max_namespaces")
    pods: list[dict] = []
    pvcs: list[dict] = []
    for ns in namespaces:
        pods += [p for p in kube.list(PODS, ns) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        pvcs += list(kube.list(PVCS, ns))
    if len(pods) > lim.max_pods:
        raise LimitExceeded(f"backup selects {len(pods)} pods, more than the limit of {lim.max_pods}; "
                            "split the plan or raise limits.max_pods")
    if len(pvcs) > lim.max_pvcs:
        raise LimitExceeded(f"backup selects {len(pvcs)} PVCs, more than the limit of {lim.max_pvcs}; "
                            "split the plan or raise limits.max_pvcs")
    volumes = {f"{c['metadata']['namespace']}/{c['metadata']['name']}": VolumeUse(c["metadata"]["namespace"], c["metadata"]["name"]) for c in pvcs}
    skipped: list[str] = []
    refused: list[str] = []
    for pod in pods:
        md, pspec = pod["metadata"], pod.get("spec") or {}
        where = f"pod {md['namespace']}/{md['name']}"
        for vol in pspec.get("volumes") or []:
            if "hostPath" in vol and spec.scope != "resources":
                refused.append(f"{where} volume {vol['name']} (hostPath {vol['hostPath'].get('path')})")
            elif "emptyDir" in vol:
                skipped.append(f"{where} volume {vol['name']} (emptyDir)")
            elif "persistentVolumeClaim" in vol:
                use = volumes.get(f"{md['namespace']}/{vol['persistentVolumeClaim']['claimName']}")
                if use is not None:
                    use.pods.append(md["name"])
                    use.node = use.node or pspec.get("nodeName")
    if refused:
        raise LimitExceeded("hostPath volumes cannot be backed up (their data lives on one node, outside "
                            "any PVC): " + "; ".join(refused) + ". Use scope 'resources' or move the data to a PVC.")
    return Inventory(namespaces, len(pods), pvcs, volumes, skipped)
