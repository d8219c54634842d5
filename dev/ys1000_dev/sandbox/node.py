"""The node side of a sandbox cluster: Nodes that stay Ready, and a kubelet-lite for their pods.

Ordinary pods scheduled to a sandbox Node are marked Running/Ready (nothing runs: there are no
containers here), which is what controllers and the product need to see. The product's mover and
hook pods (``ys1000.io/component`` = ``mover`` | ``hook``) and test pods labelled
``ys1000.io/executable=true`` are really executed by ``executor.PodRun`` and end Succeeded or
Failed with their exit codes, so Jobs complete through the real job controller. A pod being
deleted is stopped and then removed with grace period 0, the kubelet's last step, without which
namespace deletion never finishes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from pathlib import Path
from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ys1000_dev.sandbox.executor import PodRun, PodSetupError, base_env, describe_exit, is_executable
from ys1000_dev.sandbox.informer import Informer, Retry

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.36.3"
HEARTBEAT_SECONDS = 10


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
            return
        if md.get("deletionTimestamp"):
            self._stop_run(uid)
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
        elif not _is_running_ready(pod):
            self._patch_status(pod, self._running_status(pod))

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
