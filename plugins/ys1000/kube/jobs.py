"""Run a Kubernetes Job for the product and read its result — the one place that does.

Movers (``ys1000.volumes.movers``), database quiesce and custom hooks (``ys1000.hooks``) only
build their manifests and read their results; this module creates the per-run Secret or
ConfigMap and the Job, follows the Job's pod, reads the JSON line protocol from its log
(``{"ys1000": "progress" | "result" | ..., ...}``), enforces the timeout and deletes what it made.
Shaped like Velero's ``pkg/util/kube`` helpers: small functions over a client, no state beyond
the Job's own name, so a waiting task can hand the wait to a trigger and a retried task finds its
still-running Job again (``start`` reattaches by name; names derive from the run's identity).

Every object carries ``ys1000.io/component`` (``mover`` | ``hook``) and ``ys1000.io/run``, so a
cancel or a retry finds a run's leftovers by label (``delete_run``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ys1000.kube.client import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PODS, core

log = logging.getLogger(__name__)

JOBS = ResourceType("batch", "v1", "jobs", "Job", True, frozenset({"list", "get", "create", "delete"}))
SECRETS = core("secrets", "Secret")
CONFIGMAPS = core("configmaps", "ConfigMap")
COMPONENT_LABEL = "ys1000.io/component"
RUN_LABEL = "ys1000.io/run"


class JobError(RuntimeError):
    """A Job could not run or ended without success; the message says why."""


def label_value(value: str) -> str:
    """Label values: ≤63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)
    if len(safe) > 63:
        safe = safe[:52] + "-" + hashlib.sha1(value.encode()).hexdigest()[:10]
    return safe.strip("._-") or "x"


def job_name(prefix: str, name: str, *identity: str) -> str:
    """A DNS-1123 name ≤ 63 chars, stable for the same identity (a retry finds its Job again)."""
    digest = hashlib.sha1("/".join((prefix, name, *identity)).encode()).hexdigest()[:10]
    return f"ys1000-{prefix}-{name}"[:52].rstrip("-") + f"-{digest}"


@dataclass
class JobRun:
    """One Job to run in ``namespace``: its manifest and the per-run Secret/ConfigMap it reads."""

    namespace: str
    job: dict
    secret: dict | None = None
    config_map: dict | None = None

    @property
    def name(self) -> str:
        return self.job["metadata"]["name"]

    @property
    def ref(self) -> dict:
        """What a trigger (or a later try) needs to find and clean up this Job."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "secret": bool(self.secret),
            "config_map": bool(self.config_map),
        }


@dataclass
class JobState:
    """Where a Job is: ``done`` once its pod (or the Job) ended."""

    done: bool
    succeeded: bool = False
    pod: dict | None = None
    exit_code: int | None = None
    reason: str = ""
    log: str = ""

    def line(self, kind: str) -> dict | None:
        return last_line(self.log, kind)


def start(kube: Kube, run: JobRun, *, reattach: bool = True) -> bool:
    """Create the Secret/ConfigMap and the Job. With ``reattach``, a Job of that name that is
    still running is kept (a retried task follows it instead of starting a second one) and
    ``False`` is returned; a finished leftover is deleted and the Job started anew."""
    live = kube.get_or_none(JOBS.path(run.namespace, run.name))
    if live is not None:
        status = live.get("status") or {}
        if (
            reattach
            and not (status.get("succeeded") or status.get("failed"))
            and not live["metadata"].get("deletionTimestamp")
        ):
            log.info("Job %s/%s is still running (an earlier try): following it", run.namespace, run.name)
            return False
        delete(kube, run.namespace, run.name)
    _wait_gone(kube, run.namespace, run.name)
    try:
        if run.secret is not None:
            _create_or_replace(kube, SECRETS, run.secret, run.namespace)
        if run.config_map is not None:
            _create_or_replace(kube, CONFIGMAPS, run.config_map, run.namespace)
        kube.create(JOBS, run.job, run.namespace)
    except KubeError as exc:
        if exc.status == 0 and _job_may_exist(kube, run):
            raise  # the Job may have been created, only the answer lost: it needs its Secret
        # the Secret holds repository credentials: never leave it behind for a Job that is not there
        for rt, obj in ((SECRETS, run.secret), (CONFIGMAPS, run.config_map)):
            if obj is not None:
                try:
                    kube.delete(rt, obj["metadata"]["name"], run.namespace)
                except KubeError as err:
                    if err.status != 404:
                        log.warning(
                            "could not delete %s %s/%s: %s", rt.kind, run.namespace, obj["metadata"]["name"], err
                        )
        raise
    return True


def _job_may_exist(kube: Kube, run: JobRun) -> bool:
    try:
        return kube.get_or_none(JOBS.path(run.namespace, run.name)) is not None
    except KubeError:
        return True  # cannot tell: keep the Secret (a retry's start() replaces or deletes it)


def _create_or_replace(kube: Kube, rt: ResourceType, obj: dict, ns: str) -> None:
    try:
        kube.create(rt, obj, ns)
    except KubeError as exc:
        if exc.status != 409:
            raise
        kube.delete(rt, obj["metadata"]["name"], ns)
        kube.create(rt, obj, ns)


def _wait_gone(kube: Kube, ns: str, name: str, timeout: float = 30) -> None:
    """Until the Job of that name and its pods are gone: pods of a deleted Job linger a moment
    (background deletion), and a new Job of the same name would otherwise follow the old pod."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
        kube.get_or_none(JOBS.path(ns, name)) is not None
        or list(kube.list(PODS, ns, label_selector=f"job-name={name}"))
    ):
        time.sleep(0.1)


