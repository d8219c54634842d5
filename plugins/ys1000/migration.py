"""Cross-cluster migration (F23–F26): incremental syncs, then a cutover — plain engine, no Airflow.

* ``preflight``: the target must not already have the (mapped) namespaces, unless an earlier sync
  of this same migration created them (they carry ``ys1000.io/migration=<plan>``).
* ``sync``: back up the source (resources and volume data — restic sends only what changed since
  the previous sync), create the namespaces and PVCs in the target once (mapped StorageClass) and
  make each PVC equal to the new snapshot (restic restore with ``--delete``). Nothing that runs
  the app is created in the target.
* ``cutover``: ``stop_source`` (Deployments/StatefulSets to 0, CronJobs suspended, running Jobs
  to parallelism 0, DaemonSets onto no node; each value before recorded in an annotation) → a
  final ``sync`` → ``restore_resources`` into the target (workloads come up stopped) →
  ``start_target`` with the recorded values. ``undo`` is the way back from a failed or cancelled
  cutover: the source gets its values back and the target's restored workloads go.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ys1000.backup import BackupSpec, Limits, volume_failures
from ys1000.backup.pipeline import capture, commit, prepare_volumes, verify, volume_items
from ys1000.backup.selection import resolve_namespaces
from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import NAMESPACES, PODS, PVCS
from ys1000.repository import Repository, RepositoryConfig
from ys1000.restore import RestoreOptions, RestoreReport, RestoreSpec, run_restore
from ys1000.restore.transforms import transform
from ys1000.kube import jobs
from ys1000.volumes import MoverSpec, VolumeOptions
from ys1000.volumes import restic
from ys1000.volumes.movers import describe, mover_job
from ys1000.volumes.steps import Done, Driver, Step, StepFailed, Wait, clean, in_cluster, job_wait
from ys1000.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

MIGRATION_LABEL = "ys1000.io/migration"
REPLICAS_ANNOTATION = "ys1000.io/replicas-before-migration"
STOPPED_NODE_LABEL = "ys1000.io/stopped-for-migration"


@dataclass(frozen=True)
class Stopper:
    """How a cutover stops one kind of workload, the way Konveyor's MTC quiesces: the spec field it
    sets (its value before is kept, as JSON, in ``annotation`` so a retry, ``start_target`` and
    ``undo`` know it), the stopped value, and for DaemonSets a nodeSelector no node matches."""

    rt: ResourceType
    path: tuple[str, ...]
    annotation: str
    stopped: object
    default: object = None

    def current(self, obj: dict) -> object:
        value: object = obj.get("spec") or {}
        for part in self.path:
            value = (value or {}).get(part) if isinstance(value, dict) else None
        return self.default if value is None else value

    def spec_patch(self, value: object) -> dict:
        patch: dict = {}
        node = patch
        for part in self.path[:-1]:
            node = node.setdefault(part, {})
        node[self.path[-1]] = value
        return {"spec": patch}

    def start_value(self, before: object) -> object:
        if self.rt.kind == "DaemonSet":  # merge patch: drop our key, put the old selector back
            return {STOPPED_NODE_LABEL: None, **(before or {})}  # type: ignore[dict-item]
        return before

    def applies(self, obj: dict) -> bool:
        if self.rt.kind != "Job":
            return True
        done = {c.get("type") for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
        return not done & {"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"}


STOPPERS = [
    Stopper(
        ResourceType("apps", "v1", "deployments", "Deployment", True, frozenset({"list", "get", "patch"})),
        ("replicas",),
        REPLICAS_ANNOTATION,
        0,
        1,
    ),
    Stopper(
        ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, frozenset({"list", "get", "patch"})),
        ("replicas",),
        REPLICAS_ANNOTATION,
        0,
        1,
    ),
    Stopper(
        ResourceType("batch", "v1", "cronjobs", "CronJob", True, frozenset({"list", "get", "patch"})),
        ("suspend",),
        "ys1000.io/suspend-before-migration",
        True,
        False,
    ),
    Stopper(
        ResourceType("batch", "v1", "jobs", "Job", True, frozenset({"list", "get", "patch"})),
        ("parallelism",),
        "ys1000.io/parallelism-before-migration",
        0,
        1,
    ),
    Stopper(
        ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, frozenset({"list", "get", "patch"})),
        ("template", "spec", "nodeSelector"),
        "ys1000.io/node-selector-before-migration",
        {STOPPED_NODE_LABEL: "true"},
    ),
]
SCALABLE = [s.rt for s in STOPPERS]
_BY_KIND = {s.rt.kind: s for s in STOPPERS}


class MigrationConflict(Exception):
    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__(
            "the target cluster already has: "
            + "; ".join(conflicts)
            + " — refusing to migrate into it (nothing was written)"
        )


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
        return BackupSpec(
            backup_id=backup_id,
            plan=self.plan,
            namespaces=list(self.namespaces),
            namespace_globs=list(self.namespace_globs),
            namespace_selector=self.namespace_selector,
            include_kinds=list(self.include_kinds),
            exclude_kinds=list(self.exclude_kinds),
            limits=self.limits,
            cluster_name=self.source_cluster,
        )

    def restore_options(self) -> RestoreOptions:
        return RestoreOptions(
            namespace_mapping=dict(self.namespace_mapping),
            storage_class_mapping=dict(self.storage_class_mapping),
            image_registry_mapping=dict(self.image_registry_mapping),
            remove_node_constraints=self.remove_node_constraints,
            remove_tolerations=self.remove_tolerations,
        )


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
#
# A sync is a backup of the source whose per-PVC step also fills the target's PVC: ``sync_start``
# (conflict check, resources into a pending backup, restic repositories, target namespaces) →
# one ``VolumeSync`` per PVC (source copy, then target restore with --delete) → ``sync_finish``
# (verify, commit). The DAG maps ``VolumeSync`` over the PVCs; ``sync`` runs it all in place.


def sync_start(
    source: Kube,
    target: Kube,
    repo: Repository,
    spec: MigrationSpec,
    backup_id: str,
    vopts: VolumeOptions,
    *,
    repo_cfg: RepositoryConfig | None = None,
) -> tuple[list[str], list[dict]]:
    """The sync's first step; returns the source namespaces and the PVCs to sync
    (``{"namespace", "pvc", "node"}`` each)."""
    namespaces = preflight(source, target, spec)
    bspec = spec.backup_spec(backup_id)
    result = capture(source, repo, bspec)
    try:
        prepare_volumes(source, repo, bspec, vopts, result.inventory, repo_cfg=repo_cfg)
        _ensure_target_namespaces(source, target, spec, result.inventory.namespaces)
    except BaseException:
        repo.discard_pending(backup_id)
        raise
    return namespaces, volume_items(bspec, result.inventory)


def sync_options(
    spec: MigrationSpec, run_id: str, *, image: str | None = None, max_concurrent: int = 2
) -> VolumeOptions:
    vopts = VolumeOptions(
        method=spec.method,
        per_pvc=dict(spec.per_pvc),
        run_id=run_id,
        cluster_name=spec.source_cluster,
        max_concurrent=max_concurrent,
    )
    if image:
        vopts.image = image
    return vopts


@dataclass
class VolumeSync:
    """One PVC of a sync: its data into the repository (``VolumeBackup`` in the source), then
    the target's PVC (created once, from the source's) made equal to that snapshot (a restic
    restore with ``--delete`` in the target). Waits happen in the cluster their step names."""

    source: Kube
    target: Kube
    repo_cfg: RepositoryConfig
    password: str
    spec: MigrationSpec
    opts: VolumeOptions
    backup_id: str

    @property
    def backup(self):
        from ys1000.volumes.backup import VolumeBackup

        return VolumeBackup(self.source, self.repo_cfg, self.password, self.opts, self.backup_id, self.spec.plan)

    def begin(self, pvc_obj: dict, node: str | None = None) -> Step:
        return self._after_backup(in_cluster(self.backup.begin(pvc_obj, node), "source"))

    def resume(self, state: dict, event: dict) -> Step:
        if state.get("phase", "backup") == "backup":
            return self._after_backup(in_cluster(self.backup.resume(state["inner"], event), "source"))
        ns, pvc, record = state["target_ns"], state["pvc"], state["record"]
        if event.get("status") != "success":
            if state.get("job"):
                clean(self.target, {"jobs": [[ns, state["job"]]]})
            raise StepFailed(event.get("reason") or f"target PVC {ns}/{pvc}: {state['phase']} failed")
        if state["phase"] == "bind":
            tgt = restic.target_at(self.repo_cfg, self.password, record["restic"]["repository"])
            mover = MoverSpec(
                namespace=ns,
                pvc=pvc,
                purpose="sync",
                run_id=self.opts.run_id,
                read_only=False,
                image=self.opts.image,
                env=tgt.environment(),
                labels={MIGRATION_LABEL: self.spec.plan[:63]},
                args=["restore", "--target", "/data", "--snapshot", record["restic"]["snapshot_id"], "--delete"],
            )
            run = mover_job(mover)
            jobs.start(self.target, run)  # a retried task finds its still-running mover
            return in_cluster(
                job_wait(run, describe(mover), mover.timeout, {**state, "phase": "restore", "job": run.name}), "target"
            )
        clean(self.target, {"jobs": [[ns, state["job"]]]})
        return Done(
            {
                **_short(record),
                "backup": record,
                "restored": True,
                "created": state["created"],
                "target_ns": ns,
                "bytes_restored": (event.get("result") or {}).get("bytes_restored", 0),
            }
        )

    def _after_backup(self, step: Step) -> Step:
        if isinstance(step, Wait):
            return Wait(step.what, {"phase": "backup", "inner": step.state}, step.cleanup)
        record = step.record
        created = self._ensure_target_pvc(record["namespace"], record["pvc"])
        if not (record.get("restic") or {}).get("snapshot_id"):  # skipped, snapshot-only or empty volume
            return Done(
                {
                    **_short(record),
                    "backup": record,
                    "restored": False,
                    "created": created,
                    "target_ns": self.spec.target_ns(record["namespace"]),
                }
            )
        ns = self.spec.target_ns(record["namespace"])
        return in_cluster(
            Wait(
                {
                    "kind": "pvc_bound",
                    "namespace": ns,
                    "name": record["pvc"],
                    "timeout": 600,
                    "label": f"target PVC {ns}/{record['pvc']} to bind",
                },
                {"phase": "bind", "target_ns": ns, "pvc": record["pvc"], "record": record, "created": created},
            ),
            "target",
        )

    def _ensure_target_pvc(self, namespace: str, name: str) -> bool:
        """The target's PVC, from the source's (mapped namespace and StorageClass), created once."""
        obj = transform(self.source.get(PVCS.path(namespace, name)), self.spec.restore_options())
        ns = obj["metadata"]["namespace"]
        if self.target.get_or_none(PVCS.path(ns, name)) is not None:
            return False
        obj["metadata"].setdefault("labels", {})[MIGRATION_LABEL] = self.spec.plan
        try:
            self.target.create(PVCS, obj, ns)
        except KubeError as exc:
            if exc.status != 409:  # another try created it meanwhile
                raise
            return False
        return True


def sync_finish(repo: Repository, backup_id: str, records: list[dict]) -> SyncResult:
    """Verify and commit the sync's backup; ``MigrationIncomplete`` when a PVC was not synced."""
    verify(repo, backup_id)
    manifest = commit(repo, backup_id, [r["backup"] for r in records])
    failures = volume_failures(manifest.volumes)
    if failures:  # a sync that leaves a PVC behind must not pass for a complete one
        raise MigrationIncomplete(f"sync backup {backup_id} lacks the data of PVC(s): " + "; ".join(failures))
    return SyncResult(
        backup_id,
        [{k: v for k, v in r.items() if k not in ("backup", "created", "target_ns")} for r in records],
        [f"{r['target_ns']}/{r['pvc']}" for r in records if r.get("created")],
    )


