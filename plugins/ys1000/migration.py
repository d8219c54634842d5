"""Cross-cluster migration (F23–F26): incremental syncs, then a cutover — plain engine, no Airflow.

* ``preflight``: the target must not already have the (mapped) namespaces, unless an earlier sync
  of this same migration created them (they carry ``ys1000.io/migration=<plan>``).
* ``sync``: back up the source (resources and volume data — restic sends only what changed since
  the previous sync), create the namespaces and PVCs in the target once (mapped StorageClass) and
  make each PVC equal to the new snapshot (restic restore with ``--delete``). Nothing that runs
  the app is created in the target.
* ``cutover``: ``stop_source`` (replicas recorded in an annotation) → a final ``sync`` →
  ``restore_resources`` into the target (workloads come up at 0 replicas when the source was
  stopped) → ``start_target`` with the recorded replicas. ``undo`` is the way back from a failed
  or cancelled cutover: the source gets its replicas back and the target's restored workloads go.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ys1000.backup import BackupSpec, Limits, run_backup, volume_failures
from ys1000.backup.selection import resolve_namespaces
from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import NAMESPACES, PODS, PVCS
from ys1000.repository import Repository, RepositoryConfig
from ys1000.restore import RestoreOptions, RestoreReport, RestoreSpec, run_restore
from ys1000.restore.transforms import transform
from ys1000.volumes import MoverRunner, MoverSpec, VolumeOptions
from ys1000.volumes import restic
from ys1000.waiting import wait_until

log = logging.getLogger(__name__)

MIGRATION_LABEL = "ys1000.io/migration"
REPLICAS_ANNOTATION = "ys1000.io/replicas-before-migration"
SCALABLE = [
    ResourceType("apps", "v1", "deployments", "Deployment", True, frozenset({"list", "get", "patch"})),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, frozenset({"list", "get", "patch"})),
]


class MigrationConflict(Exception):
    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__("the target cluster already has: " + "; ".join(conflicts) +
                         " — refusing to migrate into it (nothing was written)")


class MigrationIncomplete(RuntimeError):
    """A sync could not take every PVC's data; the target was not updated."""


@dataclass
class MigrationSpec:
    plan: str
    source_cluster: str
    target_cluster: str
    namespaces: list[str] = field(default_factory=list)
    namespace_globs: list[str] = field(default_factory=list)
    namespace_selector: str | None = None
    include_kinds: list[str] = field(default_factory=list)
    exclude_kinds: list[str] = field(default_factory=list)
    namespace_mapping: dict[str, str] = field(default_factory=dict)
    storage_class_mapping: dict[str, str] = field(default_factory=dict)
    image_registry_mapping: dict[str, str] = field(default_factory=dict)
    remove_node_constraints: bool = True
    remove_tolerations: bool = False
    limits: Limits = field(default_factory=Limits)
    method: str = "filecopy"
    per_pvc: dict[str, str] = field(default_factory=dict)

    def target_ns(self, ns: str) -> str:
        return self.namespace_mapping.get(ns, ns)

    def backup_spec(self, backup_id: str) -> BackupSpec:
        return BackupSpec(backup_id=backup_id, plan=self.plan, namespaces=list(self.namespaces),
                          namespace_globs=list(self.namespace_globs), namespace_selector=self.namespace_selector,
                          include_kinds=list(self.include_kinds), exclude_kinds=list(self.exclude_kinds),
                          limits=self.limits, cluster_name=self.source_cluster)

    def restore_options(self) -> RestoreOptions:
        return RestoreOptions(namespace_mapping=dict(self.namespace_mapping),
                              storage_class_mapping=dict(self.storage_class_mapping),
                              image_registry_mapping=dict(self.image_registry_mapping),
                              remove_node_constraints=self.remove_node_constraints,
                              remove_tolerations=self.remove_tolerations)


@dataclass
class SyncResult:
    backup_id: str
    volumes: list[dict]  # per PVC: bytes_added (sent to the repository), total_bytes, restored
    created_pvcs: list[str]

    @property
    def bytes_sent(self) -> int:
        return sum(v.get("bytes_added", 0) for v in self.volumes)


# -- preflight -------------------------------------------------------------------------------------