def find_pod(kube: Kube, namespace: str, job: str) -> dict | None:
    """The Job's newest pod."""
    pods = list(kube.list(PODS, namespace, label_selector=f"job-name={job}"))
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return pods[-1] if pods else None


def pod_log(kube: Kube, namespace: str, pod: dict | None) -> str:
    """The pod's log, or "" (not started yet, gone, or unreadable: the caller says "no output")."""
    if pod is None or ((pod.get("status") or {}).get("phase") or "Pending") == "Pending":
        return ""
    try:
        return kube.pod_log(namespace, pod["metadata"]["name"])
    except KubeError as exc:
        log.debug("cannot read the log of %s/%s: %s", namespace, pod["metadata"]["name"], exc)
        return ""


def exit_code(pod: dict | None) -> int | None:
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None:
            return term.get("exitCode")
    return None


def job_failure(job: dict | None) -> str:
    """The reason of the Job's Failed condition (e.g. ``DeadlineExceeded: ...``), or ""."""
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message')}"
    return ""


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


def state(kube: Kube, namespace: str, name: str, *, pod: dict | None = None, read_log: bool = True) -> JobState:
    """One look at the Job: finished or not, and if so how (its pod's end decides — the job
    controller reports a finished pod a second later — else the Job's own conditions, for the
    ends that leave no pod: deadline exceeded, pod deleted)."""
    pod = pod if pod is not None else find_pod(kube, namespace, name)
    phase = _phase(pod)
    if phase in ("Succeeded", "Failed"):
        text = pod_log(kube, namespace, pod) if read_log else ""
        code = exit_code(pod)
        ok = phase == "Succeeded" and code in (0, None)
        reason = (
            ""
            if ok
            else (
                f"exit code {code}"
                if code is not None
                else ((pod or {}).get("status") or {}).get("message") or "the pod failed"
            )
        )
        return JobState(True, ok, pod, code, reason, text)
    job = kube.get_or_none(JOBS.path(namespace, name))
    if job is None:
        return JobState(True, False, pod, None, "the Job is gone (deleted or cancelled)")
    status = job.get("status") or {}
    if status.get("succeeded"):
        pod = find_pod(kube, namespace, name)
        return JobState(True, True, pod, exit_code(pod), "", pod_log(kube, namespace, pod) if read_log else "")
    if status.get("failed") or job_failure(job):
        pod = find_pod(kube, namespace, name)
        return JobState(
            True,
            False,
            pod,
            exit_code(pod),
            job_failure(job) or "the Job failed",
            pod_log(kube, namespace, pod) if read_log else "",
        )
    return JobState(False, pod=pod)


