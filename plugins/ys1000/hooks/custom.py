"""Custom hooks (F27): a plan's PreBackup/PostBackup/PreRestore/PostRestore hooks as Jobs.

Each hook runs as one Job in its cluster (source or target), namespace and service account:

- ``type: image`` — the hook's image with its ``command``/``args`` and ``env``;
- ``type: ansible`` — the playbook (inline ``playbook`` text, or ``playbook_file`` under
  ``include/hooks/``) goes into a ConfigMap mounted at ``/hooks``; the container runs
  ``ansible-playbook -i localhost, -c local /hooks/playbook.yml`` (plus ``args``) in the hook's
  image (the ansible runner by default). Other files of the playbook's folder (templates, vars)
  are mounted next to it.

Both get the ServiceAccount's credentials at ``/var/run/secrets/kubernetes.io/serviceaccount``
(a projected token, the cluster CA and the namespace — what a kubelet mounts; path also in
``$YS1000_SERVICEACCOUNT_DIR``), so a hook can call the API server with the RBAC its service
account has. ``activeDeadlineSeconds`` is the hook's ``timeout``; its output (the pod log) is
returned so the task log shows it; the Job and ConfigMap are deleted afterwards. ``begin`` starts
the Job and returns a ``Wait`` (``ys1000.volumes.steps``) that the DAG task defers to the
triggerer; ``finish`` reads the result; ``run`` does both, waiting in place.
``on_failure: fail`` raises ``HookFailed``; ``continue`` returns a failed ``HookResult``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ys1000.hooks.jobs import (
    JOBS,
    SA_DIR,
    SA_DIR_ENV,
    cleanup_run,
    hook_labels,
    job_failure,
    job_name,
    service_account_volume,
)
from ys1000.kube import Kube, KubeError, jobs
from ys1000.volumes.steps import Wait, in_cluster, wait_in_place

log = logging.getLogger(__name__)

HOOKS_DIR_ENV = "YS1000_HOOKS_DIR"
PLAYBOOK_MOUNT = "/hooks"
ANSIBLE_COMMAND = [
    "ansible-playbook",
    "-i",
    "localhost,",
    "-c",
    "local",
    # the runner's own Python (which has the modules the playbook uses)
    "-e",
    "ansible_python_interpreter={{ ansible_playbook_python }}",
]
MAX_CONFIGMAP_BYTES = 900 * 1024


def include_hooks_dir() -> Path:
    """``include/hooks/`` of the installation: ``$YS1000_HOOKS_DIR``, else next to the config dir
    (``ys1000.config.paths.hooks_dir``)."""
    from ys1000.config.paths import hooks_dir

    return hooks_dir()


class HookError(RuntimeError):
    """A hook could not run or failed."""


class HookFailed(HookError):
    """A hook with ``on_failure: fail`` failed; ``result`` has its output."""

    def __init__(self, message: str, result: "HookResult"):
        super().__init__(message)
        self.result = result


@dataclass
class HookResult:
    name: str
    phase: str
    cluster: str
    namespace: str
    ok: bool
    exit_code: int | None
    output: str
    seconds: float
    error: str | None = None
    on_failure: str = "fail"

    def to_dict(self, output_chars: int = 2000) -> dict:
        return {
            "name": self.name,
            "phase": self.phase,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "on_failure": self.on_failure,
            "output_tail": self.output[-output_chars:],
        }


def _get(spec: Any, name: str, default: Any = None) -> Any:
    return spec.get(name, default) if isinstance(spec, dict) else getattr(spec, name, default)


def _seconds(value: Any) -> int:
    return int(value.total_seconds() if hasattr(value, "total_seconds") else float(value))


def playbook_files(hook: Any, hooks_dir: Path | None = None) -> dict[str, str]:
    """ConfigMap data of an ansible hook: ``playbook.yml`` + the files beside a playbook_file."""
    if _get(hook, "playbook") is not None:
        return {"playbook.yml": _get(hook, "playbook")}
    base = (hooks_dir or include_hooks_dir()).resolve()
    path = (base / _get(hook, "playbook_file")).resolve()
    if base not in path.parents or not path.is_file():
        raise HookError(
            f"hook {_get(hook, 'name')}: playbook_file {_get(hook, 'playbook_file')!r} is not a file under {base}"
        )
    data = {"playbook.yml": path.read_text()}
    for extra in sorted(path.parent.iterdir()):  # templates/vars next to it (flat: ConfigMap keys)
        if (
            extra.is_file()
            and extra != path
            and extra.suffix in (".yml", ".yaml", ".j2", ".json", ".sql", ".py", ".sh", ".cfg", ".txt")
        ):
            data[extra.name] = extra.read_text()
    if sum(len(v.encode()) for v in data.values()) > MAX_CONFIGMAP_BYTES:
        raise HookError(f"hook {_get(hook, 'name')}: the files of {path.parent} exceed a ConfigMap's 1 MiB")
    return data


def job_manifests(hook: Any, run_id: str, hooks_dir: Path | None = None) -> tuple[dict, dict | None]:
    """(Job, ConfigMap or None) of one hook."""
    name, ns = _get(hook, "name"), _get(hook, "namespace")
    jname = job_name("hook", name, run_id, ns)
    labels = hook_labels("custom", run_id, name)
    labels["ys1000.io/hook-phase"] = _get(hook, "phase")
    env = [{"name": k, "value": str(v)} for k, v in (_get(hook, "env") or {}).items()]
    # values from Secrets of the hook's namespace (drill checks' database credentials): never in the spec
    env += [
        {"name": e["name"], "valueFrom": {"secretKeyRef": {"name": e["secret"], "key": e["key"]}}}
        for e in _get(hook, "secret_env") or []
    ]
    env += [
        {"name": SA_DIR_ENV, "value": SA_DIR},
        {"name": "YS1000_HOOK_NAME", "value": name},
        {"name": "YS1000_HOOK_PHASE", "value": _get(hook, "phase")},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    mounts = [{"name": "ys1000-sa", "mountPath": SA_DIR, "readOnly": True}]
    volumes = [service_account_volume()]
    configmap = None
    if _get(hook, "type") == "ansible":
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": jname, "labels": labels},
            "data": playbook_files(hook, hooks_dir),
        }
        if _get(hook, "command"):  # a custom entry point; it finds the playbook under /hooks
            command, args = list(_get(hook, "command")), list(_get(hook, "args") or [])
        else:
            command = list(ANSIBLE_COMMAND)
            args = [f"{PLAYBOOK_MOUNT}/playbook.yml", *(_get(hook, "args") or [])]
        env += [
            {"name": "ANSIBLE_NOCOLOR", "value": "1"},
            {"name": "ANSIBLE_RETRY_FILES_ENABLED", "value": "0"},
            {"name": "ANSIBLE_LOCALHOST_WARNING", "value": "0"},
            {"name": "ANSIBLE_INVENTORY_UNPARSED_WARNING", "value": "0"},
            {"name": "ANSIBLE_LOCAL_TEMP", "value": "/tmp/ansible-local"},
            {"name": "ANSIBLE_REMOTE_TEMP", "value": "/tmp/ansible-remote"},
        ]
        mounts.append({"name": "playbook", "mountPath": PLAYBOOK_MOUNT, "readOnly": True})
        volumes.append({"name": "playbook", "configMap": {"name": jname}})
    else:
        command, args = list(_get(hook, "command") or []), list(_get(hook, "args") or [])
    container: dict = {
        "name": "hook",
        "image": _get(hook, "image"),
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
    }
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": jname, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a hook runs once per task try; the task's retry re-runs it
            "activeDeadlineSeconds": max(1, _seconds(_get(hook, "timeout", 600))),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": _get(hook, "service_account", "default"),
                    "automountServiceAccountToken": False,  # mounted explicitly above
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return job, configmap


class HookRunner:
    """Runs custom hooks; ``kube_for(cluster_role)`` gives the Kube of ``source``/``target``."""

    def __init__(
        self,
        kube_for: Callable[[str], Kube] | dict[str, Kube],
        run_id: str,
        *,
        hooks_dir: Path | None = None,
        poll: float = 0.5,
        log_fn: Callable[[str], None] | None = None,
    ):
        self.kube_for = kube_for.__getitem__ if isinstance(kube_for, dict) else kube_for
        self.run_id, self.hooks_dir, self.poll = run_id, hooks_dir, poll
        self.log = log_fn or log.info
        self.cancel = threading.Event()
        self._active: dict[tuple[str, str, str], Kube] = {}
        self._lock = threading.Lock()

    def run_phase(self, hooks: list[Any], phase: str) -> list[HookResult]:
        """The hooks of ``phase`` in plan order; stops at the first failing ``fail`` hook."""
        results = []
        for hook in hooks:
            if _get(hook, "phase") == phase:
                results.append(self.run(hook))
        return results

    def run(self, hook: Any) -> HookResult:
        """Run one hook to its end, waiting here (the CLI, migrations, tests)."""
        step = self.begin(hook)
        if isinstance(step, HookResult):
            return step
        try:
            event = wait_in_place(self.kube_for(step.what["cluster"]), step.what, cancel=self.cancel)
        except BaseException:
            self._forget(step.state, delete=True)
            raise
        return self.finish(step.state, event)

    def begin(self, hook: Any) -> "Wait | HookResult":
        """Start the hook's Job: a ``Wait`` for its end (``kind: hook``; ``finish`` takes the
        event), or the result at once when the Job could not be made."""
        if self.cancel.is_set():
            raise InterruptedError("cancelled before the hook started")
        cluster = _get(hook, "cluster") or ("source" if _get(hook, "phase", "").endswith("Backup") else "target")
        name, ns, policy = _get(hook, "name"), _get(hook, "namespace"), _get(hook, "on_failure", "fail")
        timeout = max(1, _seconds(_get(hook, "timeout", 600)))
        failed = lambda error: self._finish(  # noqa: E731
            HookResult(name, _get(hook, "phase"), cluster, ns, False, None, "", 0.0, error, policy)
        )
        try:
            job, cm = job_manifests(hook, self.run_id, self.hooks_dir)
        except HookError as exc:
            return failed(str(exc))
        jname = job["metadata"]["name"]
        kube = self.kube_for(cluster)
        with self._lock:
            self._active[(cluster, ns, jname)] = kube
        self.log(
            f"hook {name} ({_get(hook, 'type')}, {_get(hook, 'phase')}) starting as Job {ns}/{jname} "
            f"in cluster {cluster}, service account {_get(hook, 'service_account', 'default')}, "
            f"timeout {timeout}s, on failure: {policy}"
        )
        try:
            # a leftover of an earlier try of this run is replaced: a hook runs once per try
            jobs.start(kube, jobs.JobRun(ns, job, config_map=cm), reattach=False)
        except KubeError as exc:
            self._forget({"cluster": cluster, "namespace": ns, "job": jname}, delete=True)
            return failed(f"cannot run the hook Job: {exc}")
        state = {
            "hook": name,
            "phase": _get(hook, "phase"),
            "cluster": cluster,
            "namespace": ns,
            "job": jname,
            "timeout": timeout,
            "on_failure": policy,
            "started": time.time(),
        }
        what = {"kind": "hook", "namespace": ns, "name": jname, "timeout": timeout + 30, "label": f"hook {name}"}
        return in_cluster(Wait(what, state, {"jobs": [[ns, jname]]}), cluster)  # type: ignore[return-value]

    def finish(self, state: dict, event: dict) -> HookResult:
        """The hook's result once its wait ended (``event`` from ``check``, a trigger or a
        timeout); its Job and ConfigMap are deleted. ``on_failure: fail`` raises ``HookFailed``."""
        kube = self.kube_for(state["cluster"])
        ns, jname = state["namespace"], state["job"]
        try:
            if event.get("status") in ("success", "failed") and "did not finish within" not in str(event.get("reason")):
                ok, code, output, error = self._outcome(kube, ns, jname, state)
            else:  # the wait timed out, or the trigger could not look (an ``error`` event)
                st = jobs.state(kube, ns, jname)
                timeout = state["timeout"]
                error = f"timed out after {timeout}s" if event.get("status") != "error" else event.get("reason")
                ok, code, output = False, st.exit_code, st.log
        except KubeError as exc:
            ok, code, output, error = False, None, "", f"cannot read the hook Job: {exc}"
        finally:
            self._forget(state, delete=True)
        return self._finish(
            HookResult(
                state["hook"],
                state["phase"],
                state["cluster"],
                ns,
                ok,
                code,
                output,
                time.time() - state["started"],
                error,
                state["on_failure"],
            )
        )

    def _forget(self, state: dict, *, delete: bool) -> None:
        key = (state["cluster"], state["namespace"], state["job"])
        with self._lock:
            kube = self._active.pop(key, None)
        if delete:
            self._delete(kube or self.kube_for(state["cluster"]), state["namespace"], state["job"])

    def _finish(self, result: HookResult) -> HookResult:
        if result.ok:
            self.log(f"hook {result.name} succeeded in {result.seconds:.1f}s")
            return result
        msg = f"hook {result.name} ({result.phase}) failed: {result.error}"
        if result.on_failure == "fail":
            raise HookFailed(msg + "; its policy is on_failure: fail", result)
        self.log(msg + "; its policy is on_failure: continue, so the job goes on")
        return result

    def _outcome(self, kube: Kube, ns: str, job: str, state: dict) -> tuple[bool, int | None, str, str | None]:
        st = jobs.state(kube, ns, job)
        if st.succeeded:
            return True, 0, st.log, None
        timeout = state["timeout"]
        why = job_failure(kube.get_or_none(JOBS.path(ns, job)))
        # the Job's Failed condition (its reason) may lag its pod; a pod ended by a signal may be
        # the Job's deadline killing it, which the condition says
        for _ in range(10):
            if why or (st.exit_code is not None and st.exit_code >= 0):
                break
            time.sleep(0.3)
            why = job_failure(kube.get_or_none(JOBS.path(ns, job)))
        if "DeadlineExceeded" in why or (
            (st.exit_code is None or st.exit_code < 0) and time.time() - state["started"] >= timeout
        ):
            return False, st.exit_code, st.log, f"timed out after {timeout}s (activeDeadlineSeconds)"
        if st.exit_code is not None:
            return False, st.exit_code, st.log, f"exit code {st.exit_code}"
        return False, None, st.log, why or st.reason or "the pod failed"

    def _delete(self, kube: Kube, ns: str, name: str) -> None:
        jobs.delete(kube, ns, name)

    def cancel_all(self) -> list[str]:
        """Stop waiting and delete every hook Job/ConfigMap this runner created (``on_kill``)."""
        self.cancel.set()
        with self._lock:
            active = list(self._active.items())
        for (_, ns, name), kube in active:
            self._delete(kube, ns, name)
        return [f"{c}:{ns}/{name}" for (c, ns, name), _ in active]

    def cleanup(self, cluster: str, namespaces: list[str]) -> list[str]:
        return cleanup_run(self.kube_for(cluster), namespaces, self.run_id, kind="custom")
