"""Mover Jobs: run ``python -m ys1000.mover`` next to a volume, inside the protected cluster.

Each mover is a Job with one pod that mounts the PVC (read-only for backups), runs on the node of
the pod that uses the volume (so ReadWriteOnce volumes can be mounted), and takes the restic
repository credentials from a Secret created for this one mover and deleted with it. The result
is the last ``{"ys1000": "result"}`` line of the pod's log. Jobs and Secrets carry the run's
labels, so a retry finds and removes leftovers of an earlier try, and a cancel deletes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PODS, core

log = logging.getLogger(__name__)

JOBS = ResourceType("batch", "v1", "jobs", "Job", True, frozenset({"list", "get", "create", "delete"}))
SECRETS = core("secrets", "Secret")
EXECUTABLE = {"ys1000.io/executable": "true"}  # the sandbox executes pods with this label
COMPONENT_LABEL = "ys1000.io/component"
RUN_LABEL = "ys1000.io/run"
DEFAULT_IMAGE = "ys1000/mover:0.1.0"


class MoverError(RuntimeError):
    """A mover Job failed; the message carries the mover's own error when it reported one."""


@dataclass
class MoverSpec:
    namespace: str
    pvc: str
    args: list[str]  # after `python -m ys1000.mover`
    env: dict[str, str]  # secret: goes into the per-mover Secret
    run_id: str  # labels every object of one task run, for cleanup
    purpose: str  # backup | restore | export
    node: str | None = None
    read_only: bool = True
    image: str = DEFAULT_IMAGE
    deadline_seconds: int = 6 * 3600
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        digest = hashlib.sha1(f"{self.run_id}/{self.namespace}/{self.pvc}/{self.purpose}".encode()).hexdigest()[:10]
        return f"ys1000-{self.purpose}-{self.pvc}"[:52].rstrip("-") + f"-{digest}"


def _labels(spec: MoverSpec) -> dict[str, str]:
    return {**spec.labels, COMPONENT_LABEL: "mover", RUN_LABEL: _label_value(spec.run_id),
            "ys1000.io/pvc": spec.pvc[:63], "ys1000.io/purpose": spec.purpose}