def preflight(source: Kube, target: Kube, spec: MigrationSpec) -> list[str]:
    """The source namespaces to migrate; ``MigrationConflict`` if the target has any (mapped) one
    that this migration did not create."""
    namespaces = resolve_namespaces(source, spec.backup_spec("preflight"))
    conflicts = []
    for ns in namespaces:
        live = target.get_or_none(NAMESPACES.path(name=spec.target_ns(ns)))
        if live is not None and (live["metadata"].get("labels") or {}).get(MIGRATION_LABEL) != spec.plan:
            conflicts.append(f"Namespace {spec.target_ns(ns)}")
    if conflicts:
        raise MigrationConflict(conflicts)
    return namespaces


# -- incremental sync ------------------------------------------------------------------------------


def sync(source: Kube, target: Kube, repo: Repository, repo_cfg: RepositoryConfig, spec: MigrationSpec,
         backup_id: str, *, run_id: str = "sync", image: str | None = None, max_concurrent: int = 2,
         source_runner: MoverRunner | None = None, target_runner: MoverRunner | None = None) -> SyncResult:
    """One incremental pass: source → repository → target PVCs. The app is not started in the target."""
    preflight(source, target, spec)
    vopts = VolumeOptions(method=spec.method, per_pvc=dict(spec.per_pvc), run_id=f"{run_id}/source",
                          cluster_name=spec.source_cluster, max_concurrent=max_concurrent)
    if image:
        vopts.image = image
    result = run_backup(source, repo, spec.backup_spec(backup_id), volume_opts=vopts, repo_cfg=repo_cfg)
    manifest = result.manifest
    failures = volume_failures(manifest.volumes)
    if failures:  # a sync that leaves a PVC behind must not pass for a complete one
        raise MigrationIncomplete(f"sync backup {backup_id} lacks the data of PVC(s): " + "; ".join(failures))
    created = _ensure_target_pvcs(target, repo, spec, backup_id)
    runner = target_runner or MoverRunner(target, max_concurrent)
    password = repo.restic_password()

    def restore_one(rec: dict) -> dict:
        if not (rec.get("restic") or {}).get("snapshot_id"):  # skipped, snapshot-only or empty volume
            return {**_short(rec), "restored": False}
        ns = spec.target_ns(rec["namespace"])
        wait_until(lambda: (target.get(PVCS.path(ns, rec["pvc"])).get("status") or {}).get("phase") == "Bound",
                   timeout=120, what=f"target PVC {ns}/{rec['pvc']} to bind")
        tgt = restic.target_at(repo_cfg, password, rec["restic"]["repository"])
        mover = MoverSpec(namespace=ns, pvc=rec["pvc"], purpose="sync", run_id=f"{run_id}/target", read_only=False,
                          env=tgt.environment(), labels={MIGRATION_LABEL: spec.plan[:63]},
                          args=["restore", "--target", "/data", "--snapshot", rec["restic"]["snapshot_id"], "--delete"])
        if image:
            mover.image = image
        out = runner.run(mover)
        return {**_short(rec), "restored": True, "bytes_restored": out.get("bytes_restored", 0)}

    with ThreadPoolExecutor(max(1, max_concurrent)) as pool:
        volumes = list(pool.map(restore_one, manifest.volumes))
    return SyncResult(backup_id, volumes, created)


def _short(rec: dict) -> dict:
    data = rec.get("restic") or {}
    return {"namespace": rec["namespace"], "pvc": rec["pvc"], "bytes_added": data.get("bytes_added", 0),
            "total_bytes": data.get("total_bytes", 0), "snapshot_id": data.get("snapshot_id")}


def _ensure_target_pvcs(target: Kube, repo: Repository, spec: MigrationSpec, backup_id: str) -> list[str]:
    """Namespaces (labelled as this migration's) and PVCs in the target, created once and kept."""
    opts = spec.restore_options()
    created = []
    for entry, data in repo.iter_documents(backup_id, restorable_only=True):
        if entry.kind == "Namespace":
            ns = spec.target_ns(entry.name)
            if target.get_or_none(NAMESPACES.path(name=ns)) is None:
                labels = {**(json.loads(data)["metadata"].get("labels") or {}), MIGRATION_LABEL: spec.plan}
                labels.pop("kubernetes.io/metadata.name", None)
                target.create(NAMESPACES, {"metadata": {"name": ns, "labels": labels}})
    for entry, data in repo.iter_documents(backup_id, restorable_only=True):
        if entry.kind != "PersistentVolumeClaim":
            continue
        obj = transform(json.loads(data), opts)
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})[MIGRATION_LABEL] = spec.plan
        if target.get_or_none(PVCS.path(ns, name)) is None:
            target.create(PVCS, obj, ns)
            created.append(f"{ns}/{name}")
    return created


