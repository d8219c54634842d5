"""Triggers: the long waits of ys1000 tasks, run in the triggerer so no worker slot sleeps.

``VolumeWaitTrigger`` waits for what a volume step waits for (``ys1000.volumes.steps``): a mover
Job's end, a CSI snapshot becoming ready, a temporary PVC binding — and for a custom hook's Job
(``kind: hook``), whose wait has the same shape. Shaped like the
cncf.kubernetes provider's job and pod triggers: it serialises plain kwargs (the cluster's name,
the config dir, what to wait for, what a cancel deletes), yields exactly one ``TriggerEvent``
with a ``status`` (``success`` | ``failed`` | ``error``), and turns every exception into an
``error`` event. The Kubernetes calls are the engine's blocking ones, run in a thread.

Marking a deferred task failed or cancelled calls ``on_kill`` (Airflow ≥ 3.3): it deletes the
step's Jobs (with their Secrets) and temporary PVCs, as a running task's ``on_kill`` would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def kube_for(cluster: str, config_dir: str | None):
    """The cluster's client, from its Airflow connection (as in the task)."""
    from pathlib import Path

    from ys1000.airflow.connections import kube_for_cluster
    from ys1000.config import default_config_dir, load_config

    config = load_config(Path(config_dir) if config_dir else default_config_dir())
    return kube_for_cluster(cluster, config.clusters[cluster])


#: The earliest a trigger fires after its task deferred (seconds). Airflow 3.3's scheduler fails a
#: resumed task (state mismatch → up_for_retry, its worker killed) when the executor's "success"
#: event of the workload that deferred is processed only after the resumed workload is already
#: running; that happens when a wait ends within seconds (a snapshot ready, a PVC bound, a mover
#: with nothing new), the scheduler requeues the task at once and the deferring worker's exit is
#: reported late (seen 6 s late on a busy machine). Holding the event back this long lets that
#: report arrive first; it costs fast waits a few seconds and long ones nothing.
MIN_WAIT = 15.0


class VolumeWaitTrigger(BaseTrigger):
    """Wait for ``what`` in ``cluster``; ``deadline`` and ``not_before`` (epoch seconds) survive a
    triggerer restart."""

    def __init__(
        self,
        *,
        cluster: str,
        config_dir: str | None,
        what: dict[str, Any],
        cleanup: dict[str, list],
        state: dict[str, Any] | None = None,
        deadline: float | None = None,
        poll_interval: float = 2.0,
        progress_every: float = 15.0,
        not_before: float | None = None,
    ):
        super().__init__()
        self.cluster = cluster
        self.state = state or {}  # the step's state, handed back in the event (resume needs it)
        self.config_dir = config_dir
        self.what = what
        self.cleanup_spec = cleanup  # not `cleanup`: BaseTrigger.cleanup() is called on removal
        self.deadline = deadline if deadline is not None else time.time() + float(what["timeout"])
        self.poll_interval = poll_interval
        self.progress_every = progress_every
        # made when the task defers: its event waits until then (see MIN_WAIT)
        self.not_before = not_before if not_before is not None else time.time() + MIN_WAIT

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ys1000.airflow.triggers.VolumeWaitTrigger",
            {
                "cluster": self.cluster,
                "config_dir": self.config_dir,
                "what": self.what,
                "cleanup": self.cleanup_spec,
                "state": self.state,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "progress_every": self.progress_every,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ys1000.volumes.steps import check, progress_of, timed_out

        what = self.what
        label = what.get("label") or f"{what['kind']} {what['namespace']}/{what['name']}"
        try:
            kube = await asyncio.to_thread(kube_for, self.cluster, self.config_dir)
            self.log.info("waiting for %s in cluster %s", label, self.cluster)
            last_progress = 0.0
            while True:
                event = await asyncio.to_thread(check, kube, what)
                if event is not None:
                    # the deferring worker's exit is reported first (only a triggerer sets the
                    # task instance; dag.test runs triggers inline, with no executor to race)
                    if self.task_instance is not None and (hold := self.not_before - time.time()) > 0:
                        await asyncio.sleep(hold)
                    yield TriggerEvent({**event, "what": what, "state": self.state})
                    return
                if time.time() > self.deadline:
                    yield TriggerEvent({**timed_out(what), "what": what, "state": self.state})
                    return
                if time.monotonic() - last_progress >= self.progress_every:
                    last_progress = time.monotonic()
                    progress = await asyncio.to_thread(progress_of, kube, what)
                    if progress:
                        self.log.info(
                            "%s: %s of %s bytes, %s of %s files",
                            label,
                            progress.get("bytes_done"),
                            progress.get("bytes_total"),
                            progress.get("files_done"),
                            progress.get("files_total"),
                        )
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # one event, never an exception: the task decides (retry)
            yield TriggerEvent(
                {
                    "status": "error",
                    "reason": f"waiting for {label}: {type(exc).__name__}: {exc}",
                    "what": what,
                    "state": self.state,
                }
            )

    async def on_kill(self) -> None:
        """The deferred task was marked failed/cancelled: delete what its step made."""
        from ys1000.volumes.steps import clean

        kube = await asyncio.to_thread(kube_for, self.cluster, self.config_dir)
        gone = await asyncio.to_thread(clean, kube, self.cleanup_spec)
        self.log.warning("cancelled: deleted %s", ", ".join(gone) or "nothing")