def _label_value(value: str) -> str:
    """Label values: ≤63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)
    if len(safe) > 63:
        safe = safe[:52] + "-" + hashlib.sha1(value.encode()).hexdigest()[:10]
    return safe.strip("._-") or "x"


def job_manifest(spec: MoverSpec) -> tuple[dict, dict]:
    labels = _labels(spec)
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": spec.name, "labels": labels},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in spec.env.items()},
    }
    pod_spec: dict = {
        "restartPolicy": "Never",
        "containers": [{
            "name": "mover",
            "image": spec.image,
            "command": ["python", "-m", "ys1000.mover", *spec.args],
            "envFrom": [{"secretRef": {"name": spec.name}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": spec.read_only}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "2Gi"}},
        }],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": spec.pvc, "readOnly": spec.read_only}}],
        "automountServiceAccountToken": False,
    }
    if spec.node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": spec.node}
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # the task's retry re-runs the mover; a half-run restic is harmless
            "activeDeadlineSeconds": spec.deadline_seconds,
            "template": {"metadata": {"labels": {**labels, **EXECUTABLE}}, "spec": pod_spec},
        },
    }
    return job, secret


class MoverRunner:
    """Runs mover Jobs in one cluster, at most ``max_concurrent`` at a time, and cleans up."""

    def __init__(self, kube: Kube, max_concurrent: int = 2, progress_every: float = 2.0,
                 on_progress: Callable[[MoverSpec, dict], None] | None = None):
        self.kube = kube
        self.slots = threading.Semaphore(max_concurrent)
        self.progress_every = progress_every  # also the longest a cancel waits to be noticed
        self.poll = 0.5  # pause before listing again after a broken watch
        self.on_progress = on_progress or (lambda spec, p: None)
        self.cancel = threading.Event()
        self._active: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def run(self, spec: MoverSpec) -> dict:
        """Create the Secret and Job, wait, read the result, delete both; raise ``MoverError``."""
        with self.slots:
            if self.cancel.is_set():
                raise InterruptedError("cancelled before the mover started")
            job, secret = job_manifest(spec)
            self._delete(spec.namespace, spec.name)  # a leftover of an earlier try of this run
            with self._lock:
                self._active.add((spec.namespace, spec.name))
            try:
                self.kube.create(SECRETS, secret, spec.namespace)
                self.kube.create(JOBS, job, spec.namespace)
                return self._wait(spec)
            finally:
                self._delete(spec.namespace, spec.name)
                with self._lock:
                    self._active.discard((spec.namespace, spec.name))

    def _wait(self, spec: MoverSpec) -> dict:
        """Follow the mover's pod with a watch until it ends; read progress from its log meanwhile.

        The pod's end decides, not the Job's status: the job controller batches pod updates and
        reports a finished pod about a second later. The Job is still read once per round, for
        the ends that leave no pod behind (deadline exceeded, pod deleted).
        """
        deadline = time.monotonic() + spec.deadline_seconds + 60
        selector = f"job-name={spec.name}"
        pods, rv = self.kube.list_version(PODS, spec.namespace, label_selector=selector)
        pod = pods[0] if pods else None
        seen_progress, last_log = "", 0.0
        while True:
            if self.cancel.is_set():
                raise InterruptedError(f"mover {spec.namespace}/{spec.name} cancelled")
            if _phase(pod) in ("Succeeded", "Failed"):
                return self._result(spec, pod, {})
            status = self.kube.get(JOBS.path(spec.namespace, spec.name)).get("status") or {}
            if status.get("succeeded") or status.get("failed"):
                return self._result(spec, self._pod(spec), status)
            if _phase(pod) == "Running" and time.monotonic() - last_log >= self.progress_every:
                last_log = time.monotonic()
                progress = last_line(self._log(spec.namespace, pod), "progress")
                if progress and json.dumps(progress) != seen_progress:
                    seen_progress = json.dumps(progress)
                    self.on_progress(spec, progress)
            if time.monotonic() > deadline:
                raise MoverError(f"mover {spec.namespace}/{spec.name} did not finish in time")
            pod, rv = self._next_change(spec, selector, pod, rv)

    def _next_change(self, spec: MoverSpec, selector: str, pod: dict | None, rv: str) -> tuple[dict | None, str]:
        """The pod after its next change, or as it was after ``progress_every`` seconds."""
        try:
            for event in self.kube.watch(PODS, spec.namespace, label_selector=selector, resource_version=rv,
                                         timeout_seconds=max(1, int(self.progress_every))):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":  # e.g. 410 Gone: the resourceVersion is too old
                    break
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if kind != "BOOKMARK":
                    return (None if kind == "DELETED" else obj), rv
            else:
                return pod, rv
        except KubeError as exc:
            if not exc.transient and exc.status != 0:
                raise
            log.info("watch of mover %s/%s ended (%s); listing again", spec.namespace, spec.name, exc)
            time.sleep(self.poll)
        pods, rv = self.kube.list_version(PODS, spec.namespace, label_selector=selector)
        return (pods[0] if pods else None), rv

    def _result(self, spec: MoverSpec, pod: dict | None, job_status: dict) -> dict:
        """The mover's result line, or ``MoverError`` with the best reason there is."""
        text = self._log(spec.namespace, pod) if pod else ""
        result = last_line(text, "result")
        succeeded = _phase(pod) == "Succeeded" or bool(job_status.get("succeeded"))
        if succeeded and result and result.get("ok"):
            return result
        pod_msg = ((pod or {}).get("status") or {}).get("message")
        reason = ((result or {}).get("error") or text.strip()[-500:] or pod_msg
                  or _job_failure(job_status) or "no output")
        raise MoverError(f"mover {spec.purpose} of {spec.namespace}/{spec.pvc} failed: {reason}")

    def _pod(self, spec: MoverSpec) -> dict | None:
        pods = list(self.kube.list(PODS, spec.namespace, label_selector=f"job-name={spec.name}"))
        return pods[0] if pods else None

    def _log(self, ns: str, pod: dict) -> str:
        try:
            return self.kube.pod_log(ns, pod["metadata"]["name"])
        except KubeError as exc:  # e.g. the pod is gone; the caller reports "no output"
            log.warning("cannot read the log of mover pod %s/%s: %s", ns, pod["metadata"]["name"], exc)
            return ""

    def _delete(self, ns: str, name: str) -> None:
        self.kube.delete(JOBS, name, ns, propagation="Background")
        self.kube.delete(SECRETS, name, ns)

    def cancel_all(self) -> list[str]:
        """Stop waiting and delete every mover Job and Secret this runner created (``on_kill``)."""
        self.cancel.set()
        with self._lock:
            active = list(self._active)
        for ns, name in active:
            self._delete(ns, name)
        return [f"{ns}/{name}" for ns, name in active]


def cleanup_run(kube: Kube, namespaces: list[str], run_id: str) -> int:
    """Delete every mover Job and Secret labelled with ``run_id`` (a killed task's leftovers)."""
    n = 0
    selector = f"{COMPONENT_LABEL}=mover,{RUN_LABEL}={_label_value(run_id)}"
    for ns in namespaces:
        for rt in (JOBS, SECRETS):
            for obj in kube.list(rt, ns, label_selector=selector):
                kube.delete(rt, obj["metadata"]["name"], ns, propagation="Background")
                n += 1
    return n


def last_line(text: str, kind: str) -> dict | None:
    """The last ``{"ys1000": kind, ...}`` line of a mover's or hook's log (their output protocol)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and f'"ys1000":"{kind}"' in line.replace(" ", ""):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _phase(pod: dict | None) -> str | None:
    return ((pod or {}).get("status") or {}).get("phase")


def _job_failure(status: dict) -> str:
    for c in status.get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message')}"
    return ""
