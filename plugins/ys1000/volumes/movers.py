"""Mover Jobs: ``python -m ys1000.mover`` next to a volume, inside the protected cluster.

This module only builds a mover's manifests and reads its result; ``ys1000.kube.jobs`` runs it.
Each mover is a Job with one pod that mounts the PVC (read-only for backups), runs on the node of
the pod that uses the volume (so ReadWriteOnce volumes can be mounted), and takes the restic
repository credentials from a Secret created for this one mover and deleted with it. The result
is the last ``{"ys1000": "result"}`` line of the pod's log. The Job's name derives from the run,
the PVC and the purpose, so a retried task finds its still-running mover again.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from ys1000.kube import Kube
from ys1000.kube import jobs
from ys1000.kube.jobs import COMPONENT_LABEL, RUN_LABEL, JobRun, JobState, label_value

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "ys1000/mover:0.1.0"
COMPONENT = "mover"


class MoverError(RuntimeError):
    """A mover Job failed; the message carries the mover's own error when it reported one."""


@dataclass
class MoverSpec:
    namespace: str
    pvc: str
    args: list[str]  # after `python -m ys1000.mover`
    env: dict[str, str]  # secret: goes into the per-mover Secret
    run_id: str  # labels every object of one task run, for cleanup
    purpose: str  # backup | restore | export | sync
    node: str | None = None
    read_only: bool = True
    image: str = DEFAULT_IMAGE
    deadline_seconds: int = 6 * 3600
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return jobs.job_name(self.purpose, self.pvc, self.run_id, self.namespace)

    @property
    def timeout(self) -> float:
        """How long a wait for it may take: the Job's own deadline, then a minute's grace."""
        return self.deadline_seconds + 60


def mover_labels(spec: MoverSpec) -> dict[str, str]:
    return {
        **spec.labels,
        COMPONENT_LABEL: COMPONENT,
        RUN_LABEL: label_value(spec.run_id),
        "ys1000.io/pvc": spec.pvc[:63],
        "ys1000.io/purpose": spec.purpose,
    }


def mover_job(spec: MoverSpec) -> JobRun:
    """The mover's Job and its Secret (restic credentials, deleted with the Job)."""
    labels = mover_labels(spec)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec.name, "labels": labels},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in spec.env.items()},
    }
    pod_spec: dict = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "mover",
                "image": spec.image,
                "command": ["python", "-m", "ys1000.mover", *spec.args],
                "envFrom": [{"secretRef": {"name": spec.name}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": spec.read_only}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "2Gi"}},
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": spec.pvc, "readOnly": spec.read_only}}],
        "automountServiceAccountToken": False,
    }
    if spec.node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": spec.node}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # the task's retry re-runs the mover; a half-run restic is harmless
            "activeDeadlineSeconds": spec.deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    return JobRun(spec.namespace, job, secret=secret)


def mover_result(st: JobState, what: str) -> dict:
    """The mover's result line, or ``MoverError`` with the best reason there is."""
    result = st.line("result")
    if st.succeeded and result and result.get("ok"):
        return result
    raise MoverError(jobs.describe(st, what))


def describe(spec: MoverSpec) -> str:
    return f"mover {spec.purpose} of {spec.namespace}/{spec.pvc}"


class MoverRunner:
    """Runs mover Jobs in one cluster and waits in place (the CLI, migrations, benchmarks), at
    most ``max_concurrent`` at a time; ``cancel_all`` stops the waits and deletes the Jobs."""

    def __init__(
        self,
        kube: Kube,
        max_concurrent: int = 2,
        progress_every: float = 2.0,
        on_progress: Callable[[MoverSpec, dict], None] | None = None,
    ):
        self.kube = kube
        self.group = jobs.JobGroup(kube, max_concurrent)
        self.progress_every = progress_every  # also the longest a cancel waits to be noticed
        self.on_progress = on_progress or (lambda spec, p: None)

    @property
    def cancel(self) -> threading.Event:
        return self.group.cancel

    def run(self, spec: MoverSpec) -> dict:
        """Start (or reattach to) the mover, wait for its end, delete it; raise ``MoverError``."""
        st = self.group.run(
            mover_job(spec),
            timeout=spec.timeout,
            progress_every=self.progress_every,
            on_progress=lambda p: self.on_progress(spec, p),
        )
        return mover_result(st, describe(spec))

    def cancel_all(self) -> list[str]:
        return self.group.cancel_all()


def cleanup_run(kube: Kube, namespaces: list[str], run_id: str) -> int:
    """Delete every mover Job and Secret labelled with ``run_id`` (a killed task's leftovers)."""
    return len(jobs.delete_run(kube, namespaces, run_id, component=COMPONENT))