# -- cutover ---------------------------------------------------------------------------------------


def stop_source(source: Kube, namespaces: list[str], timeout: float = 120) -> dict[str, int]:
    """Scale Deployments and StatefulSets to 0, recording their replicas in an annotation first
    (so a retry or an undo knows them); wait until their pods are gone."""
    recorded: dict[str, int] = {}
    for ns in namespaces:
        for rt in SCALABLE:
            for obj in source.list(rt, ns):
                name = obj["metadata"]["name"]
                ann = obj["metadata"].get("annotations") or {}
                replicas = int(ann.get(REPLICAS_ANNOTATION, obj["spec"].get("replicas", 1)))
                recorded[f"{ns}/{rt.kind}/{name}"] = replicas
                source.patch(rt, name, {"metadata": {"annotations": {REPLICAS_ANNOTATION: str(replicas)}},
                                        "spec": {"replicas": 0}}, ns)
    for ns in namespaces:
        wait_until(lambda ns=ns: not [p for p in source.list(PODS, ns)
                                      if (p.get("status") or {}).get("phase") in ("Pending", "Running")
                                      and not _is_ys1000_pod(p)],
                   timeout=timeout, what=f"the app's pods in {ns} to stop")
    return recorded


def _is_ys1000_pod(pod: dict) -> bool:
    return "ys1000.io/component" in (pod["metadata"].get("labels") or {})


def restore_resources(target: Kube, repo: Repository, spec: MigrationSpec, backup_id: str,
                      restore_id: str) -> RestoreReport:
    """The backup's resources into the target; namespaces and PVCs from the syncs are kept as they are."""
    return run_restore(target, repo, RestoreSpec(backup_id=backup_id, restore_id=restore_id,
                                                 options=spec.restore_options()))


def start_target(target: Kube, spec: MigrationSpec, recorded: dict[str, int]) -> list[str]:
    """Scale the target's workloads to the replicas the source had."""
    started = []
    for key, replicas in sorted(recorded.items()):
        ns, kind, name = key.split("/")
        rt = next(r for r in SCALABLE if r.kind == kind)
        tns = spec.target_ns(ns)
        target.patch(rt, name, {"metadata": {"annotations": {REPLICAS_ANNOTATION: None}},
                                "spec": {"replicas": replicas}}, tns)
        started.append(f"{kind} {tns}/{name} → {replicas}")
    return started


def recorded_replicas(source: Kube, namespaces: list[str]) -> dict[str, int]:
    out = {}
    for ns in namespaces:
        for rt in SCALABLE:
            for obj in source.list(rt, ns):
                ann = obj["metadata"].get("annotations") or {}
                if REPLICAS_ANNOTATION in ann:
                    out[f"{ns}/{rt.kind}/{obj['metadata']['name']}"] = int(ann[REPLICAS_ANNOTATION])
    return out


def undo(source: Kube, target: Kube, spec: MigrationSpec, namespaces: list[str],
         restore_id: str | None = None) -> list[str]:
    """Bring the source back (recorded replicas) and remove the workloads a cutover restored into
    the target, so no half-started app is left there. Returns what was undone."""
    undone = []
    for key, replicas in sorted(recorded_replicas(source, namespaces).items()):
        ns, kind, name = key.split("/")
        rt = next(r for r in SCALABLE if r.kind == kind)
        source.patch(rt, name, {"metadata": {"annotations": {REPLICAS_ANNOTATION: None}},
                                "spec": {"replicas": replicas}}, ns)
        undone.append(f"source {kind} {ns}/{name} scaled back to {replicas}")
    if restore_id:
        selector = f"ys1000.io/restore={restore_id[:63]}"
        workload_types = [*SCALABLE,
                          ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, frozenset({"list", "delete"})),
                          ResourceType("batch", "v1", "cronjobs", "CronJob", True, frozenset({"list", "delete"})),
                          ResourceType("batch", "v1", "jobs", "Job", True, frozenset({"list", "delete"}))]
        for ns in namespaces:
            tns = spec.target_ns(ns)
            for rt in workload_types:
                try:
                    items = list(target.list(rt, tns, label_selector=selector))
                except KubeError:
                    continue
                for obj in items:
                    target.delete(rt, obj["metadata"]["name"], tns)
                    undone.append(f"target {rt.kind} {tns}/{obj['metadata']['name']} removed")
    return undone
