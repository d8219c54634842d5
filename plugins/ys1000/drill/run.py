"""A restore drill: prove that a backup brings a working application back, and how fast.

``run_drill`` restores the backup into scratch namespaces (``<ns>-<suffix>``) with its PVC data,
every restored byte read back and checked against the snapshot (``restic restore --verify``),
waits until the workloads are ready (``ys1000.drill.readiness``; the reasons when not), runs the
plan's checks, records an evidence document in the repository (``drills/<backup>/<drill>.json``)
and always removes the scratch namespaces — on failure and on cancel too.

RTO is measured from the restore's start until the workloads were ready and every check passed.
Into the cluster the backup came from, cluster-scoped objects are left alone (they exist and
belong to production), Ingresses are not restored (a second Ingress for the same host would take
production traffic) and nodePorts are reassigned.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable

from ys1000.drill.checks import Check, run_check
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import Repository, RepositoryConfig
from ys1000.restore import RestoreOptions, RestoreSpec
from ys1000.restore.pipeline import run_restore

log = logging.getLogger(__name__)

DRILL_LABEL = "ys1000.io/drill"
VERIFIED, FAILED = "verified", "failed"


def new_drill_id(backup_id: str, when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    digest = hashlib.sha1(f"{backup_id}/{when.isoformat()}".encode()).hexdigest()[:4]
    return f"drill-{when:%Y%m%d%H%M%S}-{digest}"


def scratch_namespace(namespace: str, suffix: str) -> str:
    """``<ns>-<suffix>``, cut to a DNS label (63 chars) keeping the suffix."""
    return f"{namespace[: 62 - len(suffix)].rstrip('-')}-{suffix}"


@dataclass
class DrillSpec:
    backup_id: str
    drill_id: str = ""
    suffix: str = ""  # scratch namespace suffix; default "drill-<4 hex of the drill id>"
    timeout: float = 900.0  # the whole drill: restore, readiness and checks
    checks: list[Check] = field(default_factory=list)
    same_cluster: bool = True
    volume_opts: Any = None  # VolumeRestoreOptions; verify is forced on
    rto_objective: float | None = None  # the plan's rto (seconds): a slower drill is flagged

    def __post_init__(self) -> None:
        self.drill_id = self.drill_id or new_drill_id(self.backup_id)
        self.suffix = self.suffix or f"drill-{hashlib.sha1(self.drill_id.encode()).hexdigest()[:4]}"


@dataclass
class DrillResult:
    evidence: dict[str, Any]

    @property
    def verified(self) -> bool:
        return self.evidence["status"] == VERIFIED

    @property
    def reason(self) -> str:
        return self.evidence.get("reason") or ""


class DrillFailed(Exception):
    """One step of the drill did not pass; the message says which and why."""


def run_drill(
    kube: Kube,
    repo: Repository,
    spec: DrillSpec,
    *,
    repo_cfg: RepositoryConfig | None = None,
    cancel: threading.Event | None = None,
    say: Callable[[str], None] = log.info,
) -> DrillResult:
    manifest = repo.manifest(spec.backup_id)
    mapping = {ns: scratch_namespace(ns, spec.suffix) for ns in manifest.namespaces}
    started = time.time()
    deadline = time.monotonic() + spec.timeout
    ev: dict[str, Any] = {
        "drill_id": spec.drill_id,
        "backup_id": spec.backup_id,
        "plan": manifest.plan,
        "backup_cluster": manifest.cluster_name,
        "cluster": getattr(kube, "name", None),
        "namespaces": mapping,
        "started": _iso(started),
        "steps": {},
        "checks": [],
    }
    step_start = time.monotonic()

    def step_done(name: str) -> None:
        nonlocal step_start
        now = time.monotonic()
        ev["steps"][name] = round(now - step_start, 2)
        step_start = now

    try:
        _refuse_existing(kube, mapping)
        say(f"drill {spec.drill_id}: restoring {spec.backup_id} into {', '.join(mapping.values())}")
        opts = replace(spec.volume_opts, verify=True) if spec.volume_opts is not None else None
        if opts is None:
            from ys1000.volumes import VolumeRestoreOptions

            opts = VolumeRestoreOptions(verify=True, same_cluster=spec.same_cluster, run_id=f"drill/{spec.drill_id}")
        report = run_restore(
            kube,
            repo,
            RestoreSpec(
                backup_id=spec.backup_id,
                restore_id=spec.drill_id,
                options=RestoreOptions(
                    namespace_mapping=mapping, preserve_node_ports=False, labels={DRILL_LABEL: spec.drill_id}
                ),
                include_cluster_resources=not spec.same_cluster,
                exclude_kinds=["Ingress"] if spec.same_cluster else [],
            ),
            same_cluster=spec.same_cluster,
            volume_opts=opts,
            repo_cfg=repo_cfg,
            cancel=cancel,
        )
        step_done("restore")
        ev["restore"] = {"status": report.status, "counts": report.counts, "failed": [_item(i) for i in report.failed]}
        ev["objects"] = sum(n for a, n in report.counts.items() if a in ("created", "updated"))
        if report.failed:
            raise DrillFailed(f"restore {report.status}: " + "; ".join(_item(i) for i in report.failed[:5]))
        ev["volumes"] = _check_volumes(manifest.volumes, report.volumes, mapping)
        ev["bytes"] = sum(v.get("bytes_restored") or 0 for v in report.volumes)
        bad = [v for v in ev["volumes"] if not v["ok"]]
        if bad:
            raise DrillFailed("volume data: " + "; ".join(f"{v['namespace']}/{v['pvc']}: {v['reason']}" for v in bad))
        step_done("volumes")

        from ys1000.drill.readiness import wait_ready

        ready = wait_ready(kube, list(mapping.values()), timeout=max(1.0, deadline - time.monotonic()), cancel=cancel)
        step_done("ready")
        ev["readiness"] = ready.to_dict()
        if not ready.ready:
            raise DrillFailed("workloads not ready: " + ("; ".join(ready.problems) or "timed out"))
        say(f"drill {spec.drill_id}: workloads ready ({', '.join(ready.workloads) or 'none'})")

        for check in spec.checks:
            if cancel is not None and cancel.is_set():
                raise InterruptedError("drill cancelled")
            result = run_check(
                kube, check, mapping, timeout=max(1.0, deadline - time.monotonic()), image=getattr(opts, "image", None)
            )
            ev["checks"].append(result)
            say(f"drill {spec.drill_id}: check {result['name']}: {'passed' if result['ok'] else 'FAILED'}")
        step_done("checks")
        failed = [c for c in ev["checks"] if not c["ok"]]
        if failed:
            raise DrillFailed("checks failed: " + "; ".join(f"{c['name']}: {c['detail']}" for c in failed))
        ev["status"] = VERIFIED
        ev["rto_seconds"] = round(time.time() - started, 2)
        if spec.rto_objective is not None:
            ev["rto_objective_seconds"] = spec.rto_objective
            ev["rto_met"] = ev["rto_seconds"] <= spec.rto_objective
    except DrillFailed as exc:
        ev.update(status=FAILED, reason=str(exc))
    except BaseException as exc:  # cancelled or broken: still clean up and say so
        ev.update(status=FAILED, reason=f"{type(exc).__name__}: {exc}")
        ev["cleanup"] = _remove(kube, mapping)
        ev["finished"] = _iso(time.time())
        _save(repo, ev)
        raise
    ev["cleanup"] = _remove(kube, mapping)
    ev["finished"] = _iso(time.time())
    _save(repo, ev)
    return DrillResult(ev)


def _refuse_existing(kube: Kube, mapping: dict[str, str]) -> None:
    taken = [ns for ns in mapping.values() if kube.get_or_none(NAMESPACES.path(name=ns)) is not None]
    if taken:
        raise DrillFailed(f"scratch namespace(s) {', '.join(taken)} already exist; choose another suffix")


def _check_volumes(backed_up: list[dict], restored: list[dict], mapping: dict[str, str]) -> list[dict]:
    """Each PVC with data in the backup came back with it: restic read every restored file back
    against the snapshot (--verify), and the bytes equal what the backup recorded."""
    by_key = {(v["namespace"], v["pvc"]): v for v in restored}
    out = []
    for rec in backed_up:
        if not rec.get("restic") or rec.get("error"):
            continue
        ns, pvc = mapping.get(rec["namespace"], rec["namespace"]), rec["pvc"]
        got = by_key.get((ns, pvc)) or {}
        want_bytes = rec["restic"].get("total_bytes", 0)
        row = {
            "namespace": ns,
            "pvc": pvc,
            "backup_files": rec["restic"].get("total_files", 0),
            "backup_bytes": want_bytes,
            "restored_bytes": got.get("total_bytes"),
            "restored_entries": got.get("total_files"),
            "content_verified": bool(got.get("verified")),
        }
        if not rec["restic"].get("snapshot_id"):  # empty at backup time: it must come back empty
            empty = got.get("status") == "empty"
            row.update(ok=empty, reason="" if empty else f"empty at backup time, restored {got.get('status')}")
        elif got.get("status") != "data":
            row.update(ok=False, reason=got.get("reason") or f"restored {got.get('status') or 'nothing'}")
        elif not got.get("verified"):
            row.update(ok=False, reason="the restore did not verify the content")
        elif got.get("total_bytes") != want_bytes:
            row.update(ok=False, reason=f"{got.get('total_bytes')} bytes restored, {want_bytes} backed up")
        else:
            row.update(ok=True, reason="")
        out.append(row)
    return out


def _remove(kube: Kube, mapping: dict[str, str], timeout: float = 180) -> list[str]:
    """Delete the scratch namespaces and wait (bounded) until they are gone."""
    gone = []
    for ns in mapping.values():
        kube.delete(NAMESPACES, ns)
    end = time.monotonic() + timeout
    for ns in mapping.values():
        while kube.get_or_none(NAMESPACES.path(name=ns)) is not None and time.monotonic() < end:
            time.sleep(1)
        gone.append(ns if kube.get_or_none(NAMESPACES.path(name=ns)) is None else f"{ns} (still terminating)")
    return gone


def _save(repo: Repository, ev: dict) -> None:
    try:
        ev["evidence_key"] = repo.save_drill(ev)
    except Exception as exc:  # the drill's outcome must still reach the caller
        log.error("could not save the evidence of drill %s: %s", ev["drill_id"], exc)
        ev["evidence_error"] = str(exc)


def _item(i: Any) -> str:
    return f"{i.kind} {i.namespace + '/' if i.namespace else ''}{i.name}: {i.reason}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