def sync(
    source: Kube,
    target: Kube,
    repo: Repository,
    repo_cfg: RepositoryConfig,
    spec: MigrationSpec,
    backup_id: str,
    *,
    run_id: str = "sync",
    image: str | None = None,
    max_concurrent: int = 2,
) -> SyncResult:
    """One incremental pass, in place: source → repository → target PVCs. The app is not started
    in the target."""
    vopts = sync_options(spec, run_id, image=image, max_concurrent=max_concurrent)
    _, items = sync_start(source, target, repo, spec, backup_id, vopts, repo_cfg=repo_cfg)
    unit = VolumeSync(source, target, repo_cfg, repo.restic_password(), spec, vopts, backup_id)
    driver = Driver(source, max_concurrent, kubes={"source": source, "target": target})

    def one(item: dict) -> dict:
        try:
            return driver.drive(
                unit,
                lambda: unit.begin(source.get(PVCS.path(item["namespace"], item["pvc"])), item.get("node")),
                f"{item['namespace']}/{item['pvc']}",
            )
        except InterruptedError:
            raise
        except Exception as exc:
            if driver.cancel.is_set():
                raise InterruptedError(f"sync {backup_id} cancelled") from exc
            return failed_sync(item, str(exc) or type(exc).__name__)

    try:
        with ThreadPoolExecutor(max(1, max_concurrent)) as pool:
            records = list(pool.map(one, items))
        return sync_finish(repo, backup_id, records)
    except BaseException as exc:
        if not isinstance(exc, MigrationIncomplete):  # a PartiallyFailed sync stays as evidence
            driver.cancel_all()
            repo.discard_pending(backup_id)
        raise


