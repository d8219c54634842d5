"""Consistency protection (F12): quiesce the application's databases around the capture.

``ConsistencyRunner.quiesce(spec)`` starts the quiesce hook Job next to the database (in the
app's namespace, so its credentials come straight from the app's Secret through
``env.valueFrom.secretKeyRef``), waits until the pod's log says ``quiesced`` and returns a
``QuiesceHandle``. The Job's process (``python -m ys1000.hooks.quiesce``) holds the lock in its
open database session for as long as it runs, at most ``max_lock`` (then it releases by itself).

``resume(handle)`` stops that process: it marks the pod with a short-lived finalizer (so its log
stays readable), deletes the pod gracefully (SIGTERM → the process unlocks and prints its result),
reads the result, then removes the finalizer and the Job. ``resume_run`` does that for every
quiesce Job of a run found by label, so resuming needs nothing but the run id (a separate Airflow
task, a retry, or a cancel can do it). ``cancel_all`` resumes whatever this runner holds.

Targets: ``host`` as given; ``service`` → ``<service>.<namespace>.svc`` (the Service must exist);
``workload`` (``statefulset/x``, ``deployment/x``, ``pod/x``) → the IP of its first running pod.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ys1000.hooks.jobs import (
    DEFAULT_HOOK_IMAGE,
    JOBS,
    KIND_LABEL,
    COMPONENT_LABEL,
    RESULT_FINALIZER,
    RUN_LABEL,
    cleanup_run,
    exit_code,
    find_pod,
    hook_labels,
    job_failure,
    job_name,
    label_value,
    last_line,
    pod_log,
    strip_finalizer,
)
from ys1000.kube import Kube, KubeError, ResourceType, jobs
from ys1000.kube.discovery import PODS, SERVICES

log = logging.getLogger(__name__)

USER_ENV, PASSWORD_ENV = "YS1000_DB_USER", "YS1000_DB_PASSWORD"
STOP_GRACE = 30  # seconds the pod gets to unlock after SIGTERM
WORKLOADS = {
    "statefulset": ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, frozenset({"get"})),
    "deployment": ResourceType("apps", "v1", "deployments", "Deployment", True, frozenset({"get"})),
}


class ConsistencyError(RuntimeError):
    """The database could not be quiesced (or resumed); the message says which and why."""


@dataclass
class QuiesceHandle:
    """A held quiesce: where its Job runs and what it reported. JSON-serializable (XCom)."""

    namespace: str
    job: str
    type: str
    target: str  # host:port
    pod: str | None = None
    quiesced: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuiesceHandle":
        fields: dict[str, Any] = {k: data.get(k) for k in ("namespace", "job", "type", "target", "pod")}
        return cls(**fields, quiesced=data.get("quiesced") or {})


def _get(spec: Any, name: str, default: Any = None) -> Any:
    return spec.get(name, default) if isinstance(spec, dict) else getattr(spec, name, default)


def _seconds(value: Any) -> float:
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


class ConsistencyRunner:
    """Quiesce/resume the databases of one cluster for one run (``run_id`` labels its Jobs)."""

    def __init__(
        self,
        kube: Kube,
        run_id: str,
        *,
        image: str = DEFAULT_HOOK_IMAGE,
        poll: float = 0.3,
        lock_timeout: float = 60.0,
        log_fn: Callable[[str], None] | None = None,
    ):
        self.kube, self.run_id, self.image, self.poll = kube, run_id, image, poll
        self.lock_timeout = lock_timeout
        self.cancel = threading.Event()
        self.log = log_fn or log.info
        self._held: dict[tuple[str, str], QuiesceHandle] = {}
        self._lock = threading.Lock()

    # -- targets ----------------------------------------------------------------------------
    def resolve(self, spec: Any) -> tuple[str, int]:
        """(host, port) the hook connects to."""
        ns, port = _get(spec, "namespace"), int(_get(spec, "port"))
        if _get(spec, "host"):
            return _get(spec, "host"), port
        if _get(spec, "service"):
            svc = _get(spec, "service")
            if self.kube.get_or_none(SERVICES.path(ns, svc)) is None:
                raise ConsistencyError(f"consistency target Service {ns}/{svc} does not exist")
            return f"{svc}.{ns}.svc", port
        kind, _, name = str(_get(spec, "workload")).partition("/")
        if kind == "pod":
            pods = [p for p in [self.kube.get_or_none(PODS.path(ns, name))] if p]
        else:
            obj = self.kube.get_or_none(WORKLOADS[kind].path(ns, name))
            if obj is None:
                raise ConsistencyError(f"consistency target {kind}/{name} does not exist in namespace {ns}")
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not labels:
                raise ConsistencyError(f"{kind}/{name} in {ns} has no matchLabels selector to find its pods")
            sel = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = sorted(self.kube.list(PODS, ns, label_selector=sel), key=lambda p: p["metadata"]["name"])
        running = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
            and (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]
        if not running:
            raise ConsistencyError(f"consistency target {kind}/{name} in {ns} has no running pod with an IP")
        return running[0]["status"]["podIP"], port

    # -- the Job ----------------------------------------------------------------------------
    def job_manifest(self, spec: Any, host: str, port: int) -> dict:
        ns, db_type = _get(spec, "namespace"), _get(spec, "type")
        ident = _get(spec, "workload") or _get(spec, "service") or host
        name = job_name("quiesce", f"{db_type}-{str(ident).replace('/', '-')}", self.run_id, ns, f"{host}:{port}")
        max_lock = max(1, int(_seconds(_get(spec, "max_lock", 600))))
        labels = hook_labels("quiesce", self.run_id, f"{db_type}-{ident}")
        env = []
        secret = _get(spec, "secret")
        if secret is not None:
            env = [
                {
                    "name": USER_ENV,
                    "valueFrom": {
                        "secretKeyRef": {"name": _get(secret, "name"), "key": _get(secret, "user_key", "username")}
                    },
                },
                {
                    "name": PASSWORD_ENV,
                    "valueFrom": {
                        "secretKeyRef": {"name": _get(secret, "name"), "key": _get(secret, "password_key", "password")}
                    },
                },
            ]
        args = [
            "--type",
            db_type,
            "--host",
            host,
            "--port",
            str(port),
            "--max-lock",
            str(max_lock),
            "--lock-timeout",
            str(int(self.lock_timeout)),
        ]
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"ys1000.io/target": f"{host}:{port}", "ys1000.io/type": db_type},
            },
            "spec": {
                "backoffLimit": 0,  # never a second lock behind the task's back
                # a backstop past the hook's own hard maximum: the kubelet kills it, the session ends
                "activeDeadlineSeconds": max_lock + int(self.lock_timeout) + 120,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": STOP_GRACE,
                        "automountServiceAccountToken": False,
                        "containers": [
                            {
                                "name": "quiesce",
                                "image": self.image,
                                "command": ["python", "-m", "ys1000.hooks.quiesce"],
                                "args": args,
                                "env": env,
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"memory": "256Mi"},
                                },
                            }
                        ],
                    },
                },
            },
        }

    # -- quiesce ----------------------------------------------------------------------------
    def quiesce(self, spec: Any, timeout: float = 300.0) -> QuiesceHandle:
        """Start the hook Job and wait until it holds the lock; ``ConsistencyError`` otherwise
        (the Job is then stopped and removed, so nothing stays locked)."""
        if self.cancel.is_set():
            raise InterruptedError("cancelled before quiescing")
        ns, db_type = _get(spec, "namespace"), _get(spec, "type")
        host, port = self.resolve(spec)
        job = self.job_manifest(spec, host, port)
        name = job["metadata"]["name"]
        handle = QuiesceHandle(ns, name, db_type, f"{host}:{port}")
        self._stop(handle)  # a leftover of an earlier try of this run
        with self._lock:
            self._held[(ns, name)] = handle
        try:
            jobs.start(self.kube, jobs.JobRun(ns, job), reattach=False)  # never a second lock
            return self._wait_quiesced(handle, timeout)
        except BaseException:
            try:
                self.resume(handle)  # releases the lock if it was taken meanwhile
            except Exception as exc:  # keep the original error; the Job's own max_lock ends it
                log.warning("could not stop quiesce Job %s/%s: %s", ns, name, exc)
            raise

    def _wait_quiesced(self, handle: QuiesceHandle, timeout: float) -> QuiesceHandle:
        deadline = time.monotonic() + timeout
        what = f"{handle.type} at {handle.target} (Job {handle.namespace}/{handle.job})"
        while True:
            if self.cancel.is_set():
                raise InterruptedError(f"quiesce of {what} cancelled")
            pod = find_pod(self.kube, handle.namespace, handle.job)
            text = pod_log(self.kube, handle.namespace, pod)
            q = last_line(text, "quiesced")
            if q is not None:
                assert pod is not None  # its log said so
                handle.pod, handle.quiesced = pod["metadata"]["name"], q
                self.log(f"quiesced {what} in {q.get('seconds')}s (max lock {q.get('max_lock')}s)")
                return handle
            result = last_line(text, "result")
            phase = ((pod or {}).get("status") or {}).get("phase")
            job = self.kube.get_or_none(JOBS.path(handle.namespace, handle.job))
            if result is not None or phase in ("Succeeded", "Failed") or job_failure(job):
                reason = (
                    (result or {}).get("error")
                    or ((pod or {}).get("status") or {}).get("message")
                    or job_failure(job)
                    or text.strip()[-500:]
                    or f"exit code {exit_code(pod)}"
                )
                raise ConsistencyError(f"cannot quiesce {what}: {reason}")
            if time.monotonic() > deadline:
                raise ConsistencyError(
                    f"cannot quiesce {what}: not locked within {timeout:.0f}s"
                    + (f"; pod phase {phase}" if phase else "; no pod yet")
                )
            time.sleep(self.poll)

    # -- resume -----------------------------------------------------------------------------
    def resume(self, handle: QuiesceHandle | dict, timeout: float = STOP_GRACE + 30) -> dict:
        """Stop the quiesce process (it unlocks), return its result line, remove the Job.

        ``released_by`` tells how it ended: ``signal`` (this resume), ``timeout`` (the hard
        maximum elapsed before the resume: the copy after that moment was not protected)."""
        if isinstance(handle, dict):
            handle = QuiesceHandle.from_dict(handle)
        try:
            return self._stop(handle, timeout)
        finally:
            with self._lock:
                self._held.pop((handle.namespace, handle.job), None)

    def _stop(self, handle: QuiesceHandle, timeout: float = STOP_GRACE + 30) -> dict:
        ns = handle.namespace
        pod = find_pod(self.kube, ns, handle.job)
        if pod is None:  # never started (or already removed): nothing holds a lock
            self.kube.delete(JOBS, handle.job, ns, propagation="Background")
            return {"ok": True, "released_by": "no-pod", "before_resume": True}
        pod_name = pod["metadata"]["name"]
        try:
            phase = (pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed"):
                # keep the pod object (and so its log) until the result is read
                self.kube.patch(PODS, pod_name, {"metadata": {"finalizers": [RESULT_FINALIZER]}}, ns, kind="strategic")
                self.kube.request(
                    "DELETE",
                    PODS.path(ns, pod_name),
                    body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": STOP_GRACE},
                )
            deadline = time.monotonic() + timeout
            result, text = None, ""
            while True:
                current = self.kube.get_or_none(PODS.path(ns, pod_name))
                text = pod_log(self.kube, ns, current) or text
                result = last_line(text, "result")
                ended = current is None or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                if result is not None or ended or time.monotonic() > deadline:
                    break
                time.sleep(self.poll)
            if result is None:
                held = last_line(text, "quiesced") is not None
                result = {
                    "ok": not held,
                    "released_by": "unknown",
                    "error": "the quiesce process stopped without reporting its release"
                    + (" (its session ended with it, which ends a MySQL/PostgreSQL lock)" if held else ""),
                }
            result = {k: v for k, v in result.items() if k != "ys1000"}
            # released before this resume: it had ended, or it ended by its own timer meanwhile
            result["before_resume"] = phase in ("Succeeded", "Failed") or result.get("released_by") not in (
                "signal",
                "unknown",
            )
            return result
        finally:
            strip_finalizer(self.kube, ns, pod_name)
            self.kube.delete(JOBS, handle.job, ns, propagation="Background")

    def resume_run(self, namespaces: list[str]) -> list[dict]:
        """Resume every quiesce Job of this run in ``namespaces`` (found by label)."""
        out = []
        selector = f"{COMPONENT_LABEL}=hook,{KIND_LABEL}=quiesce,{RUN_LABEL}={label_value(self.run_id)}"
        for ns in dict.fromkeys(namespaces):
            for job in self.kube.list(JOBS, ns, label_selector=selector):
                ann = job["metadata"].get("annotations") or {}
                handle = QuiesceHandle(
                    ns, job["metadata"]["name"], ann.get("ys1000.io/type", "?"), ann.get("ys1000.io/target", "?")
                )
                out.append(
                    {
                        "namespace": ns,
                        "job": handle.job,
                        "type": handle.type,
                        "target": handle.target,
                        **self.resume(handle),
                    }
                )
        return out

    def cancel_all(self) -> list[dict]:
        """Stop waiting and resume everything this runner holds (``on_kill``)."""
        self.cancel.set()
        with self._lock:
            held = list(self._held.values())
        out = []
        for h in held:
            try:
                out.append({"job": h.job, **self.resume(h)})
            except KubeError as exc:  # keep resuming the others
                out.append({"job": h.job, "ok": False, "error": str(exc)})
        return out

    def cleanup(self, namespaces: list[str]) -> list[str]:
        return cleanup_run(self.kube, namespaces, self.run_id, kind="quiesce")
