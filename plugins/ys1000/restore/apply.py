"""Restore a backup's resources into a cluster: select, order, transform, apply, report.

The archive's checksum is verified before the first object is read (the repository refuses a
corrupted archive up front), so a damaged backup writes nothing. Documents are kept as JSON
bytes, bucketed by priority class, and parsed only when applied; each class is applied by a
pool of workers, and the next class starts when the previous one is in.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Literal

from ys1000.kube import Discovery, Kube, KubeError, ResourceType
from ys1000.kube.discovery import CRDS, NAMESPACES, PVCS
from ys1000.repository import Repository, parse_document
from ys1000.repository.manifest import IndexEntry
from ys1000.restore.priorities import rank
from ys1000.restore.transforms import RestoreOptions, transform
from ys1000.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

ExistingPolicy = Literal["skip", "update", "fail"]
Progress = Callable[[dict], None]
RETRIES = 5
OUTAGE_BUDGET = 120.0  # seconds a restore keeps retrying while the API server is unreachable (see _call)
CRD_ESTABLISHED_TIMEOUT = 60  # seconds; custom resources are created only after their CRD is Established


class ConflictError(Exception):
    """The target already has what a migration would create; nothing was written."""

    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__("the target cluster already has: " + "; ".join(conflicts))


@dataclass
class RestoreSpec:
    backup_id: str
    restore_id: str = field(
        default_factory=lambda: f"restore-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    )
    options: RestoreOptions = field(default_factory=RestoreOptions)
    namespaces: list[str] = field(default_factory=list)  # source namespaces to restore (empty: all)
    include_kinds: list[str] = field(default_factory=list)
    exclude_kinds: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # "Kind/namespace/name" or "Kind/name"
    include_cluster_resources: bool = True
    existing_policy: ExistingPolicy = "skip"
    dry_run: bool = False
    workers: int = 16
    # volume data (ys1000.volumes.restore.VolumeRestorer): prepare(pvc, source_ns) edits each PVC
    # before it is created; populate([(ns, name)]) fills the created ones before the workloads
    volume_restorer: Any = None


@dataclass
class ItemResult:
    kind: str
    namespace: str | None
    name: str
    action: str  # created | updated | skipped | failed | would-create | would-update | would-skip | would-fail
    reason: str = ""

    def to_json(self) -> dict:
        # by hand: dataclasses.asdict deep-copies field by field, ~10x slower on 100k items
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass
class RestoreReport:
    restore_id: str
    backup_id: str
    dry_run: bool
    started: str
    finished: str = ""
    items: list[ItemResult] = field(default_factory=list)
    # per restored PVC: {"namespace", "pvc", "status": data | empty | existing | failed, "reason", ...}
    volumes: list[dict] = field(default_factory=list)
    # requests the API server throttled (429) or failed transiently that were sent again
    api_retries: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(i.action for i in self.items))

    @property
    def failed(self) -> list[ItemResult]:
        return [i for i in self.items if i.action in ("failed", "would-fail")]

    @property
    def failed_volumes(self) -> list[dict]:
        return [v for v in self.volumes if v.get("status") == "failed"]

    @property
    def status(self) -> str:
        if not self.failed and not self.failed_volumes:
            return "Completed"
        return "Failed" if len(self.failed) == len(self.items) else "PartiallyFailed"

    @classmethod
    def from_json(cls, d: dict) -> "RestoreReport":
        """A report saved by the first part of a restore (the DAG restores in parts)."""
        return cls(
            d["restore_id"],
            d["backup_id"],
            d["dry_run"],
            d["started"],
            d.get("finished", ""),
            [
                ItemResult(i["kind"], i["namespace"], i["name"], i["action"], i.get("reason", ""))
                for i in d.get("items") or []
            ],
            list(d.get("volumes") or []),
            int(d.get("api_retries") or 0),
        )

    def to_json(self) -> dict:
        return {
            "restore_id": self.restore_id,
            "backup_id": self.backup_id,
            "dry_run": self.dry_run,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "counts": self.counts,
            "volumes": self.volumes,
            "api_retries": self.api_retries,
            "items": [i.to_json() for i in self.items],
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _selected(entry: IndexEntry, spec: RestoreSpec) -> bool:
    if entry.namespace is None and entry.kind != "Namespace" and not spec.include_cluster_resources:
        return False
    names = {entry.kind.lower(), entry.resource.lower()}
    if spec.include_kinds and not names & {k.lower() for k in spec.include_kinds}:
        return False
    if names & {k.lower() for k in spec.exclude_kinds}:
        return False
    if spec.namespaces:
        ns = entry.name if entry.kind == "Namespace" and entry.namespace is None else entry.namespace
        if ns is not None and ns not in spec.namespaces:
            return False
    if spec.resources:
        ref = f"{entry.kind}/{entry.namespace}/{entry.name}" if entry.namespace else f"{entry.kind}/{entry.name}"
        wanted = {r.lower() for r in spec.resources}
        # a named namespaced resource brings its Namespace along
        if ref.lower() not in wanted and not (
            entry.kind == "Namespace"
            and any(r.split("/")[1:2] == [entry.name.lower()] for r in wanted if r.count("/") == 2)
        ):
            return False
    return True


class Restorer:
    """One restore run against one target cluster."""

    def __init__(
        self,
        kube: Kube,
        repo: Repository,
        spec: RestoreSpec,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ):
        self.kube = kube
        self.repo = repo
        self.spec = spec
        self.progress = progress or (lambda _: None)
        self.cancel = cancel or threading.Event()
        self.report = RestoreReport(spec.restore_id, spec.backup_id, spec.dry_run, _now())
        self._lock = threading.Lock()
        self._discovery: Discovery | None = None
        # one load at a time: the workers all need it at their first object, and a type missing
        # from it is looked up again once per discovery, not once per object (see _resource_type)
        self._discovery_lock = threading.Lock()
        self._reloaded_for: set[tuple[str, str]] = set()
        self._new_namespaces: set[str] = set()
        self._unreachable_since: float | None = None  # see _call

    # -- reading --------------------------------------------------------------------------------
    def buckets(self) -> list[tuple[tuple[int, str], list[tuple[IndexEntry, bytes]]]]:
        """The backup's selected documents grouped by priority class, in restore order."""
        crd_groups: set[str] = set()
        groups: dict[tuple[int, str], list] = {}
        # only the selected objects' gzip members are fetched when they are a small part (one
        # namespace out of many): the time follows the selection, not the backup
        docs = self.repo.iter_documents(
            self.spec.backup_id,
            restorable_only=True,
            select=lambda e: _selected(e, self.spec),
            # _selected refuses namespaced objects outside spec.namespaces: their index need not be read
            namespaces=self.spec.namespaces or None,
        )
        pending: list[tuple[IndexEntry, bytes]] = []
        for entry, data in docs:
            if not _selected(entry, self.spec):
                continue
            if entry.kind == "CustomResourceDefinition":
                crd_groups.add(parse_document(entry, data)["spec"]["group"])
            pending.append((entry, data))
        for entry, data in pending:
            key = rank(entry.group_resource, entry.group in crd_groups)
            groups.setdefault(key, []).append((entry, data))
        return sorted(groups.items())

    # -- applying -------------------------------------------------------------------------------
    def run(self, part: str = "all", volume_results: list[dict] | None = None) -> RestoreReport:
        """Apply the backup, class by class. ``part``:

        - ``all``: everything; PVCs are filled (``volume_restorer.populate``) before the workloads;
        - ``resources``: the classes up to and including PVCs; the created PVCs that need data are
          left in ``self.pending_volumes`` (the DAG fills them with one mapped task each);
        - ``workloads``: the classes after PVCs, continuing the report the first part saved;
          ``volume_results`` (what the mapped tasks returned) complete its volume lines.
        """
        retries_before = self.kube.retries
        self.spec.options.target_minor = self.kube.minor_version()
        self.spec.options.labels = {
            **self.spec.options.labels,
            "ys1000.io/backup": self.spec.backup_id[:63],
            "ys1000.io/restore": self.spec.restore_id[:63],
        }
        split = rank(PVCS.group_resource, False)
        # the API's discovery (a request per group), which the first object needs, is fetched
        # while the archive is read; a failure there is met again, and raised, at first use
        with ThreadPoolExecutor(1, thread_name_prefix="discovery") as early:
            early.submit(lambda: self.discovery)
            buckets = self.buckets()
        if part == "resources":
            buckets = [b for b in buckets if b[0] <= split]
        elif part == "workloads":
            buckets = [b for b in buckets if b[0] > split]
            self.report = RestoreReport.from_json(self.repo.load_restore_report(self.spec.restore_id))
        total = sum(len(items) for _, items in buckets)
        done = 0
        self.pending_volumes: list[dict] = []
        self.progress({"phase": "restore", "objects_done": 0, "objects_total": total})
        with ThreadPoolExecutor(self.spec.workers, thread_name_prefix="restore") as pool:
            for (_, group_resource), items in buckets:
                if self.cancel.is_set():
                    raise InterruptedError(f"restore {self.spec.restore_id} cancelled")
                results = list(pool.map(self._apply_one, items))
                with self._lock:
                    self.report.items.extend(results)
                done += len(items)
                self.progress(
                    {"phase": "restore", "objects_done": done, "objects_total": total, "current": group_resource}
                )
                if group_resource == PVCS.group_resource and self.spec.volume_restorer and not self.spec.dry_run:
                    created = [(r.namespace, r.name) for r in results if r.action == "created"]
                    if part == "all":
                        self.progress({"phase": "volumes", "objects_done": done, "objects_total": total})
                        self.spec.volume_restorer.populate(created)
                    else:
                        self.pending_volumes = self.spec.volume_restorer.pending(created)
                if group_resource == CRDS.group_resource and not self.spec.dry_run:
                    self._wait_crds_established(
                        [r.name for r in results if r.action in ("created", "updated", "skipped")]
                    )
        self.report.finished = _now()
        self.report.api_retries += self.kube.retries - retries_before
        if self.spec.volume_restorer is not None and not self.spec.dry_run and part != "workloads":
            self.report.volumes = self.spec.volume_restorer.report(self.report.items, pending_ok=part == "resources")
        if part == "workloads":
            self.report.volumes = _complete_volumes(self.report.volumes, volume_results or [])
        if not self.spec.dry_run:
            self.repo.save_restore_report(self.spec.restore_id, self.report.to_json())
        return self.report

    @property
    def discovery(self) -> Discovery:
        with self._discovery_lock:
            if self._discovery is None:
                self._discovery = Discovery.load(self.kube)
            return self._discovery

    def _forget_discovery(self) -> None:
        with self._discovery_lock:
            self._discovery = None
            self._reloaded_for.clear()

    def _wait_crds_established(self, names: list[str]) -> None:
        def established(name):
            crd = self.kube.get_or_none(CRDS.path(name=name)) or {}
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )

        for name in names:
            try:
                wait_until(
                    partial(established, name), timeout=CRD_ESTABLISHED_TIMEOUT, what=f"CRD {name} to be Established"
                )
            except WaitTimeout:
                # its custom resources then fail one by one ("does not serve"); the rest goes on
                conditions = ((self.kube.get_or_none(CRDS.path(name=name)) or {}).get("status") or {}).get(
                    "conditions"
                ) or []
                why = (
                    "; ".join(
                        f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                        for c in conditions
                    )
                    or "no conditions"
                )
                with self._lock:
                    for item in self.report.items:
                        if item.kind == "CustomResourceDefinition" and item.name == name:
                            item.action = "failed"
                            item.reason = f"not Established after {CRD_ESTABLISHED_TIMEOUT} s ({why})"
        self._forget_discovery()  # the new types are served now

    def _resource_type(self, entry: IndexEntry) -> ResourceType | None:
        seen = self.discovery
        rt = seen.by_kind(entry.kind, entry.group)
        if rt is None and entry.group:
            # maybe a type that appeared after our discovery: look again, once per missing type
            # (a thousand objects of a type the target lacks do not reload it a thousand times)
            key = (entry.group, entry.kind)
            with self._discovery_lock:
                if key not in self._reloaded_for:
                    self._reloaded_for.add(key)
                    if self._discovery is seen:
                        self._discovery = None
            rt = self.discovery.by_kind(entry.kind, entry.group)
        return rt

    def _apply_one(self, item: tuple[IndexEntry, bytes]) -> ItemResult:
        entry, data = item
        obj = parse_document(entry, data)
        if entry.kind == "PersistentVolume" and (obj["metadata"].get("annotations") or {}).get(
            "pv.kubernetes.io/provisioned-by"
        ):
            return ItemResult(
                entry.kind,
                None,
                entry.name,
                "would-skip" if self.spec.dry_run else "skipped",
                "dynamically provisioned: its claim is provisioned anew",
            )
        obj = transform(obj, self.spec.options)
        if entry.kind == "PersistentVolumeClaim" and self.spec.volume_restorer and not self.spec.dry_run:
            obj = self.spec.volume_restorer.prepare(obj, entry.namespace)
        md = obj["metadata"]
        ns, name = md.get("namespace"), md["name"]
        rt = self._resource_type(entry)
        if rt is None:
            return ItemResult(
                entry.kind,
                ns,
                name,
                "would-fail" if self.spec.dry_run else "failed",
                f"the target cluster does not serve {entry.group or 'core'}/{entry.kind}",
            )
        obj["apiVersion"] = rt.api_version
        try:
            if self.spec.dry_run:
                return self._dry_run(rt, obj, entry.kind, ns, name)
            return self._create(rt, obj, entry.kind, ns, name)
        except KubeError as exc:
            return ItemResult(
                entry.kind,
                ns,
                name,
                "would-fail" if self.spec.dry_run else "failed",
                f"{exc.status} {exc.reason}: {exc.message}",
            )

    def _call(self, fn, *args, lost: list | None = None, **kwargs):
        """Retry server errors (RETRIES times) and an unreachable API server with backoff; anything
        else is the object's result. (A 429 was retried by the client already.) The API server may
        be unreachable for OUTAGE_BUDGET seconds in all — one restarting or cut off for a while —
        counted from the first failure any call saw since the last success, so a dead API server
        fails the remaining objects at once instead of each waiting out its own budget. ``lost``
        gets an entry when a try failed with the connection (its request may have been applied)."""
        attempt = 0
        while True:
            try:
                result = fn(*args, **kwargs)
                self._unreachable_since = None
                return result
            except KubeError as exc:
                attempt += 1
                unreachable = exc.status == 0
                if unreachable:
                    if lost is not None:
                        lost.append(exc)
                    with self._lock:
                        if self._unreachable_since is None:
                            self._unreachable_since = time.monotonic()
                        since = self._unreachable_since
                    if time.monotonic() - since >= OUTAGE_BUDGET:
                        raise
                elif not exc.transient or exc.status == 429 or attempt >= RETRIES:
                    raise
                self.kube.count_retry()
                time.sleep(min(5.0, 0.2 * 2 ** min(attempt - 1, 5)))

    def _create(self, rt: ResourceType, obj: dict, kind: str, ns: str | None, name: str) -> ItemResult:
        lost: list[KubeError] = []  # tries of the create whose answer the connection lost
        try:
            self._call(self.kube.create, rt, obj, ns, lost=lost)
            return ItemResult(kind, ns, name, "created")
        except KubeError as exc:
            if (
                kind == "Service"
                and exc.status == 422
                and "port is already allocated" in exc.message
                and self._call(self.kube.get_or_none, rt.path(ns, name)) is None
            ):
                # the backed-up nodePort belongs to another Service here: take a new one, and say so
                ports = [p.pop("nodePort") for p in (obj.get("spec") or {}).get("ports") or [] if "nodePort" in p]
                self._call(self.kube.create, rt, obj, ns)
                return ItemResult(
                    kind,
                    ns,
                    name,
                    "created",
                    f"nodePort {', '.join(map(str, ports))} is taken in this cluster; new ones allocated",
                )
            # An existing object can also surface as a validation error (a Service's nodePort
            # "already allocated" by itself), so any 409/422 is checked against the live object.
            if exc.status not in (409, 422):
                raise
            live = self._call(self.kube.get_or_none, rt.path(ns, name))
            if exc.reason != "AlreadyExists" and live is None:
                raise
            labels = ((live or {}).get("metadata") or {}).get("labels") or {}
            if lost and labels.get("ys1000.io/restore") == self.spec.restore_id[:63]:
                # this very create was applied, its answer lost with the connection, then retried;
                # only then: an object of an earlier try (or updated by one) is not "created" now
                return ItemResult(kind, ns, name, "created")
        policy = self.spec.existing_policy
        if policy == "skip":
            return ItemResult(kind, ns, name, "skipped", "exists")
        if policy == "fail":
            return ItemResult(kind, ns, name, "failed", "exists (existing-resource policy: fail)")
        live = live or self._call(self.kube.get, rt.path(ns, name))
        merged = _for_update(obj, live)
        self._call(self.kube.replace, rt, merged, ns)
        return ItemResult(kind, ns, name, "updated")

    def _dry_run(self, rt: ResourceType, obj: dict, kind: str, ns: str | None, name: str) -> ItemResult:
        live = self._call(self.kube.get_or_none, rt.path(ns, name))
        if live is not None:
            action = {"skip": "would-skip", "update": "would-update", "fail": "would-fail"}[self.spec.existing_policy]
            return ItemResult(kind, ns, name, action, "exists")
        if kind == "Namespace":
            with self._lock:
                self._new_namespaces.add(name)
            self._call(self.kube.create, rt, obj, ns, dry_run=True)
            return ItemResult(kind, ns, name, "would-create")
        if ns and ns in self._new_namespaces:
            return ItemResult(kind, ns, name, "would-create", "in a namespace this restore creates")
        self._call(self.kube.create, rt, obj, ns, dry_run=True)  # the server validates it
        return ItemResult(kind, ns, name, "would-create")


