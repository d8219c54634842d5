"""What every ys1000 operator shares: configuration, clients, run identity, cancel, progress,
and deferring a volume step's wait to the triggerer.

Each operator
- takes keyword-only arguments and only stores them (plan and cluster/repository *names*; the
  configuration is read again in ``execute``, so a worker runs the plan as it is on disk);
- creates clients in ``execute`` (``cached_property``), never at DAG parse time;
- calls one engine step and maps engine errors to Airflow semantics (``ys1000.airflow.errors``):
  permanent problems fail the task without retry, transient ones are re-raised so Airflow
  retries with backoff;
- pushes a small result to XCom (ids and counts, never documents) and logs a readable summary;
- cancels the same way as every other: ``on_kill`` sets the cancel event the engine checks and
  calls ``cleanup``, which removes what the run created (idempotent; a deferred wait is cleaned
  by its trigger's ``on_kill`` instead, ``ys1000.airflow.triggers``).

Backup ids are derived from the run (``<plan>-<logical date or run_after, YYYYmmddHHMMSS>``,
``run_stamp``), so a retried task reuses its id and overwrites its own partial upload instead of
adding another. Runs the scheduler makes have one logical date each; any other run (manual, API,
asset-triggered) gets 4 hex digits of its run id appended, as two of those can start within one
second (a burst of 200 API triggers did: two runs shared an id and the second reported the
first's backup as its own).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from ys1000.airflow.errors import engine_errors
from ys1000.units import human_size

if TYPE_CHECKING:
    from ys1000.config import Config, Plan
    from ys1000.kube import Kube
    from ys1000.repository import Repository

CLEANUP_GRACE = timedelta(hours=6)
"""Incomplete backups younger than this may still be uploading; the retention task keeps them."""


# -- run identity --------------------------------------------------------------------------------


def run_time(context: Any) -> datetime:
    """The run's logical date, else (manual runs in Airflow 3 have none) its ``run_after``."""
    when = context.get("logical_date")
    if when is None:
        dag_run = context.get("dag_run")
        when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None)
    if when is None:  # pragma: no cover - every real run has one of them
        raise AirflowFailException("the run has neither a logical date nor run_after")
    return when.astimezone(timezone.utc)


# one logical date per run and DAG, on the schedule's grid: the time alone names the run
_SCHEDULED_RUN_TYPES = frozenset({"scheduled", "backfill"})


def run_ref(context: Any) -> str:
    """``<dag id>/<run id>``: which Airflow run made something (recorded in its manifest)."""
    dag_run = context.get("dag_run")
    return f"{getattr(dag_run, 'dag_id', '')}/{getattr(dag_run, 'run_id', '') or ''}"


def _run_digest(context: Any) -> str:
    return hashlib.sha256(run_ref(context).encode()).hexdigest()[:4]


def run_stamp(context: Any) -> str:
    """``YYYYmmddHHMMSS`` of a scheduled or backfill run, ``YYYYmmddHHMMSS-<4 hex of the run id>``
    of any other: the same for every try of one run, different for two runs of one DAG."""
    stamp = f"{run_time(context):%Y%m%d%H%M%S}"
    run_type = getattr(context.get("dag_run"), "run_type", None)
    if str(getattr(run_type, "value", run_type)) in _SCHEDULED_RUN_TYPES:
        return stamp
    return f"{stamp}-{_run_digest(context)}"


def backup_id_for(plan: str, context: Any) -> str:
    """``<plan>-<run_stamp>``: stable across retries of the same run, one per run."""
    return f"{plan}-{run_stamp(context)}"


def restore_id_for(context: Any) -> str:
    """``restore-<YYYYmmddHHMMSS>-<4 hex of the run id>``: stable across retries of the same run."""
    return f"restore-{run_time(context):%Y%m%d%H%M%S}-{_run_digest(context)}"


def _size(n) -> str:
    return human_size(n, missing="?")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


# -- base ----------------------------------------------------------------------------------------


