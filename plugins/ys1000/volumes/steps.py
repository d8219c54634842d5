"""One volume's data (or one custom hook) as resumable steps, split at their long waits.

Backing up or restoring one PVC waits for things that take minutes or hours: a mover Job, a CSI
snapshot becoming ready, a temporary PVC binding. Each volume unit (``VolumeBackup``,
``VolumeExport``, ``VolumeRestore``) is therefore a small state machine: ``begin`` starts the
first piece of work and returns either ``Done(record)`` or ``Wait(what, state, cleanup)``;
``resume(state, event)`` continues once ``what`` has happened.

- The DAGs run one mapped task per PVC; a ``Wait`` becomes a deferral to the triggerer
  (``ys1000.airflow.triggers.VolumeWaitTrigger``), which calls ``check`` until it answers, so no
  worker slot sleeps while movers run. A cancel there deletes what ``cleanup`` lists.
- The CLI, migrations and benchmarks wait in place (``drive``), several volumes at a time.
- A custom hook (``ys1000.hooks.custom.HookRunner.begin``/``finish``) waits the same way for its
  Job (``kind: hook``: success is exit code 0; the runner reads the output once it ended).

``state`` and ``what`` are plain JSON, so they survive the trip through the triggerer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ys1000.kube import Kube, jobs
from ys1000.kube.discovery import PVCS


@dataclass
class Wait:
    # {"kind": job | hook | snapshot | pvc_bound, "namespace", "name", "timeout", "label", optional "cluster"
    # (a role such as "source"/"target" when a unit works in two clusters)}
    what: dict[str, Any]
    state: dict[str, Any]  # where ``resume`` goes on
    # what a cancel deletes: {"jobs": [[ns, name]], "pvcs": [[ns, name]], optional "cluster"}
    cleanup: dict[str, Any] = field(default_factory=dict)


def in_cluster(step: "Step", role: str) -> "Step":
    """The step's wait (and its cleanup) happen in the cluster of ``role``."""
    if isinstance(step, Wait):
        step.what["cluster"] = role
        step.cleanup["cluster"] = role
    return step


@dataclass
class Done:
    record: dict[str, Any]


Step = Wait | Done


class StepFailed(RuntimeError):
    """This volume's data could not be moved (the reason says why); a retry may succeed."""


class Unit(Protocol):
    def resume(self, state: dict, event: dict) -> Step: ...


def job_wait(run: jobs.JobRun, label: str, timeout: float, state: dict, pvcs: list | None = None) -> Wait:
    return Wait(
        {"kind": "job", "namespace": run.namespace, "name": run.name, "timeout": timeout, "label": label},
        state,
        {"jobs": [[run.namespace, run.name]], "pvcs": list(pvcs or [])},
    )


def check(kube: Kube, what: dict) -> dict | None:
    """One look at what a step waits for: ``None`` while waiting, else the event
    ``{"status": "success" | "failed", "reason": …, "result": …}``."""
    kind, ns, name = what["kind"], what["namespace"], what["name"]
    if kind in ("job", "hook"):
        return job_event(jobs.state(kube, ns, name, read_log=kind == "job"), what)
    if kind == "snapshot":
        from ys1000.volumes.snapshots import SNAPSHOTS

        vs = kube.get_or_none(SNAPSHOTS.path(ns, name))
        if vs is None:
            return {"status": "failed", "reason": f"VolumeSnapshot {ns}/{name} is gone"}
        snap = vs.get("status") or {}
        if snap.get("error"):
            return {"status": "failed", "reason": f"snapshot {ns}/{name} failed: {snap['error'].get('message')}"}
        return {"status": "success"} if snap.get("readyToUse") else None
    if kind == "pvc_bound":
        pvc = kube.get_or_none(PVCS.path(ns, name))
        if pvc is None:
            return {"status": "failed", "reason": f"PVC {ns}/{name} is gone"}
        return {"status": "success"} if (pvc.get("status") or {}).get("phase") == "Bound" else None
    raise ValueError(f"unknown wait kind {kind!r}")


def job_event(st: jobs.JobState, what: dict) -> dict | None:
    """The event of a mover (``kind: job``: its result line) or hook Job (its end only; the hook
    runner reads exit code and log), or ``None`` while it runs."""
    if not st.done:
        return None
    if what["kind"] == "hook":
        return {"status": "success" if st.succeeded else "failed", "reason": st.reason}
    result = st.line("result")
    if st.succeeded and result and result.get("ok"):
        return {"status": "success", "result": result}
    return {
        "status": "failed",
        "reason": jobs.describe(st, what.get("label") or f"Job {what['namespace']}/{what['name']}"),
    }