def failed_sync(item: dict, error: str) -> dict:
    """The record of a PVC whose sync failed (its backup record names it)."""
    return {
        "namespace": item["namespace"],
        "pvc": item["pvc"],
        "error": error,
        "backup": {"namespace": item["namespace"], "pvc": item["pvc"], "error": error},
    }


def _short(rec: dict) -> dict:
    data = rec.get("restic") or {}
    return {
        "namespace": rec["namespace"],
        "pvc": rec["pvc"],
        "bytes_added": data.get("bytes_added", 0),
        "total_bytes": data.get("total_bytes", 0),
        "snapshot_id": data.get("snapshot_id"),
    }


def _ensure_target_namespaces(source: Kube, target: Kube, spec: MigrationSpec, namespaces: list[str]) -> None:
    """The migrated namespaces in the target (labelled as this migration's), created once and kept."""
    for src in namespaces:
        ns = spec.target_ns(src)
        if target.get_or_none(NAMESPACES.path(name=ns)) is None:
            labels = {
                **(source.get(NAMESPACES.path(name=src))["metadata"].get("labels") or {}),
                MIGRATION_LABEL: spec.plan,
            }
            labels.pop("kubernetes.io/metadata.name", None)
            target.create(NAMESPACES, {"metadata": {"name": ns, "labels": labels}})


