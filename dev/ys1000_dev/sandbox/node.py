"""The node side of a sandbox cluster: Nodes that stay Ready, and a kubelet-lite for their pods.

Ordinary pods scheduled to a sandbox Node are marked Running/Ready (nothing runs: there are no
containers here), which is what controllers and the product need to see. The product's mover and
hook pods (``ys1000.io/component`` = ``mover`` | ``hook``) and test pods labelled
``ys1000.io/executable=true`` are really executed by ``executor.PodRun`` and end Succeeded or
Failed with their exit codes, so Jobs complete through the real job controller. A pod being
deleted is stopped and then removed with grace period 0, the kubelet's last step, without which
namespace deletion never finishes.

Ordinary pods can also fail the way a kubelet reports it (status and Warning Events through the
API server), chosen by their spec so a test or demo only has to write a manifest:

* image pull error: a container whose image matches one of ``pull_failures`` (fnmatch; default
  ``*.invalid/*``, ``*:unpullable``) is waiting ``ErrImagePull``, then ``ImagePullBackOff``, and
  so on with the kubelet's back-off (10 s doubling to 5 min); the pod stays Pending;
* crash loop: a container whose command or args contain one of ``crash_markers`` (default
  ``ys1000-sandbox-crash``) is waiting ``CrashLoopBackOff`` with ``lastState.terminated`` exit
  code 1 and a growing ``restartCount``; the pod is Running, not Ready (with ``restartPolicy:
  Never`` the container just ends with exit code 1, as a kubelet would leave it).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ys1000_dev.sandbox.executor import PodRun, PodSetupError, base_env, describe_exit, is_executable
from ys1000_dev.sandbox.informer import Informer, Retry

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.36.3"
HEARTBEAT_SECONDS = 10

PULL_FAILURES = ("*.invalid/*", "*:unpullable")  # image patterns whose pull fails
CRASH_MARKERS = ("ys1000-sandbox-crash",)  # in a container's command/args: it exits 1 at once
PULL_ERROR_SECONDS = 2.0  # how long ErrImagePull shows before the back-off (a kubelet's next sync)
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # the kubelet's image-pull and crash-loop back-off


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeAgent:
    """Registers ``node_names`` in one cluster and plays their kubelet."""

    def __init__(
        self,
        api: client.ApiClient,
        node_names: list[str],
        state_dir: Path,
        log_root: Path,
        log_port: int,
        pv_dir_of: Callable[[dict], Path | None],
        stop: threading.Event,
        pod_cidr: str = "10.244.0.0/16",
        pull_failures: tuple[str, ...] = PULL_FAILURES,
        crash_markers: tuple[str, ...] = CRASH_MARKERS,
    ):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.nodes = list(node_names)
        self.state_dir = state_dir
        self.log_root = log_root
        self.log_port = log_port
        self.pv_dir_of = pv_dir_of
        self.stop = stop
        self._ips = ipaddress.ip_network(pod_cidr).hosts()
        self._pod_ips: dict[str, str] = {}
        self._runs: dict[str, PodRun] = {}
        self.pull_failures = tuple(pull_failures)
        self.crash_markers = tuple(crash_markers)
        self._failing: dict[str, _Failing] = {}  # pod uid -> its simulated failure
        self._lock = threading.Lock()
        host = api.configuration.host.split("//", 1)[-1]
        api_host, _, api_port = host.rpartition(":")
        self._server_env = base_env(api_host, int(api_port or 443))

    # -- nodes ------------------------------------------------------------------------------
    def _node_status(self) -> dict:
        ts = now()
        cond = lambda t, s, r, m: {  # noqa: E731
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
        }
        return {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                cond("Ready", "True", "KubeletReady", "ys1000 sandbox node agent is posting ready status"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", ""),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "ys1000 sandbox",
                "kernelVersion": "",
                "containerRuntimeVersion": "ys1000-sandbox://0.1",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def register(self) -> None:
        for name in self.nodes:
            # InternalIP only: the API server dials the first preferred address type to reach the
            # kubelet (logs), and a Hostname address would send it to DNS for "<cluster>-node-1".
            status = self._node_status()
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "ys1000.io/sandbox": "true",
                    },
                },
                "status": status,
            }
            try:
                self.core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self._heartbeat(name)

    def _heartbeat(self, name: str) -> None:
        status = self._node_status()
        self.core.patch_node_status(name, {"status": status})
        lease = {
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        }
        try:
            self.coord.patch_namespaced_lease(name, "kube-node-lease", {"spec": lease["spec"]})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", lease)

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            for name in self.nodes:
                try:
                    self._heartbeat(name)
                except Exception as exc:
                    log.warning("heartbeat of %s failed: %s", name, exc)

    def start(self) -> None:
        self.register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        Informer(
            "pods",
            lambda **kw: self.core.list_pod_for_all_namespaces(**kw),
            self.on_pod,
            self.stop,
        ).start()

    def shutdown(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
            failing = list(self._failing.values())
            self._failing.clear()
        for f in failing:
            if f.timer is not None:
                f.timer.cancel()
        for run in runs:
            run.kill(grace=2)

    # -- pods -------------------------------------------------------------------------------
    def on_pod(self, event: str, pod: dict) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        if spec.get("nodeName") not in self.nodes:
            return
        uid = md["uid"]
        if event == "DELETED":
            self._stop_run(uid)
            self._forget_failure(uid)
            return
        if md.get("deletionTimestamp"):
            self._stop_run(uid)
            self._forget_failure(uid)
            try:
                self.core.delete_namespaced_pod(
                    md["name"],
                    md["namespace"],
                    grace_period_seconds=0,
                    body=client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
                )
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        if is_executable(pod):
            with self._lock:
                if uid in self._runs:
                    return
                run = PodRun(pod, self.state_dir / "pods" / uid, self.log_root, self.core, self._server_env)
                self._runs[uid] = run
            threading.Thread(target=self._execute, args=(run,), name=f"pod-{md['name']}", daemon=True).start()
        elif failures := self._failures_of(pod):
            self._start_failure(pod, failures)
        else:
            self._forget_failure(uid)  # e.g. its image was fixed in place: it runs now
            if not _is_running_ready(pod):
                self._patch_status(pod, self._running_status(pod))

    # -- simulated failures -----------------------------------------------------------------
    def _failures_of(self, pod: dict) -> dict[str, str]:
        """Container name -> "pull" | "crash" for the containers that fail by this agent's rules."""
        spec = pod.get("spec") or {}
        out: dict[str, str] = {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            words = [str(w) for w in [*(c.get("command") or []), *(c.get("args") or [])]]
            if any(fnmatch.fnmatchcase(c.get("image") or "", p) for p in self.pull_failures):
                out[c["name"]] = "pull"
            elif any(m in w for m in self.crash_markers for w in words):
                out[c["name"]] = "crash"
        return out

    def _start_failure(self, pod: dict, failures: dict[str, str]) -> None:
        uid = pod["metadata"]["uid"]
        signature = tuple(sorted(failures.items()))
        with self._lock:
            current = self._failing.get(uid)
            if current is not None and current.signature == signature:
                current.pod = pod  # its own timer moves it on: watch events change nothing
                return
            if current is not None and current.timer is not None:
                current.timer.cancel()
            failing = self._failing[uid] = _Failing(pod, signature, failures)
        self._failure_step(uid, failing)

    def _forget_failure(self, uid: str) -> None:
        with self._lock:
            failing = self._failing.pop(uid, None)
        if failing is not None and failing.timer is not None:
            failing.timer.cancel()

    def _failure_step(self, uid: str, failing: "_Failing") -> None:
        """Post the failure's next state (and its Events), then schedule the one after it."""
        with self._lock:
            if self._failing.get(uid) is not failing or self.stop.is_set():
                return  # deleted, or replaced by a newer spec
            step = failing.step
            failing.step += 1
            pod = failing.pod
        status, events, delay = self._failure_status(pod, failing.failures, step)
        self._patch_status(pod, status)
        for container, type_, reason, message in events:
            self._event(pod, failing, container, type_, reason, message)
        if delay is None:
            return
        with self._lock:
            if self._failing.get(uid) is failing:
                failing.timer = threading.Timer(delay, self._failure_step, args=(uid, failing))
                failing.timer.daemon = True
                failing.timer.start()

    def _failure_status(
        self, pod: dict, failures: dict[str, str], step: int
    ) -> tuple[dict, list[tuple[str, str, str, str]], float | None]:
        """The pod status at ``step`` of its failure, the Events to post, and the seconds to the next step.

        Image pulls alternate: even steps ErrImagePull (a pull attempt), odd steps ImagePullBackOff.
        A crashing container restarts once per step: restartCount is step + 1.
        """
        md, spec, ts = pod["metadata"], pod["spec"], now()
        uid, pod_ref = md["uid"], f"{md['name']}_{md['namespace']}({md['uid']})"
        never = spec.get("restartPolicy") == "Never"
        pulls = "pull" in failures.values()
        attempt = step // 2 if pulls else step
        backoff = min(BACKOFF_START * 2**attempt, BACKOFF_MAX)
        pulling = pulls and step % 2 == 0
        events: list[tuple[str, str, str, str]] = []

        def failed(c: dict, where: str) -> dict:
            name, image = c["name"], c.get("image", "")
            field_path = f"spec.{where}{{{name}}}"
            if failures[name] == "pull":
                error = (
                    f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                    f'failed to resolve reference "{image}": {image}: not found'
                )
                if pulling:
                    events.append((field_path, "Warning", "Failed", f'Failed to pull image "{image}": {error}'))
                    waiting = {"reason": "ErrImagePull", "message": error}
                else:
                    events.append((field_path, "Normal", "BackOff", f'Back-off pulling image "{image}"'))
                    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}": {error}'}
                return _container_status(c, {"waiting": waiting}, uid)
            crashed = {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts,
                "finishedAt": ts,
                "containerID": f"sandbox://{uid}/{name}",
            }
            if never:  # no restart: the container stays terminated
                return _container_status(c, {"terminated": crashed}, uid)
            events.append(
                (field_path, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod {pod_ref}")
            )
            waiting = {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {_go_duration(backoff)} restarting failed container={name} pod={pod_ref}",
            }
            return dict(
                _container_status(c, {"waiting": waiting}, uid),
                restartCount=step + 1,
                lastState={"terminated": crashed},
            )

        inits = spec.get("initContainers") or []
        containers = spec.get("containers") or []
        blocked = next((i for i, c in enumerate(inits) if c["name"] in failures), None)
        init_statuses, statuses = [], []
        for i, c in enumerate(inits):
            if blocked is None or i < blocked:
                done = {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}
                init_statuses.append(_container_status(c, {"terminated": done}, uid))
            elif i == blocked:
                init_statuses.append(failed(c, "initContainers"))
            else:
                init_statuses.append(_container_status(c, {"waiting": {"reason": "PodInitializing"}}, uid))
        if blocked is not None:
            statuses = [_container_status(c, {"waiting": {"reason": "PodInitializing"}}, uid) for c in containers]
            unready = [c["name"] for c in containers]
            phase = "Failed" if never and failures[inits[blocked]["name"]] == "crash" else "Pending"
        else:
            statuses = [
                failed(c, "containers")
                if c["name"] in failures
                else _container_status(c, {"running": {"startedAt": ts}}, uid, ready=True)
                for c in containers
            ]
            unready = [c["name"] for c in containers if c["name"] in failures]
            if any(failures.get(c["name"]) == "pull" for c in containers):
                phase = "Pending"  # a container that never started
            elif never and len(unready) == len(containers):
                phase = "Failed"
            else:
                phase = "Running"
        ip = self._pod_ip(uid)
        conditions = _conditions(ts, ready=False)
        for cond in conditions:
            if cond["type"] in ("ContainersReady", "Ready"):
                cond.update(
                    reason="ContainersNotReady", message=f"containers with unready status: [{' '.join(unready)}]"
                )
            elif cond["type"] == "Initialized" and blocked is not None:
                pending = " ".join(c["name"] for c in inits[blocked:])
                cond.update(
                    status="False",
                    reason="ContainersNotInitialized",
                    message=f"containers with incomplete status: [{pending}]",
                )
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": (pod.get("status") or {}).get("startTime") or ts,
            "conditions": conditions,
            "initContainerStatuses": init_statuses,
            "containerStatuses": statuses,
        }
        if phase == "Failed":
            return status, events, None
        return status, events, PULL_ERROR_SECONDS if pulling else backoff

    def _event(self, pod: dict, failing: "_Failing", field_path: str, type_: str, reason: str, message: str) -> None:
        """Post an Event like a kubelet: a repeat of the same one raises its count instead."""
        md, ts = pod["metadata"], now()
        key = (field_path, reason, message)
        try:
            if key in failing.events:
                name, count = failing.events[key]
                self.core.patch_namespaced_event(name, md["namespace"], {"count": count + 1, "lastTimestamp": ts})
                failing.events[key] = (name, count + 1)
                return
            name = f"{md['name']}.{time.time_ns():x}"
            node = pod["spec"].get("nodeName", "")
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": md["namespace"]},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": md["name"],
                    "namespace": md["namespace"],
                    "uid": md["uid"],
                    "resourceVersion": md.get("resourceVersion", ""),
                    "fieldPath": field_path,
                },
                "type": type_,
                "reason": reason,
                "message": message,
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet",
                "reportingInstance": node,
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "count": 1,
            }
            self.core.create_namespaced_event(md["namespace"], body)
            failing.events[key] = (name, 1)
        except ApiException as exc:  # e.g. the namespace is terminating: the Event does not matter then
            log.debug("event %s for pod %s/%s not posted: %s", reason, md["namespace"], md["name"], exc.reason)

    def _stop_run(self, uid: str) -> None:
        with self._lock:
            run = self._runs.get(uid)
        if run is not None:
            run.kill()

    def _pod_ip(self, uid: str) -> str:
        with self._lock:
            if uid not in self._pod_ips:
                self._pod_ips[uid] = str(next(self._ips))
            return self._pod_ips[uid]

    def _running_status(self, pod: dict, started: bool = True) -> dict:
        spec, uid, ts = pod["spec"], pod["metadata"]["uid"], now()
        ip = self._pod_ip(uid)
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": (pod.get("status") or {}).get("startTime") or ts,
            "conditions": _conditions(ts, ready=True),
            "initContainerStatuses": [
                _container_status(
                    c, {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}}, uid
                )
                for c in spec.get("initContainers") or []
            ],
            "containerStatuses": [
                _container_status(c, {"running": {"startedAt": ts}}, uid, ready=True)
                for c in spec.get("containers") or []
            ],
        }

    def _patch_status(self, pod: dict, status: dict) -> None:
        md = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(md["name"], md["namespace"], {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _execute(self, run: PodRun) -> None:
        pod, uid = run.pod, run.pod["metadata"]["uid"]
        try:
            results = self._run_containers(run)
        except PodSetupError as exc:
            log.info("pod %s/%s cannot run: %s", run.ns, run.name, exc)
            self._finish(pod, "Failed", exc.reason, str(exc), {})
        except Exception as exc:  # a bug here must not leave the pod Pending forever
            log.exception("executing pod %s/%s failed", run.ns, run.name)
            self._finish(pod, "Failed", "SandboxError", str(exc), {})
        else:
            ok = all(r["exitCode"] == 0 for r in results.values())
            self._finish(pod, "Succeeded" if ok else "Failed", "" if ok else "Error", "", results)
        finally:
            run.cleanup()
            with self._lock:
                self._runs.pop(uid, None)

    def _run_containers(self, run: PodRun) -> dict[str, dict]:
        deadline = 60.0
        waited = 0.0
        while True:  # volumes may still be binding when the pod is scheduled
            try:
                run.prepare_volumes(self.pv_dir_of)
                break
            except PodSetupError as exc:
                if exc.reason != "PVCNotBound" or waited >= deadline or run.killed:
                    raise
            self.stop.wait(0.5)
            waited += 0.5
        results: dict[str, dict] = {}
        for c in run.pod["spec"].get("initContainers") or []:
            results[c["name"]] = self._wait(run, c, run.start(c), now())
            if results[c["name"]]["exitCode"] != 0 or run.killed:
                return results
        self._patch_status(run.pod, self._running_status(run.pod))
        started = [(c, run.start(c), now()) for c in run.pod["spec"]["containers"]]
        for c, proc, ts in started:
            results[c["name"]] = self._wait(run, c, proc, ts)
        return results

    def _wait(self, run: PodRun, container: dict, proc, started_at: str) -> dict:
        code = proc.wait()
        return {
            "exitCode": code,
            "reason": "Killed" if run.killed else describe_exit(code),
            "startedAt": started_at,
            "finishedAt": now(),
        }

    def _finish(self, pod: dict, phase: str, reason: str, message: str, results: dict) -> None:
        spec, uid, ts = pod["spec"], pod["metadata"]["uid"], now()

        def status_of(c):
            r = results.get(c["name"]) or {
                "exitCode": 1,
                "reason": reason or "NotRun",
                "startedAt": ts,
                "finishedAt": ts,
            }
            return _container_status(c, {"terminated": dict(r, containerID=f"sandbox://{uid}/{c['name']}")}, uid)

        status = {
            "phase": phase,
            "reason": reason or None,
            "message": message or None,
            "hostIP": "127.0.0.1",
            "podIP": self._pod_ip(uid),
            "startTime": (pod.get("status") or {}).get("startTime") or ts,
            "conditions": _conditions(ts, ready=False, reason="PodCompleted"),
            "initContainerStatuses": [status_of(c) for c in spec.get("initContainers") or []],
            "containerStatuses": [status_of(c) for c in spec.get("containers") or []],
        }
        self._patch_status(pod, status)


@dataclass
class _Failing:
    """One pod's simulated failure: the spec it follows, how far it got, the Events it posted."""

    pod: dict
    signature: tuple
    failures: dict[str, str]  # container name -> "pull" | "crash"
    step: int = 0
    timer: threading.Timer | None = None
    events: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)


def _go_duration(seconds: float) -> str:
    """A duration as a kubelet prints it (Go's time.Duration): 10s, 1m20s, 5m0s."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _conditions(ts: str, ready: bool, reason: str | None = None) -> list[dict]:
    val = "True" if ready else "False"
    out = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
        {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
    ]
    for t in ("ContainersReady", "Ready"):
        c = {"type": t, "status": val, "lastTransitionTime": ts}
        if reason:
            c["reason"] = reason
        out.append(c)
    return out


def _container_status(c: dict, state: dict, uid: str, ready: bool = False) -> dict:
    return {
        "name": c["name"],
        "image": c.get("image", ""),
        "imageID": "",
        "containerID": f"sandbox://{uid}/{c['name']}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _is_running_ready(pod: dict) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


__all__ = ["NodeAgent", "Retry"]