def progress_of(kube: Kube, what: dict) -> dict | None:
    """The newest progress line of a waiting mover (None for other waits)."""
    if what["kind"] != "job":
        return None
    return jobs.last_line(
        jobs.pod_log(kube, what["namespace"], jobs.find_pod(kube, what["namespace"], what["name"])), "progress"
    )


def timed_out(what: dict) -> dict:
    return {
        "status": "failed",
        "reason": f"{what.get('label') or what['kind']} ({what['namespace']}/{what['name']}) "
        f"did not finish within {what['timeout']:.0f} s",
    }


def wait_in_place(
    kube: Kube, what: dict, *, cancel: threading.Event, on_progress: Callable[[dict], None] | None = None
) -> dict:
    """Wait here for ``what`` (a mover or hook Job by watching its pod, the rest by polling)."""
    if what["kind"] in ("job", "hook"):
        try:
            st = jobs.wait(
                kube, what["namespace"], what["name"], timeout=what["timeout"], cancel=cancel, on_progress=on_progress
            )
        except jobs.JobError:
            return timed_out(what)
        # the state the wait ended on (its pod and log already read): not a second list and log read
        return job_event(st, what) or timed_out(what)
    deadline = time.monotonic() + what["timeout"]
    pause = 0.02
    while True:
        if cancel.is_set():
            raise InterruptedError(f"wait for {what['kind']} {what['namespace']}/{what['name']} cancelled")
        event = check(kube, what)
        if event is not None:
            return event
        if time.monotonic() > deadline:
            return timed_out(what)
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def clean(kube: Kube, cleanup: dict) -> list[str]:
    """Delete what a cancelled or failed step leaves: its Jobs (with their Secrets) and temporary PVCs."""
    gone = []
    for ns, name in cleanup.get("jobs") or []:
        jobs.delete(kube, ns, name)
        gone.append(f"Job {ns}/{name}")
    for ns, name in cleanup.get("pvcs") or []:
        kube.delete(PVCS, name, ns)
        gone.append(f"PVC {ns}/{name}")
    return gone


def sweep(kube: Kube, namespaces: list[str], run_ids: list[str], backup_id: str | None = None) -> list[str]:
    """After a run's volume tasks are all done: delete any mover Job/Secret they left (a task
    marked failed while deferred, before its trigger ran, cannot clean up itself) and, for a
    backup, any temporary export PVC."""
    from ys1000.volumes.movers import COMPONENT

    gone: list[str] = []
    for run_id in run_ids:
        gone += jobs.delete_run(kube, namespaces, run_id, component=COMPONENT)
    if backup_id:
        for ns in dict.fromkeys(namespaces):
            for pvc in kube.list(
                PVCS, ns, label_selector=f"ys1000.io/component=export,ys1000.io/backup={backup_id[:63]}"
            ):
                kube.delete(PVCS, pvc["metadata"]["name"], ns)
                gone.append(f"PVC {ns}/{pvc['metadata']['name']}")
    return gone


class Driver:
    """Runs volume units in place, at most ``max_concurrent`` at a time; ``cancel_all`` stops the
    waits and deletes what the running ones made (the CLI's Ctrl-C, an operator's ``on_kill``)."""

    def __init__(
        self,
        kube: Kube,
        max_concurrent: int = 2,
        on_progress: Callable[[str, dict], None] | None = None,
        kubes: dict[str, Kube] | None = None,
    ):
        self.kube = kube
        self.kubes = kubes or {}  # role → cluster, for units working in two clusters (migration)
        self.slots = threading.Semaphore(max(1, max_concurrent))
        self.cancel = threading.Event()
        self.on_progress = on_progress
        self._active: dict[int, dict] = {}
        self._lock = threading.Lock()

    def drive(self, unit: Unit, begin: Callable[[], Step], key: str = "") -> dict:
        """``begin()``, then wait and resume until done; returns the unit's record."""
        with self.slots:
            if self.cancel.is_set():
                raise InterruptedError("cancelled before it started")
            step = begin()
            token = id(step)
            on_progress = self.on_progress
            report = (lambda p: on_progress(key, p)) if on_progress else None
            try:
                while isinstance(step, Wait):
                    with self._lock:
                        self._active[token] = step.cleanup
                    event = wait_in_place(
                        self._kube(step.what.get("cluster")), step.what, cancel=self.cancel, on_progress=report
                    )
                    step = unit.resume(step.state, event)
                return step.record
            finally:
                with self._lock:
                    self._active.pop(token, None)

    def cancel_all(self) -> list[str]:
        self.cancel.set()
        with self._lock:
            active = list(self._active.values())
        gone: list[str] = []
        for cleanup in active:
            gone += clean(self._kube(cleanup.get("cluster")), cleanup)
        return gone

    def _kube(self, role: str | None) -> Kube:
        return self.kubes.get(role, self.kube) if role else self.kube
