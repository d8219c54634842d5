"""Run the containers of an executable pod as local processes.

This is the sandbox's stand-in for a container runtime (none can run on this machine), used only
for the product's mover and hook pods — recognised by their own label ``ys1000.io/component`` =
``mover`` | ``hook`` — and for pods of test-only templates labelled ``ys1000.io/executable=true``
(the product's manifests carry no sandbox label). What it does and does not do, compared to a
kubelet:

* the image is not pulled or used: each container needs an explicit ``command`` (+ ``args``),
  which runs on this host with the PATH of the sandbox (the project's venv first, so
  ``python -m ys1000...`` is the project's Python);
* volumes are real directories: a PVC mount is the directory behind its PV, ConfigMap, Secret,
  downward-API and projected volumes are files written for the pod, emptyDir is a fresh dir;
* there is no mount namespace, so each ``mountPath`` (and ``subPath``) is mapped by rewriting
  that path wherever it appears as a path in the command, args, env values and workingDir
  (``/data/f`` → ``<pv dir>/f``); ``readOnly`` is not enforced;
* init containers run first, in order; then the containers run side by side; stdout and stderr
  go to a log file per container, served to ``kubectl logs`` by ``LogServer``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ys1000_dev.sandbox.logserver import log_path

log = logging.getLogger(__name__)

COMPONENT_LABEL = "ys1000.io/component"  # the product's own label on its Jobs' pods
EXECUTED_COMPONENTS = frozenset({"mover", "hook"})
EXECUTABLE_LABEL = "ys1000.io/executable"  # test-only pod templates (e.g. Airflow worker pods in a test)


class PodSetupError(Exception):
    """The pod cannot run (missing command, volume, secret key ...): it fails with this reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def is_executable(pod: dict) -> bool:
    """Whether the sandbox runs this pod's containers: the product's mover and hook pods, and
    test pods labelled ``ys1000.io/executable=true``; every other pod is only marked Running."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT_LABEL) in EXECUTED_COMPONENTS or labels.get(EXECUTABLE_LABEL) == "true"


@dataclass
class ContainerResult:
    name: str
    exit_code: int
    reason: str
    started_at: str
    finished_at: str


@dataclass
class PodRun:
    """One execution of one pod: its volume directories and running processes."""

    pod: dict
    work_dir: Path
    log_root: Path
    core: client.CoreV1Api
    server_env: dict[str, str]
    volumes: dict[str, Path] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    killed: bool = False

    @property
    def ns(self) -> str:
        return self.pod["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    # -- volumes ----------------------------------------------------------------------------
    def prepare_volumes(self, pv_dir_of) -> None:
        """Give every pod volume a directory; ``pv_dir_of(pv_dict)`` maps a PV to its directory."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = self.work_dir / "volumes" / name
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                pvc = self._read(self.core.read_namespaced_persistent_volume_claim, claim)
                pv_name = (pvc.get("spec") or {}).get("volumeName")
                if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
                    raise PodSetupError("PVCNotBound", f"PVC {claim} is not bound yet")
                pv = client.ApiClient().sanitize_for_serialization(self.core.read_persistent_volume(pv_name))
                path = pv_dir_of(pv)
                if path is None:
                    raise PodSetupError("VolumeUnsupported", f"PV {pv_name} has no local directory")
                self.volumes[name] = path
            elif "hostPath" in vol:
                self.volumes[name] = Path(vol["hostPath"]["path"])
            elif "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
                self.volumes[name] = target
            elif "configMap" in vol or "secret" in vol or "downwardAPI" in vol or "projected" in vol:
                target.mkdir(parents=True, exist_ok=True)
                sources = vol["projected"].get("sources", []) if "projected" in vol else [vol]
                for src in sources:
                    self._write_source(src, target)
                self.volumes[name] = target
            else:
                raise PodSetupError("VolumeUnsupported", f"volume {name}: kind {sorted(vol)} is not supported")

    def _read(self, fn, name: str) -> dict:
        try:
            return client.ApiClient().sanitize_for_serialization(fn(name, self.ns))
        except ApiException as exc:
            if exc.status == 404:
                raise PodSetupError("NotFound", f"{fn.__name__.split('_')[-1]} {name} not found") from exc
            raise

    def _write_source(self, src: dict, target: Path) -> None:
        if "configMap" in src or "secret" in src:
            is_secret = "secret" in src
            ref = src["secret"] if is_secret else src["configMap"]
            obj_name = ref.get("secretName") or ref.get("name")
            try:
                obj = self._read(
                    self.core.read_namespaced_secret if is_secret else self.core.read_namespaced_config_map,
                    obj_name,
                )
            except PodSetupError:
                if ref.get("optional"):
                    return
                raise
            data = (
                {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                if is_secret
                else {
                    **{k: v.encode() for k, v in (obj.get("data") or {}).items()},
                    **{k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()},
                }
            )
            items = ref.get("items")
            mapping = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
            for key, rel in mapping.items():
                if key not in data:
                    raise PodSetupError("KeyMissing", f"{obj_name} has no key {key}")
                _write_file(target / rel, data[key])
        elif "downwardAPI" in src:
            for item in src["downwardAPI"].get("items", []):
                value = _field_value(self.pod, item.get("fieldRef", {}).get("fieldPath", ""))
                _write_file(target / item["path"], value.encode())
        elif "serviceAccountToken" in src:
            sa = self.pod["spec"].get("serviceAccountName") or "default"
            body = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[src["serviceAccountToken"]["audience"]]
                    if src["serviceAccountToken"].get("audience")
                    else [],
                    expiration_seconds=src["serviceAccountToken"].get("expirationSeconds", 3600),
                )
            )
            token = self.core.create_namespaced_service_account_token(sa, self.ns, body)
            _write_file(target / src["serviceAccountToken"]["path"], token.status.token.encode())

    # -- containers -------------------------------------------------------------------------
    def mounts_of(self, container: dict) -> list[tuple[str, Path]]:
        out = []
        for m in container.get("volumeMounts") or []:
            host = self.volumes.get(m["name"])
            if host is None:
                raise PodSetupError("VolumeMissing", f"mount {m['mountPath']}: no volume {m['name']}")
            if m.get("subPath"):
                host = host / m["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            out.append((m["mountPath"].rstrip("/") or "/", host))
        return out

    def env_of(self, container: dict) -> dict[str, str]:
        env = dict(self.server_env)
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                obj = self._read(self.core.read_namespaced_config_map, src["configMapRef"]["name"])
                env.update({prefix + k: v for k, v in (obj.get("data") or {}).items()})
            if "secretRef" in src:
                obj = self._read(self.core.read_namespaced_secret, src["secretRef"]["name"])
                env.update({prefix + k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
            elif "valueFrom" in item:
                vf = item["valueFrom"]
                if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                    is_secret = "secretKeyRef" in vf
                    ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
                    obj = self._read(
                        self.core.read_namespaced_secret if is_secret else self.core.read_namespaced_config_map,
                        ref["name"],
                    )
                    data = obj.get("data") or {}
                    if ref["key"] not in data:
                        if ref.get("optional"):
                            continue
                        raise PodSetupError("KeyMissing", f"env {item['name']}: {ref['name']} has no key {ref['key']}")
                    value = data[ref["key"]]
                    env[item["name"]] = base64.b64decode(value).decode() if is_secret else value
                elif "fieldRef" in vf:
                    env[item["name"]] = _field_value(self.pod, vf["fieldRef"]["fieldPath"])
        return env

    def start(self, container: dict) -> subprocess.Popen:
        name = container["name"]
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not container.get("command"):
            raise PodSetupError(
                "NoCommand",
                f"container {name}: the sandbox runs no images, so it needs an explicit command",
            )
        mounts = self.mounts_of(container)
        env = {k: rewrite_paths(v, mounts) for k, v in self.env_of(container).items()}
        argv = [rewrite_paths(_expand(a, env), mounts) for a in argv]
        cwd = rewrite_paths(container["workingDir"], mounts) if container.get("workingDir") else None
        if cwd is None or not Path(cwd).is_dir():
            cwd = str(self.work_dir)
        out = log_path(self.log_root, self.ns, self.name, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a kill takes its children too
            )
        self.procs[name] = proc
        return proc

    def kill(self, grace: float = 5.0) -> None:
        self.killed = True
        for proc in list(self.procs.values()):
            _killpg(proc, signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _killpg(proc, signal.SIGKILL)

    def cleanup(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def rewrite_paths(value: str, mounts: list[tuple[str, Path]]) -> str:
    """Replace each mount path, where it stands as a whole path prefix, by its host directory."""
    paths = sorted((m for m in mounts if m[0] != "/"), key=lambda m: len(m[0]), reverse=True)
    if not paths or not value:
        return value
    table = {mp: str(host) for mp, host in paths}
    pattern = re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(mp) for mp, _ in paths) + r")(?=/|$|[^\w.\-])")
    return pattern.sub(lambda m: table[m.group(1)], value)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in env values, command and args (``$$`` escapes)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def _field_value(pod: dict, path: str) -> str:
    md, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get(source) or {}).items()))
        m = re.fullmatch(re.escape(prefix) + r"\['(.+)'\]", path)
        if m:
            return (md.get(source) or {}).get(m.group(1), "")
    return ""


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def base_env(api_host: str, api_port: int) -> dict[str, str]:
    """What every executed container starts with: this host's PATH (venv first) and the API."""
    # the project's venv and bin/ (restic) first: what a mover image would have
    first = [str(Path(sys.executable).parent), str(Path(__file__).resolve().parents[3] / "bin")]
    rest = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":") if p not in first]
    return {
        "PATH": ":".join(first + rest),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
    }


def describe_exit(code: int) -> str:
    if code == 0:
        return "Completed"
    if code < 0:
        return f"Killed by signal {-code}"
    return "Error"


__all__: list[Any] = [
    "PodRun",
    "PodSetupError",
    "ContainerResult",
    "is_executable",
    "rewrite_paths",
    "base_env",
    "EXECUTABLE_LABEL",
]