def wait(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    on_progress: Callable[[dict], None] | None = None,
    progress_every: float = 2.0,
) -> JobState:
    """Follow the Job's pod with a watch until the Job ends; while it runs, hand each new
    ``progress`` line of its log to ``on_progress``. Raises ``InterruptedError`` on cancel and
    ``JobError`` after ``timeout`` seconds (the Job's ``activeDeadlineSeconds`` usually ends it first)."""
    deadline = time.monotonic() + timeout
    selector = f"job-name={name}"
    pods, rv = kube.list_version(PODS, namespace, label_selector=selector)
    pod = pods[0] if pods else None
    seen, last_log = "", 0.0
    while True:
        if cancel is not None and cancel.is_set():
            raise InterruptedError(f"Job {namespace}/{name} cancelled")
        st = state(kube, namespace, name, pod=pod)
        if st.done:
            return st
        if on_progress and _phase(pod) == "Running" and time.monotonic() - last_log >= progress_every:
            last_log = time.monotonic()
            progress = last_line(pod_log(kube, namespace, pod), "progress")
            if progress and json.dumps(progress) != seen:
                seen = json.dumps(progress)
                on_progress(progress)
        if time.monotonic() > deadline:
            raise JobError(f"Job {namespace}/{name} did not finish within {timeout:.0f} s")
        pod, rv = _next_change(kube, namespace, selector, pod, rv, progress_every)


def _next_change(
    kube: Kube, ns: str, selector: str, pod: dict | None, rv: str, every: float
) -> tuple[dict | None, str]:
    """The pod after its next change, or as it was after ``every`` seconds."""
    try:
        for event in kube.watch(
            PODS, ns, label_selector=selector, resource_version=rv, timeout_seconds=max(1, int(every))
        ):
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
        log.info("watch of pods %s in %s ended (%s); listing again", selector, ns, exc)
        time.sleep(0.5)
    pods, rv = kube.list_version(PODS, ns, label_selector=selector)
    return (pods[0] if pods else None), rv


def delete(kube: Kube, namespace: str, name: str) -> None:
    """Delete the Job (its pods with it, in the background) and the Secret/ConfigMap of the same name."""
    kube.delete(JOBS, name, namespace, propagation="Background")
    kube.delete(SECRETS, name, namespace)
    kube.delete(CONFIGMAPS, name, namespace)


def delete_run(
    kube: Kube, namespaces: list[str], run_id: str, component: str | None = None, extra_selector: str = ""
) -> list[str]:
    """Delete every Job, Secret and ConfigMap labelled with ``run_id`` (a killed task's leftovers)."""
    selector = f"{RUN_LABEL}={label_value(run_id)}"
    if component:
        selector += f",{COMPONENT_LABEL}={component}"
    if extra_selector:
        selector += f",{extra_selector}"
    gone = []
    for ns in dict.fromkeys(namespaces):
        for rt in (JOBS, SECRETS, CONFIGMAPS):
            for obj in kube.list(rt, ns, label_selector=selector):
                kube.delete(rt, obj["metadata"]["name"], ns, propagation="Background")
                gone.append(f"{rt.kind} {ns}/{obj['metadata']['name']}")
    return gone


@dataclass
class JobGroup:
    """The Jobs one task started, at most ``max_concurrent`` at a time, for ``cancel_all``."""

    kube: Kube
    max_concurrent: int = 2
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.slots = threading.Semaphore(max(1, self.max_concurrent))
        self._active: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def run(
        self,
        run: JobRun,
        *,
        timeout: float,
        on_progress: Callable[[dict], None] | None = None,
        progress_every: float = 2.0,
        keep: bool = False,
    ) -> JobState:
        """Start (or reattach to) the Job, wait for its end, delete it (unless ``keep``)."""
        with self.slots:
            if self.cancel.is_set():
                raise InterruptedError("cancelled before the Job started")
            with self._lock:
                self._active.add((run.namespace, run.name))
            try:
                start(self.kube, run)
                return wait(
                    self.kube,
                    run.namespace,
                    run.name,
                    timeout=timeout,
                    cancel=self.cancel,
                    on_progress=on_progress,
                    progress_every=progress_every,
                )
            finally:
                if not keep:
                    delete(self.kube, run.namespace, run.name)
                with self._lock:
                    self._active.discard((run.namespace, run.name))

    def cancel_all(self) -> list[str]:
        """Stop waiting and delete every Job (and Secret/ConfigMap) started through this group."""
        self.cancel.set()
        with self._lock:
            active = list(self._active)
        for ns, name in active:
            delete(self.kube, ns, name)
        return [f"{ns}/{name}" for ns, name in active]


def describe(st: JobState, what: str) -> str:
    """``what`` failed: the best reason there is (the Job's own error line, its output, the pod)."""
    err = (st.line("result") or {}).get("error") or (st.line("error") or {}).get("message")
    return f"{what} failed: {err or st.log.strip()[-500:] or st.reason or 'no output'}"
