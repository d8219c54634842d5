"""Whether restored workloads came up, and when not, why — named object by object.

Ready means every workload in the namespaces runs what its spec asks for:

- Deployment: ``status.availableReplicas >= spec.replicas``;
- StatefulSet: ``status.readyReplicas >= spec.replicas`` (currentRevision/updateRevision are not
  compared: a restored set is new, its revisions say nothing about the restore);
- DaemonSet: ``numberReady`` and ``updatedNumberScheduled`` ``>= desiredNumberScheduled``;

each with ``status.observedGeneration`` current, so a status from before the controller looked
(a new DaemonSet reports 0 of 0 desired) does not count. ``spec.replicas: 0`` is ready.
Jobs are not required, neither those a CronJob created nor standalone ones: a Job runs to an end,
it is never "ready", and whether it succeeds is the application's business (a drill's ``hook``
check can prove it). Bare Pods (no controller) are not required either.

The reasons come from the pods of the workloads that are not ready: container waiting reasons
(ErrImagePull, ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError, InvalidImageName),
PodScheduled False (Unschedulable ...), containers terminated with a non-zero exit code; where the
pod status has no message, the pod's Warning Events supply it. A workload without such pods is
explained by its own conditions and Warning Events (e.g. FailedCreate from a quota).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PODS, core

Obj = dict[str, Any]

_LIST_GET = frozenset({"list", "get"})
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment", True, _LIST_GET)
STATEFULSETS = ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, _LIST_GET)
DAEMONSETS = ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, _LIST_GET)
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, _LIST_GET)
EVENTS = core("events", "Event")

# Failures that waiting does not heal: the spec (image, command, config reference) must change.
HARD_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
MAX_PAUSE = 2.0


@dataclass
class Readiness:
    ready: bool
    seconds: float  # from the call until ready (or until it gave up)
    workloads: list[str]  # "Deployment ns/web 2/2 available", ready or not
    problems: list[str]  # why not ready, each naming the object

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Problem:
    text: str
    hard: str | None = None  # "<workload>/<container>/<failure>" for a failure waiting does not heal


def check_ready(kube: Kube, namespaces: list[str]) -> Readiness:
    """One look at the workloads of ``namespaces``."""
    started = time.monotonic()
    ready, workloads, problems = _look(kube, namespaces)
    return Readiness(ready, round(time.monotonic() - started, 2), workloads, [p.text for p in problems])


def wait_ready(
    kube: Kube,
    namespaces: list[str],
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    settle_failures: float = 20.0,
) -> Readiness:
    """Look until the workloads are ready (returned at once), ``timeout`` passed, or a hard failure
    (an image that cannot be pulled, a crash loop, a missing config reference) persisted for
    ``settle_failures`` seconds: those do not heal by waiting, so the caller hears it early.
    Raises InterruptedError when ``cancel`` is set."""
    started = time.monotonic()
    deadline = started + timeout
    # hard failure -> (first, last) seen; a gap shorter than settle_failures does not restart its
    # clock: a crash-looping container is briefly Running between its back-offs
    seen: dict[str, tuple[float, float]] = {}
    result: Readiness | None = None
    pause = 0.1
    while True:
        if cancel is not None and cancel.is_set():
            raise InterruptedError("waiting for the restored workloads to be ready was cancelled")
        try:
            ready, workloads, problems = _look(kube, namespaces)
        except KubeError as exc:
            if not exc.transient:
                raise
            now = time.monotonic()  # an API server hiccup: keep the last look, try again
            if result is None:
                result = Readiness(False, 0.0, [], [f"API server: {exc}"])
        else:
            now = time.monotonic()
            result = Readiness(ready, round(now - started, 2), workloads, [p.text for p in problems])
            if ready:
                return result
            for key in {p.hard for p in problems if p.hard}:
                first, last = seen.get(key, (now, now))
                seen[key] = (first if now - last < settle_failures else now, now)
            if any(last == now and now - first >= settle_failures for first, last in seen.values()):
                return result
        if now >= deadline:
            result.seconds = round(now - started, 2)
            return result
        wait = min(pause, deadline - now)
        if cancel is not None:
            cancel.wait(wait)
        else:
            time.sleep(wait)
        pause = min(pause * 2, MAX_PAUSE)


# -- one look --------------------------------------------------------------------------------------
def _look(kube: Kube, namespaces: list[str]) -> tuple[bool, list[str], list[_Problem]]:
    all_ready, workloads, problems = True, [], []
    judges: list[tuple[ResourceType, Callable[[Obj], tuple[bool, str, str]]]] = [
        (DEPLOYMENTS, _deployment),
        (STATEFULSETS, _statefulset),
        (DAEMONSETS, _daemonset),
    ]
    for ns in dict.fromkeys(namespaces):
        unready: list[tuple[Obj, str]] = []
        for rt, judge in judges:
            for obj in sorted(kube.list(rt, ns), key=lambda o: o["metadata"]["name"]):
                ok, line, why = judge(obj)
                workloads.append(f"{rt.kind} {ns}/{obj['metadata']['name']} {line}")
                if not ok:
                    unready.append((obj, why))
        if unready:
            all_ready = False
            problems += _why(kube, ns, unready)
    return all_ready, workloads, problems


def _replicas(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def _generation_seen(obj: Obj) -> bool:
    return ((obj.get("status") or {}).get("observedGeneration") or 0) >= (obj["metadata"].get("generation") or 0)


def _deployment(obj: Obj) -> tuple[bool, str, str]:
    want, have = _replicas(obj), int((obj.get("status") or {}).get("availableReplicas") or 0)
    line = f"{have}/{want} available"
    if not _generation_seen(obj):
        return False, line, f"generation {obj['metadata'].get('generation')} not observed yet ({line})"
    return have >= want, line, line


def _statefulset(obj: Obj) -> tuple[bool, str, str]:
    want, have = _replicas(obj), int((obj.get("status") or {}).get("readyReplicas") or 0)
    line = f"{have}/{want} ready"
    if not _generation_seen(obj):
        return False, line, f"generation {obj['metadata'].get('generation')} not observed yet ({line})"
    return have >= want, line, line


def _daemonset(obj: Obj) -> tuple[bool, str, str]:
    st = obj.get("status") or {}
    want = int(st.get("desiredNumberScheduled") or 0)
    have, updated = int(st.get("numberReady") or 0), int(st.get("updatedNumberScheduled") or 0)
    line = f"{have}/{want} ready"
    if not _generation_seen(obj):
        return False, line, f"generation {obj['metadata'].get('generation')} not observed yet ({line})"
    if updated < want:
        return False, line, f"{line}, {updated}/{want} updated"
    return have >= want, line, line


# -- why not ---------------------------------------------------------------------------------------
def _why(kube: Kube, ns: str, unready: list[tuple[Obj, str]]) -> list[_Problem]:
    pods = [p for p in kube.list(PODS, ns) if not p["metadata"].get("deletionTimestamp")]
    rs_owner: dict[str, str] = {}  # ReplicaSet uid -> its Deployment's uid
    rs_of: dict[str, list[Obj]] = {}  # Deployment uid -> its ReplicaSets
    if any(o["kind"] == "Deployment" for o, _ in unready):
        for rs in kube.list(REPLICASETS, ns):
            owner = _controller(rs)
            if owner and owner.get("kind") == "Deployment":
                rs_owner[rs["metadata"]["uid"]] = owner["uid"]
                rs_of.setdefault(owner["uid"], []).append(rs)
    events = _Events(kube, ns)
    by_workload: dict[str, list[Obj]] = {}
    for pod in pods:
        owner = _controller(pod)
        if owner is None:
            continue
        uid: str = owner["uid"]
        if owner.get("kind") == "ReplicaSet":
            uid = rs_owner.get(uid, uid)
        by_workload.setdefault(uid, []).append(pod)
    out: list[_Problem] = []
    for obj, why in unready:
        md = obj["metadata"]
        ref = f"{obj['kind']} {ns}/{md['name']}"
        found = [q for pod in by_workload.get(md["uid"], []) for q in _pod_problems(pod, ref, events)]
        if not found:
            found = [_Problem(t) for t in _workload_problems(obj, ref, rs_of.get(md["uid"], []), events)]
        out += found or [_Problem(f"{ref}: {why}")]
    return out


def _controller(obj: Obj) -> Obj | None:
    return next((o for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")), None)


def _pod_problems(pod: Obj, workload: str, events: "_Events") -> list[_Problem]:
    md, st = pod["metadata"], pod.get("status") or {}
    if st.get("phase") == "Succeeded" or _pod_ready(pod):
        return []
    name = f"pod {md['namespace']}/{md['name']}"
    out: list[_Problem] = []
    scheduled = True
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            scheduled = False
            msg = cond.get("message") or events.message(md["uid"], reasons=("FailedScheduling",))
            out.append(_Problem(f"{name}: {cond.get('reason') or 'Unschedulable'}" + (f": {msg}" if msg else "")))
    for where, key in (("init container", "initContainerStatuses"), ("container", "containerStatuses")):
        for cs in st.get(key) or []:
            state = cs.get("state") or {}
            waiting, term = state.get("waiting") or {}, state.get("terminated") or {}
            reason = waiting.get("reason")
            if reason in HARD_FAILURES:
                if reason == "CrashLoopBackOff":
                    last = (cs.get("lastState") or {}).get("terminated") or {}
                    n = int(cs.get("restartCount") or 0)
                    code = f"exit code {last['exitCode']}, " if last.get("exitCode") is not None else ""
                    text = f"{name}: {where} {cs['name']} CrashLoopBackOff ({code}{n} restart{'' if n == 1 else 's'})"
                else:
                    msg = waiting.get("message") or events.message(md["uid"], container=cs["name"])
                    text = f"{name}: {where} {cs['name']} {reason}" + (f": {msg}" if msg else "")
                # the image-pull states alternate; they are one failure for the settle clock
                family = "ImagePull" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
                out.append(_Problem(text, f"{workload}/{cs['name']}/{family}"))
            elif term.get("exitCode") not in (None, 0):
                out.append(_Problem(f"{name}: {where} {cs['name']} terminated with {_exit(term)}"))
            elif not cs.get("ready") and int(cs.get("restartCount") or 0) > 0:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last.get("exitCode") not in (None, 0):  # between two crashes of a crash loop
                    n = int(cs["restartCount"])
                    text = f"{name}: {where} {cs['name']} restarted {n} time{'' if n == 1 else 's'}, last {_exit(last)}"
                    out.append(_Problem(text))
    if not out:  # nothing in the status says why: the kubelet's or scheduler's Warning Events may
        ev = events.latest(md["uid"], skip=("FailedScheduling",) if scheduled else ())
        if ev is not None:
            out.append(_Problem(f"{name}: {ev.get('reason')}: {ev.get('message')}"))
    return out


def _exit(term: Obj) -> str:
    text = f"exit code {term['exitCode']}"
    if term.get("reason"):
        text += f" ({term['reason']})"
    return text + (f": {term['message']}" if term.get("message") else "")


def _pod_ready(pod: Obj) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


def _workload_problems(obj: Obj, ref: str, replicasets: list[Obj], events: "_Events") -> list[str]:
    """A workload with no pods to blame: its failure conditions, else its (ReplicaSets') Warning Events."""
    out = []
    for cond in (obj.get("status") or {}).get("conditions") or []:
        failing = (cond.get("type") == "ReplicaFailure" and cond.get("status") == "True") or (
            cond.get("type") == "Progressing" and cond.get("status") == "False"
        )
        if failing:
            out.append(f"{ref}: {cond.get('reason')}: {cond.get('message')}")
    for rs in replicasets:
        for cond in (rs.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                out.append(
                    f"ReplicaSet {rs['metadata']['namespace']}/{rs['metadata']['name']}: "
                    f"{cond.get('reason')}: {cond.get('message')}"
                )
    if out:
        return out
    for o, kind in [(obj, obj["kind"]), *((rs, "ReplicaSet") for rs in replicasets)]:
        ev = events.latest(o["metadata"]["uid"])
        if ev is not None:
            out.append(
                f"{kind} {o['metadata']['namespace']}/{o['metadata']['name']}: {ev.get('reason')}: {ev.get('message')}"
            )
    return out


class _Events:
    """The namespace's Warning Events, listed once and only when a reason needs one."""

    def __init__(self, kube: Kube, ns: str):
        self.kube, self.ns = kube, ns
        self._by_uid: dict[str, list[Obj]] | None = None

    def _of(self, uid: str) -> list[Obj]:
        if self._by_uid is None:
            self._by_uid = {}
            for ev in self.kube.list(EVENTS, self.ns, field_selector="type=Warning"):
                self._by_uid.setdefault((ev.get("involvedObject") or {}).get("uid", ""), []).append(ev)
            for evs in self._by_uid.values():
                evs.sort(key=_when, reverse=True)
        return self._by_uid.get(uid, [])

    def latest(
        self, uid: str, *, container: str | None = None, reasons: tuple[str, ...] = (), skip: tuple[str, ...] = ()
    ) -> Obj | None:
        """The newest matching Event; a kubelet's bare "Error: <reason>" echo only when nothing says more."""
        found = [
            ev
            for ev in self._of(uid)
            if (container is None or (ev.get("involvedObject") or {}).get("fieldPath", "").endswith(f"{{{container}}}"))
            and (not reasons or ev.get("reason") in reasons)
            and ev.get("reason") not in skip
        ]
        telling = [ev for ev in found if not (ev.get("message") or "").startswith("Error: ")]
        return next(iter(telling or found), None)

    def message(self, uid: str, **match: Any) -> str:
        ev = self.latest(uid, **match)
        return (ev or {}).get("message") or ""


def _when(ev: Obj) -> str:
    # second precision across the three places a timestamp lives (core/v1 and events.k8s.io writers)
    return (ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp") or "")[:19]