def _complete_volumes(lines: list[dict], results: list[dict]) -> list[dict]:
    """Volume lines of a restore in parts: the mapped tasks' results replace the ``pending``
    lines; a PVC whose task left no result failed."""
    by_key = {(r["namespace"], r["pvc"]): r for r in results if r}
    out = []
    for line in lines:
        if line.get("status") == "pending":
            line = by_key.get((line["namespace"], line["pvc"])) or {
                **line,
                "status": "failed",
                "reason": "its data was not restored (its volume task did not finish)",
            }
        out.append(line)
    return out


def _for_update(obj: dict, live: dict) -> dict:
    """The backed-up object, on top of what the server owns in the live one."""
    obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    if obj.get("kind") == "Service":
        for key in ("clusterIP", "clusterIPs"):
            if key in (live.get("spec") or {}):
                obj.setdefault("spec", {})[key] = live["spec"][key]
    if obj.get("kind") == "PersistentVolumeClaim":
        obj["spec"] = live["spec"]  # a bound claim's spec is immutable
    return obj


def find_conflicts(kube: Kube, repo: Repository, spec: RestoreSpec) -> list[str]:
    """F24: what a restore would find already present in the target (namespaces, cluster objects)."""
    conflicts: list[str] = []
    restorer = Restorer(kube, repo, spec)
    for entry in repo.read_index(spec.backup_id):
        if not entry.restore or not _selected(entry, spec) or entry.namespace is not None:
            continue
        name = spec.options.ns(entry.name) if entry.kind == "Namespace" else entry.name
        if entry.kind == "PersistentVolume":
            continue  # provisioned anew or renamed with its claim
        rt = NAMESPACES if entry.kind == "Namespace" else restorer._resource_type(entry)
        if rt is not None and kube.get_or_none(rt.path(name=name)) is not None:
            conflicts.append(f"{entry.kind} {name}")
    return conflicts


def check_no_conflicts(kube: Kube, repo: Repository, spec: RestoreSpec) -> None:
    conflicts = find_conflicts(kube, repo, spec)
    if conflicts:
        raise ConflictError(conflicts)