# -- cutover ---------------------------------------------------------------------------------------


def cutover_preview(source: Kube, namespaces: list[str]) -> list[dict]:
    """What ``stop_source`` would change, without changing it: one line per workload with its
    value now and stopped (the approval request shows it)."""
    out = []
    for ns in namespaces:
        for stopper in STOPPERS:
            for obj in source.list(stopper.rt, ns):
                if stopper.applies(obj):
                    out.append(
                        {
                            "namespace": ns,
                            "kind": stopper.rt.kind,
                            "name": obj["metadata"]["name"],
                            "now": _describe(stopper.rt.kind, stopper.current(obj)),
                            "stopped": _describe(stopper.rt.kind, stopper.stopped),
                        }
                    )
    return out


def stop_source(source: Kube, namespaces: list[str], timeout: float = 300) -> dict[str, object]:
    """Stop everything that runs the app: Deployments and StatefulSets to 0 replicas, CronJobs
    suspended (a schedule firing mid-cutover would write to the source after the final sync),
    running Jobs to parallelism 0, DaemonSets onto no node. Each value before is recorded in an
    annotation first (so a retry or an undo knows it); then wait until the controlled pods are gone.
    Pods no controller owns are left running and named in a warning: nothing here can stop them
    and bring them back."""
    recorded: dict[str, object] = {}
    for ns in namespaces:
        for stopper in STOPPERS:
            for obj in source.list(stopper.rt, ns):
                if not stopper.applies(obj):
                    continue
                name = obj["metadata"]["name"]
                ann = obj["metadata"].get("annotations") or {}
                before = json.loads(ann[stopper.annotation]) if stopper.annotation in ann else stopper.current(obj)
                recorded[f"{ns}/{stopper.rt.kind}/{name}"] = before
                patch = stopper.spec_patch(stopper.stopped)
                patch["metadata"] = {"annotations": {stopper.annotation: json.dumps(before)}}
                source.patch(stopper.rt, name, patch, ns)
    for ns in namespaces:
        bare = [p["metadata"]["name"] for p in _app_pods(source, ns) if not p["metadata"].get("ownerReferences")]
        if bare:
            log.warning("pods in %s that no controller owns keep running during the cutover: %s", ns, ", ".join(bare))
        _wait_stopped(source, ns, timeout)
    return recorded