class Ys1000Operator(BaseOperator):
    """Shared plumbing: configuration, clusters, repositories, cancel event, progress logging."""

    ui_color = "#dbe9f6"
    template_fields: Sequence[str] = ()

    def __init__(self, *, config_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_dir = config_dir

    # configuration (read at run time; cheap)
    @cached_property
    def _loaded(self) -> tuple["Config", dict]:
        from ys1000.config import default_config_dir, load_plans

        with engine_errors("configuration"):
            return load_plans(Path(self.config_dir) if self.config_dir else default_config_dir())

    @property
    def config(self) -> "Config":
        return self._loaded[0]

    def plan_named(self, name: str) -> "Plan":
        from ys1000.config import ConfigError

        config, results = self._loaded
        broken = []
        for result in results.values():
            if isinstance(result, ConfigError):
                broken.append(str(result))
            elif result.name == name:
                return result
        hint = ("; invalid plan files:\n" + "\n".join(broken)) if broken else ""
        raise AirflowFailException(f"plan {name!r} is not defined in {config.config_dir}/plans{hint}")

    def cluster_spec(self, name: str):
        try:
            return self.config.clusters[name]
        except KeyError:
            raise AirflowFailException(
                f"cluster {name!r} is not defined in clusters.yaml; defined: "
                f"{', '.join(sorted(self.config.clusters)) or 'none'}"
            ) from None

    def repository_spec(self, name: str):
        try:
            return self.config.repositories[name]
        except KeyError:
            raise AirflowFailException(
                f"repository {name!r} is not defined in repositories.yaml; defined: "
                f"{', '.join(sorted(self.config.repositories)) or 'none'}"
            ) from None

    # clients, created on first use inside execute
    @cached_property
    def _kubes(self) -> dict[str, "Kube"]:
        return {}

    def kube(self, cluster: str) -> "Kube":
        from ys1000.airflow.connections import kube_for_cluster

        if cluster not in self._kubes:
            with engine_errors(f"cluster {cluster}"):
                kube = kube_for_cluster(cluster, self.cluster_spec(cluster))
                kube.version()  # reach the API server now: a clear error before any work
            self._kubes[cluster] = kube
        return self._kubes[cluster]

    @cached_property
    def _repos(self) -> dict[str, "Repository"]:
        return {}

    def repository(self, name: str, *, create: bool = False) -> "Repository":
        from ys1000.airflow.connections import open_repository_for

        if name not in self._repos:
            with engine_errors(f"repository {name}"):
                self._repos[name] = open_repository_for(name, self.repository_spec(name), create=create)
        return self._repos[name]

    # cancelling
    @cached_property
    def cancel(self) -> threading.Event:
        """Set by ``on_kill``; the engine checks it between pages/batches."""
        return threading.Event()

    @cached_property
    def _state_lock(self) -> threading.RLock:
        # re-entrant: on_kill runs in a signal handler, possibly while the main thread holds it
        return threading.RLock()

    @cached_property
    def _progress_lock(self) -> threading.RLock:
        return threading.RLock()

    def on_kill(self) -> None:
        """The one cancel protocol: stop the engine (it checks the event between pages, batches
        and waits) and remove now what this run created; the task process is killed soon after."""
        self.log.warning("%s: cancel requested; stopping and removing what this run wrote", self.task_id)
        self.cancel.set()
        with self._state_lock:
            removed = self.cleanup()
        for line in removed:
            self.log.warning("cancel: removed %s", line)

    def cleanup(self) -> list[str]:
        """Remove what this run created; idempotent (``execute`` may repeat it while unwinding).
        Operators that create something override it."""
        return []

    # deferring a volume step's wait (ys1000.volumes.steps) to the triggerer
    def defer_step(self, step: Any, cluster: str, *, method_name: str = "resume", **kwargs: Any) -> Any:
        """``Done`` → its record; ``Wait`` → defer to a ``VolumeWaitTrigger`` (no worker slot
        held), resuming in ``method_name(context, event, **kwargs)``; the event carries the step's
        ``state`` (``dag.test`` passes the event alone, not the deferral's kwargs)."""
        from ys1000.airflow.triggers import VolumeWaitTrigger
        from ys1000.volumes.steps import Done

        if isinstance(step, Done):
            return step.record
        self.defer(
            trigger=VolumeWaitTrigger(
                cluster=cluster, config_dir=self.config_dir, what=step.what, cleanup=step.cleanup, state=step.state
            ),
            method_name=method_name,
            kwargs=kwargs,
        )

    def run_key(self, context: Any) -> str:
        """Labels what this task creates in a cluster (``<run id>/<task id>``): the same for every
        try and map index, so a retry finds its own leftovers and still-running Jobs."""
        return f"{context['dag_run'].run_id}/{self.task_id}"

    def last_try(self, context: Any) -> bool:
        """Whether a failure now is final (no retry left)."""
        return context["ti"].try_number > (self.retries or 0)

    def publish_progress(self, info: dict) -> None:
        """Progress for the job monitor (B5): the newest ``progress`` XCom of the running task."""
        try:
            from airflow.sdk import get_current_context

            # movers report from worker threads: use the task instance captured in execute, one
            # push at a time (the task's channel to its supervisor is not for concurrent use)
            ti = getattr(self, "_ti", None) or get_current_context()["ti"]
            value = {k: v for k, v in info.items() if v is None or isinstance(v, (int, float, str, bool))}
            with self._progress_lock:
                ti.xcom_push(key="progress", value={**value, "updated": datetime.now(timezone.utc).isoformat()})
        except Exception:  # progress is best effort; the work goes on
            self.log.debug("could not publish progress", exc_info=True)

    def _progress_logger(self, what: str, every: float = 10.0):
        last = [0.0]

        def report(info: dict) -> None:
            now = time.monotonic()
            if now - last[0] >= every or info.get("phase") == "committed":
                last[0] = now
                self.log.info("%s: %s", what, ", ".join(f"{k}={v}" for k, v in info.items()))
                self.publish_progress(info)

        return report