def _app_pods(kube: Kube, ns: str) -> list[dict]:
    return [
        p
        for p in kube.list(PODS, ns)
        if (p.get("status") or {}).get("phase") in ("Pending", "Running") and not _is_ys1000_pod(p)
    ]


def _wait_stopped(kube: Kube, ns: str, timeout: float) -> None:
    left: list[str] = []

    def stopped() -> bool:
        left[:] = [
            f"{p['metadata']['name']} ({(p.get('status') or {}).get('phase')})"
            for p in _app_pods(kube, ns)
            if p["metadata"].get("ownerReferences")
        ]
        return not left

    try:
        wait_until(stopped, timeout=timeout, what=f"the app's pods in {ns} to stop")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}; still running: {', '.join(left)}") from None


def _is_ys1000_pod(pod: dict) -> bool:
    return "ys1000.io/component" in (pod["metadata"].get("labels") or {})


def restore_resources(
    target: Kube, repo: Repository, spec: MigrationSpec, backup_id: str, restore_id: str
) -> RestoreReport:
    """The backup's resources into the target; namespaces and PVCs from the syncs are kept as they are."""
    return run_restore(
        target, repo, RestoreSpec(backup_id=backup_id, restore_id=restore_id, options=spec.restore_options())
    )


def _describe(kind: str, value: object) -> str:
    if kind in ("Deployment", "StatefulSet"):
        return f"{value} replicas"
    if kind == "CronJob":
        return "suspended" if value else "scheduling"
    if kind == "Job":
        return f"parallelism {value}"
    return f"nodeSelector {value or {}}"


def _start(kube: Kube, key: str, ns: str, before: object) -> str | None:
    """Put one workload's recorded value back (and drop the annotation); None when it is not there."""
    _, kind, name = key.split("/")
    stopper = _BY_KIND[kind]
    patch = stopper.spec_patch(stopper.start_value(before))
    patch["metadata"] = {"annotations": {stopper.annotation: None}}
    try:
        kube.patch(stopper.rt, name, patch, ns)
    except KubeError as exc:
        if exc.status == 404:  # e.g. a CronJob's Job, which a restore does not recreate
            return None
        raise
    return f"{kind} {ns}/{name} → {_describe(kind, before)}"


def start_target(target: Kube, spec: MigrationSpec, recorded: dict[str, object]) -> list[str]:
    """Start the target's workloads as the source ran them (replicas, schedules, parallelism, nodes)."""
    started = []
    for key, before in sorted(recorded.items()):
        line = _start(target, key, spec.target_ns(key.split("/")[0]), before)
        if line:
            started.append(line)
    return started


def recorded_state(source: Kube, namespaces: list[str]) -> dict[str, object]:
    """What ``stop_source`` recorded, read back from the source's annotations."""
    out: dict[str, object] = {}
    for ns in namespaces:
        for stopper in STOPPERS:
            for obj in source.list(stopper.rt, ns):
                ann = obj["metadata"].get("annotations") or {}
                if stopper.annotation in ann:
                    out[f"{ns}/{stopper.rt.kind}/{obj['metadata']['name']}"] = json.loads(ann[stopper.annotation])
    return out


def undo(
    source: Kube, target: Kube, spec: MigrationSpec, namespaces: list[str], restore_id: str | None = None
) -> list[str]:
    """Bring the source back (recorded values) and remove the workloads a cutover restored into
    the target, so no half-started app is left there. Returns what was undone."""
    undone = []
    for key, before in sorted(recorded_state(source, namespaces).items()):
        ns, kind, name = key.split("/")
        if _start(source, key, ns, before):
            verb = "scaled back to" if kind in ("Deployment", "StatefulSet") else "back to"
            value = before if kind in ("Deployment", "StatefulSet") else _describe(kind, before)
            undone.append(f"source {kind} {ns}/{name} {verb} {value}")
    if restore_id:
        selector = f"ys1000.io/restore={restore_id[:63]}"
        workload_types = SCALABLE
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
