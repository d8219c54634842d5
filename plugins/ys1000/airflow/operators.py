"""ys1000 operators: thin wrappers that resolve connections, call the engine and report.

Each operator
- takes keyword-only arguments and only stores them (plan and cluster/repository *names*; the
  configuration is read again in ``execute``, so a worker runs the plan as it is on disk);
- creates clients in ``execute`` (``cached_property``), never at DAG parse time;
- maps engine errors to Airflow semantics (``ys1000.airflow.errors``): permanent problems fail
  the task without retry, transient ones are re-raised so Airflow retries with backoff;
- pushes a small result to XCom (ids and counts, never documents) and logs a readable summary;
- on ``on_kill`` sets a cancel event the engine checks and removes what the run wrote.

Backup ids are derived from the run (``<plan>-<logical date or run_after, YYYYmmddHHMMSS>``), so
a retried task reuses its id and overwrites its own partial upload instead of adding another.
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

from ys1000.airflow.errors import Cancelled, engine_errors
from ys1000.units import human_size

if TYPE_CHECKING:
    from ys1000.config import BackupPlan, Config, Plan
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


def backup_id_for(plan: str, context: Any) -> str:
    """``<plan>-<YYYYmmddHHMMSS>`` of the run: stable across retries of the same run."""
    return f"{plan}-{run_time(context):%Y%m%d%H%M%S}"


def restore_id_for(context: Any) -> str:
    """``restore-<YYYYmmddHHMMSS>-<4 hex of the run id>``: stable across retries of the same run."""
    dag_run = context.get("dag_run")
    run_id = getattr(dag_run, "run_id", "") or ""
    digest = hashlib.sha256(f"{getattr(dag_run, 'dag_id', '')}/{run_id}".encode()).hexdigest()[:4]
    return f"restore-{run_time(context):%Y%m%d%H%M%S}-{digest}"


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
        for path, result in results.items():
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
            raise AirflowFailException(f"cluster {name!r} is not defined in clusters.yaml; defined: "
                                       f"{', '.join(sorted(self.config.clusters)) or 'none'}") from None

    def repository_spec(self, name: str):
        try:
            return self.config.repositories[name]
        except KeyError:
            raise AirflowFailException(f"repository {name!r} is not defined in repositories.yaml; defined: "
                                       f"{', '.join(sorted(self.config.repositories)) or 'none'}") from None

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

    _running = False

    def on_kill(self) -> None:
        """Stop the engine call; clean up now when ``execute`` is no longer running (a timeout
        already unwound it), else ``execute`` cleans up itself while unwinding."""
        self.log.warning("%s: cancel requested; stopping and removing what this run wrote", self.task_id)
        self.cancel.set()
        with self._state_lock:
            running = self._running
        if not running:
            self.cleanup()

    def cleanup(self) -> None:
        """Remove what this run created (overridden by operators that create something)."""

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


class _BackupPlanOperator(Ys1000Operator):
    """An operator working on one backup plan's backup of this run."""

    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, plan: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    @cached_property
    def plan_obj(self) -> "BackupPlan":
        from ys1000.config import BackupPlan

        plan = self.plan_named(self.plan)
        if not isinstance(plan, BackupPlan):
            raise AirflowFailException(f"plan {self.plan!r} is a {plan.kind}, not a BackupPlan")
        return plan

    def backup_spec(self, backup_id: str):
        from ys1000.config.specs import backup_spec_for

        self.cluster_spec(self.plan_obj.cluster)  # a clear error for an unknown cluster
        return backup_spec_for(self.config, self.plan_obj, backup_id)

    def backup_id(self, context: Any) -> str:
        return backup_id_for(self.plan, context)


# -- backup --------------------------------------------------------------------------------------


class BackupPreflightOperator(_BackupPlanOperator):
    """Check before writing anything: the cluster and repository connections work, the selected
    namespaces exist and the plan's limits hold. XCom: the inventory summary."""

    def execute(self, context: Any) -> dict:
        from ys1000.backup import preflight

        p = self.plan_obj
        kube = self.kube(p.cluster)
        repo = self.repository(p.repository, create=True)
        spec = self.backup_spec(self.backup_id(context))
        with engine_errors(f"preflight of plan {p.name}"):
            inventory = preflight(kube, spec)
        summary = {"plan": p.name, "cluster": p.cluster, "repository": p.repository,
                   "backup_id": spec.backup_id, "namespace_names": inventory.namespaces,
                   **inventory.summary()}
        self.log.info(
            "preflight of plan %s OK: cluster %s (Kubernetes %s) and repository %s reachable; "
            "%d namespace(s) %s, %d pod(s), %d PVC(s) within limits (%d/%d/%d)%s",
            p.name, p.cluster, kube.version().get("gitVersion"), repo.store.describe(),
            len(inventory.namespaces), ", ".join(inventory.namespaces), inventory.pod_count,
            len(inventory.pvcs), spec.limits.max_namespaces, spec.limits.max_pods, spec.limits.max_pvcs,
            "".join(f"\n  note: skipped {s}" for s in inventory.skipped))
        return summary


class CaptureResourcesOperator(_BackupPlanOperator):
    """Capture the plan's resources into a *pending* backup (no manifest yet).

    The id comes from the run, so a retry overwrites its own partial upload. XCom ``backup_id``
    (pushed before any upload) and the capture counts.
    """

    def execute(self, context: Any) -> dict:
        from ys1000.backup.pipeline import capture
        from ys1000.repository import layout

        p = self.plan_obj
        bid = self.backup_id(context)
        context["ti"].xcom_push(key="backup_id", value=bid)
        kube = self.kube(p.cluster)
        repo = self.repository(p.repository, create=True)
        spec = self.backup_spec(bid)
        if repo.store.exists(layout.manifest_key(bid)):
            # an earlier attempt of this run got as far as commit: nothing to redo
            m = repo.manifest(bid)
            self.log.info("backup %s is already complete (an earlier attempt of this run committed it)", bid)
            return {"backup_id": bid, "objects": m.total, "restorable": m.restorable, "counts": m.counts,
                    "archive_bytes": m.archive.size, "namespaces": m.namespaces, "complete": True}
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled(f"backup {bid} cancelled before it started")
            self._running = True
            self._created = (p.repository, bid)
        try:
            with engine_errors(f"capture of backup {bid}"):
                result = capture(kube, repo, spec, progress=self._progress_logger(f"capture {bid}"),
                                 cancel=self.cancel)
        except (InterruptedError, Cancelled) as exc:
            self._remove_pending()
            raise Cancelled(f"backup {bid} cancelled; its partial upload was removed") from exc
        finally:
            with self._state_lock:
                self._running = False
        if self.cancel.is_set():  # cancelled after the last page: the pending backup is written
            self._remove_pending()
            raise Cancelled(f"backup {bid} cancelled; its partial upload was removed")
        m = result.manifest
        self.log.info("captured backup %s (pending): %d objects (%d restorable) from %s, archive %s; %s%s",
                      bid, m.total, m.restorable, ", ".join(m.namespaces), _size(m.archive.size),
                      _counts(m.counts), "".join(f"\n  warning: {w}" for w in result.warnings))
        return {"backup_id": bid, "objects": m.total, "restorable": m.restorable, "counts": m.counts,
                "archive_bytes": m.archive.size, "namespaces": m.namespaces, "complete": False}

    _created: tuple[str, str] | None = None

    def _remove_pending(self) -> None:
        if not self._created:
            return
        repo_name, bid = self._created
        repo = self._repos.get(repo_name)
        if repo is None:
            return
        from ys1000.repository import layout

        try:
            if repo.store.exists(layout.manifest_key(bid)):
                return  # complete: never remove a finished backup here
            repo.delete_backup(bid)
            self.log.info("removed the partial upload of backup %s", bid)
        except Exception as exc:  # the incomplete-backup cleanup removes it later
            self.log.warning("could not remove the partial upload of backup %s (%s); having no manifest, "
                             "it is never restored and the retention task removes it later", bid, exc)

    def cleanup(self) -> None:
        self._remove_pending()


class VolumeDataOperator(_BackupPlanOperator):
    """Protect the data of the backup's PVCs by the policy's method (and per-PVC overrides):
    restic mover Jobs (file copy), CSI snapshots, or snapshots exported by movers.

    Runs between capture and verify; XCom: the volume records that ``commit`` writes into the
    manifest. With export mode ``selected_at`` only snapshots are taken here; the ``export`` task
    uploads the selected ones after the DAG's deferred wait. ``on_kill`` deletes the run's mover
    Jobs and their Secrets.
    """

    def __init__(self, *, export_phase: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export_phase = export_phase

    def volume_options(self, context: Any):
        from ys1000.config.specs import volume_options_for

        self.cluster_spec(self.plan_obj.cluster)
        return volume_options_for(self.config, self.plan_obj, export_phase=self.export_phase,
                                  run_id=f"{context['dag_run'].run_id}/{self.task_id}")

    def execute(self, context: Any) -> list[dict]:
        from ys1000.backup.pipeline import protect_volumes, volume_failures
        from ys1000.volumes import MoverRunner, export_later

        p = self.plan_obj
        self._ti = context["ti"]
        bid = self.backup_id(context)
        spec = self.backup_spec(bid)
        if spec.scope == "resources":
            self.log.info("scope 'resources': no volume data to protect")
            return []
        kube = self.kube(p.cluster)
        repo = self.repository(p.repository)
        opts = self.volume_options(context)
        if opts.limit_upload_kib:
            self.log.info("bandwidth window of cluster %s in force: movers limited to %d KiB/s", p.cluster,
                          opts.limit_upload_kib)
        runner = MoverRunner(kube, opts.max_concurrent, on_progress=self._mover_progress)
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled("cancelled before the volume data was copied")
            self._runner = runner
            self._running = True
        try:
            with engine_errors(f"volume data of backup {bid}"):
                if self.export_phase:
                    records = context["ti"].xcom_pull(task_ids="volumes") or []
                    records = export_later(kube, self._repo_config(), repo.restic_password(), records, bid,
                                           p.name, opts, runner)
                else:
                    records = protect_volumes(kube, repo, spec, opts, repo_cfg=self._repo_config(), runner=runner,
                                              progress=self._progress_logger(f"volumes of {bid}"))
        except InterruptedError as exc:
            raise Cancelled(f"volume copy of backup {bid} cancelled; its mover Jobs and Secrets were deleted") from exc
        finally:
            with self._state_lock:
                self._running = False
        for r in records:
            data = r.get("restic") or {}
            how = "+".join(k for k in ("csi", "restic") if k in r) or "skipped"
            self.log.info("  %s/%s: %s%s", r["namespace"], r["pvc"], how,
                          f", {_size(data.get('total_bytes'))} ({_size(data.get('bytes_added'))} new)" if data else "")
        failures = volume_failures(records)
        if failures:
            ti = context["ti"]
            message = f"the data of {len(failures)} PVC(s) of backup {bid} was not protected:\n  " + "\n  ".join(failures)
            if ti.try_number <= (self.retries or 0):
                raise RuntimeError(message + "\n(retrying)")
            # last try: hand the records on; commit marks the backup PartiallyFailed naming them
            self.log.error("%s", message)
        return records

    _runner = None

    def on_kill(self) -> None:
        """Delete the movers right away, also while ``execute`` runs: after "mark failed" the task
        process is killed a few seconds after on_kill, before ``execute`` could unwind."""
        super().on_kill()
        with self._state_lock:
            running = self._running
        if running:
            self.cleanup()

    def _repo_config(self):
        from ys1000.airflow.connections import repository_config_for

        p = self.plan_obj
        return repository_config_for(p.repository, self.repository_spec(p.repository))

    def _mover_progress(self, spec, progress: dict) -> None:
        self.log.info("mover %s/%s: %s of %s bytes, %s of %s files", spec.namespace, spec.pvc,
                      progress.get("bytes_done"), progress.get("bytes_total"), progress.get("files_done"),
                      progress.get("files_total"))
        self.publish_progress({"phase": "volumes", "pvc": f"{spec.namespace}/{spec.pvc}",
                               "bytes_done": progress.get("bytes_done"), "bytes_total": progress.get("bytes_total"),
                               "files_done": progress.get("files_done"), "files_total": progress.get("files_total")})

    def cleanup(self) -> None:
        if self._runner is not None:
            for name in self._runner.cancel_all():
                self.log.info("deleted mover Job and Secret %s", name)


class VerifyBackupOperator(_BackupPlanOperator):
    """Verify the captured backup: checksums, decryption, every document, index ↔ archive."""

    template_fields: Sequence[str] = ("plan", "backup_id_value")

    def __init__(self, *, backup_id: str = "{{ ti.xcom_pull(task_ids='capture', key='backup_id') }}",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_id_value = backup_id

    def execute(self, context: Any) -> dict:
        from ys1000.backup.pipeline import verify

        p = self.plan_obj
        bid = self.backup_id_value or self.backup_id(context)
        repo = self.repository(p.repository)
        with engine_errors(f"verification of backup {bid}"):
            result = verify(repo, bid)
        self.log.info("backup %s verified: %d objects, archive %s (%s uncompressed)\n  %s", bid, result.objects, _size(result.archive_size),
                      _size(result.uncompressed_size), "\n  ".join(result.checks))
        return {"backup_id": bid, "objects": result.objects, "archive_bytes": result.archive_size,
                "uncompressed_bytes": result.uncompressed_size, "ok": result.ok}


class CommitBackupOperator(_BackupPlanOperator):
    """Write the manifest (last, with the volume records of ``volumes_task``) and the catalog
    entry: from now on the backup counts as complete. XCom and the log: the run's summary."""

    template_fields: Sequence[str] = ("plan", "backup_id_value")

    def __init__(self, *, backup_id: str = "{{ ti.xcom_pull(task_ids='capture', key='backup_id') }}",
                 volumes_task: str | None = "volumes", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_id_value = backup_id
        self.volumes_task = volumes_task

    def execute(self, context: Any) -> dict:
        p = self.plan_obj
        bid = self.backup_id_value or self.backup_id(context)
        repo = self.repository(p.repository)
        from ys1000.backup.pipeline import commit, volume_failures

        volumes = context["ti"].xcom_pull(task_ids=self.volumes_task) if self.volumes_task else None
        with engine_errors(f"commit of backup {bid}"):
            m = commit(repo, bid, volumes)
        summary = {"backup_id": m.backup_id, "plan": m.plan, "status": m.status, "cluster": m.cluster_name,
                   "namespaces": m.namespaces, "objects": m.total, "restorable": m.restorable,
                   "counts": m.counts, "archive_bytes": m.archive.size,
                   "uncompressed_bytes": m.uncompressed_size, "volumes": len(m.volumes),
                   "warnings": m.warnings,
                   "retain_until": m.retain_until.isoformat() if m.retain_until else None}
        self.log.info(
            "backup %s %s (plan %s, cluster %s): %d objects (%d restorable) from %s; archive %s "
            "(%s uncompressed); %s%s", m.backup_id, m.status, m.plan, m.cluster_name, m.total, m.restorable,
            ", ".join(m.namespaces), _size(m.archive.size), _size(m.uncompressed_size), _counts(m.counts),
            "".join(f"\n  warning: {w}" for w in m.warnings))
        failures = volume_failures(m.volumes)
        if failures:
            # committed (the resources and the other PVCs' data are restorable), but the run must
            # not look green: the backup lacks data in its scope
            context["ti"].xcom_push(key="return_value", value=summary)
            raise AirflowFailException(f"backup {bid} is PartiallyFailed: the data of {len(failures)} PVC(s) is "
                                       "not in it:\n  " + "\n  ".join(failures))
        return summary


class RetentionOperator(_BackupPlanOperator):
    """Delete the plan's backups older than its policy's retention, and incomplete backups (no
    manifest) older than ``grace``; backups under Object Lock wait for their retain-until date."""

    def __init__(self, *, grace: timedelta = CLEANUP_GRACE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grace = grace

    def execute(self, context: Any) -> dict:
        from ys1000.config import format_duration

        p = self.plan_obj
        retention = self.config.policy_for(p).retention
        repo = self.repository(p.repository)
        with engine_errors(f"retention of plan {p.name}"):
            from ys1000.airflow.connections import repository_config_for
            from ys1000.volumes.retention import expire_backups

            # expired backups take their volume data along (restic forget + prune, CSI snapshots)
            report, volumes = expire_backups(repo, repository_config_for(p.repository, self.repository_spec(p.repository)),
                                             p.name, retention, kube=self.kube(p.cluster))
            cleanup = repo.cleanup_incomplete(self.grace)
        for rel, ids in volumes.forgotten.items():
            self.log.info("  volume data: forgot %d restic snapshot(s) in %s and pruned", len(ids), rel)
        for content in volumes.snapshots_deleted:
            self.log.info("  volume data: deleted VolumeSnapshotContent %s", content)
        for err in volumes.errors:
            self.log.warning("  volume data: %s (the next retention run retries)", err)
        self.log.info("retention of plan %s (keep %s): %d deleted, %d kept, %d waiting for Object Lock",
                      p.name, format_duration(retention), len(report.deleted), len(report.kept),
                      len(report.waiting))
        for bid in report.deleted:
            self.log.info("  deleted backup %s", bid)
        for w in [*report.waiting, *cleanup.waiting]:
            self.log.info("  backup %s waits for its Object Lock until %s", w.backup_id,
                          w.retain_until.isoformat() if w.retain_until else "an unknown date")
        for bid in cleanup.deleted:
            self.log.info("  removed incomplete backup %s (no manifest, older than %s)", bid,
                          format_duration(self.grace))
        for bid, err in {**report.errors, **cleanup.errors}.items():
            self.log.warning("  could not delete backup %s: %s", bid, err)
        return {"deleted": report.deleted, "kept": len(report.kept),
                "waiting": [{"backup_id": w.backup_id,
                             "retain_until": w.retain_until.isoformat() if w.retain_until else None}
                            for w in [*report.waiting, *cleanup.waiting]],
                "incomplete_deleted": cleanup.deleted, "incomplete_in_flight": cleanup.in_flight}


# -- restore -------------------------------------------------------------------------------------


def resolve_backup(repo: "Repository", backup: str, plan: str | None) -> str:
    """A backup id, or ``latest``: the newest completed backup of ``plan`` (config.specs)."""
    from ys1000.config.specs import BackupNotResolved, resolve_backup as resolve

    try:
        return resolve(repo, backup, plan)
    except BackupNotResolved as exc:
        raise AirflowFailException(str(exc)) from None


class _RestoreBase(Ys1000Operator):
    """Restore arguments: given directly (the generic DAG renders them from params) or, with
    ``restore_plan``, taken from a RestorePlan."""

    template_fields: Sequence[str] = (
        "backup", "plan", "repository_name", "target_cluster", "namespaces", "namespace_mapping",
        "storage_class_mapping", "include_kinds", "exclude_kinds", "resource_refs", "remove_node_constraints",
        "remove_tolerations", "existing_resource_policy", "dry_run",
    )

    def __init__(self, *, backup: str = "latest", plan: str | None = None, repository: str | None = None,
                 target_cluster: str | None = None, namespaces: list[str] | None = None,
                 namespace_mapping: dict[str, str] | None = None,
                 storage_class_mapping: dict[str, str] | None = None, include_kinds: list[str] | None = None,
                 exclude_kinds: list[str] | None = None, resource_refs: list[str] | None = None,
                 remove_node_constraints: bool = False, remove_tolerations: bool = False,
                 existing_resource_policy: str = "skip", dry_run: bool = False,
                 restore_plan: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup = backup
        self.plan = plan
        self.repository_name = repository
        self.target_cluster = target_cluster
        self.namespaces = namespaces or []
        self.namespace_mapping = namespace_mapping or {}
        self.storage_class_mapping = storage_class_mapping or {}
        self.include_kinds = include_kinds or []
        self.exclude_kinds = exclude_kinds or []
        self.resource_refs = resource_refs or []  # ('resources' is a BaseOperator field)
        self.remove_node_constraints = remove_node_constraints
        self.remove_tolerations = remove_tolerations
        self.existing_resource_policy = existing_resource_policy
        self.dry_run = dry_run
        self.restore_plan = restore_plan

    def _apply_plan(self) -> None:
        """Fill the arguments from the RestorePlan (run time: the plan as it is on disk)."""
        if not self.restore_plan:
            return
        from ys1000.config import RestorePlan

        rp = self.plan_named(self.restore_plan)
        if not isinstance(rp, RestorePlan):
            raise AirflowFailException(f"plan {self.restore_plan!r} is a {rp.kind}, not a RestorePlan")
        if not self.backup or self.backup == "latest":  # else: an id preflight already resolved
            self.backup = rp.backup.id
        self.plan = rp.backup.plan
        self.repository_name, self.target_cluster = rp.repository, rp.target_cluster
        self.namespace_mapping, self.storage_class_mapping = dict(rp.namespace_mapping), dict(rp.storage_class_mapping)
        self.include_kinds, self.exclude_kinds = list(rp.include_kinds), list(rp.exclude_kinds)
        self.resource_refs = list(rp.resources)
        self.remove_node_constraints, self.remove_tolerations = rp.remove_node_constraints, rp.remove_tolerations
        self.existing_resource_policy, self.dry_run = rp.existing_resource_policy, rp.dry_run

    def _check_args(self) -> None:
        self._apply_plan()
        if not self.repository_name:
            raise AirflowFailException("no repository given")
        if not self.target_cluster:
            raise AirflowFailException("no target cluster given")
        if self.existing_resource_policy not in ("skip", "update", "fail"):
            raise AirflowFailException(f"existing_resource_policy {self.existing_resource_policy!r} is not "
                                       "allowed; expected skip, update or fail")
        for name in ("namespace_mapping", "storage_class_mapping"):
            if not isinstance(getattr(self, name), dict):
                raise AirflowFailException(f"{name} must be a mapping OLD: NEW, got {getattr(self, name)!r}")
        for name in ("namespaces", "include_kinds", "exclude_kinds", "resource_refs"):
            if not isinstance(getattr(self, name), list):
                raise AirflowFailException(f"{name} must be a list, got {getattr(self, name)!r}")
        # rendered params may come back as other types (native rendering): normalise
        self.backup = str(self.backup) if self.backup not in (None, "") else "latest"
        self.namespace_mapping = {str(k): str(v) for k, v in self.namespace_mapping.items()}
        self.storage_class_mapping = {str(k): str(v) for k, v in self.storage_class_mapping.items()}
        for name in ("namespaces", "include_kinds", "exclude_kinds", "resource_refs"):
            setattr(self, name, [str(v) for v in getattr(self, name)])
        self.dry_run = _truthy(self.dry_run)
        self.remove_node_constraints = _truthy(self.remove_node_constraints)
        self.remove_tolerations = _truthy(self.remove_tolerations)
        self.plan = str(self.plan) if self.plan not in (None, "", "None") else None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class RestorePreflightOperator(_RestoreBase):
    """Before a restore: the target cluster and the repository are reachable, the backup exists
    and is complete (``latest`` is resolved here). XCom ``backup_id`` and the backup's summary."""

    def execute(self, context: Any) -> dict:
        from ys1000.airflow.params import check_run_conf

        check_run_conf(self, context)  # unknown conf keys, wrong types, a backup id that does not exist
        self._check_args()
        kube = self.kube(self.target_cluster)
        repo = self.repository(self.repository_name)
        with engine_errors("restore preflight"):
            bid = resolve_backup(repo, self.backup, self.plan)
            m = repo.manifest(bid)
        context["ti"].xcom_push(key="backup_id", value=bid)
        self.log.info("restore preflight OK: backup %s (plan %s, %s) has %d objects from %s; target cluster %s "
                      "(Kubernetes %s) reachable", bid, m.plan, m.status, m.total, ", ".join(m.namespaces),
                      self.target_cluster, kube.version().get("gitVersion"))
        return {"backup_id": bid, "plan": m.plan, "objects": m.total, "namespaces": m.namespaces}


class RestoreOperator(_RestoreBase):
    """Restore a backup (an id, or ``latest`` of a plan) into the target cluster, volume data
    included: PVCs are filled (snapshot in the source cluster, else restic) before workloads.

    Namespace/StorageClass mapping and filters come from the arguments; the image registry
    rewrite from the target cluster's ``image_registry_rewrite``. Fails without retry when any
    object failed, after logging each with its reason. XCom: restore id, status and counts.
    """

    _spec = None

    def on_kill(self) -> None:
        """Delete the restore movers right away (the task process is killed soon after)."""
        super().on_kill()
        with self._state_lock:
            running = self._running
        if running:
            self.cleanup()

    def cleanup(self) -> None:
        hooks = self._spec.volume_hooks if self._spec is not None else None
        if hooks is not None:
            for name in hooks.cancel():
                self.log.info("deleted mover Job and Secret %s", name)

    def execute(self, context: Any) -> dict:
        from ys1000.config.specs import restore_volume_options_for
        from ys1000.restore import RestoreOptions, RestoreSpec, run_restore

        self._check_args()
        cluster = self.cluster_spec(self.target_cluster)
        kube = self.kube(self.target_cluster)
        repo = self.repository(self.repository_name)
        with engine_errors("restore"):
            bid = resolve_backup(repo, self.backup, self.plan)
        spec = RestoreSpec(
            backup_id=bid, restore_id=restore_id_for(context),
            options=RestoreOptions(
                namespace_mapping=dict(self.namespace_mapping),
                storage_class_mapping=dict(self.storage_class_mapping),
                image_registry_mapping=dict(cluster.image_registry_rewrite),
                remove_node_constraints=self.remove_node_constraints,
                remove_tolerations=self.remove_tolerations),
            namespaces=list(self.namespaces), include_kinds=list(self.include_kinds),
            exclude_kinds=list(self.exclude_kinds), resources=list(self.resource_refs),
            existing_policy=self.existing_resource_policy, dry_run=self.dry_run)
        context["ti"].xcom_push(key="restore_id", value=spec.restore_id)
        self._spec = spec
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled(f"restore {spec.restore_id} cancelled before it started")
            self._running = True
        try:
            with engine_errors(f"restore {spec.restore_id} of backup {bid}"):
                from ys1000.airflow.connections import repository_config_for

                same_cluster = repo.manifest(bid).cluster_name == self.target_cluster
                report = run_restore(
                    kube, repo, spec, same_cluster=same_cluster,
                    repo_cfg=repository_config_for(self.repository_name, self.repository_spec(self.repository_name)),
                    volume_opts=restore_volume_options_for(cluster, run_id=f"{context['dag_run'].run_id}/{self.task_id}"),
                    progress=self._progress_logger(f"restore {spec.restore_id}"), cancel=self.cancel)
        except InterruptedError as exc:
            raise Cancelled(f"restore {spec.restore_id} cancelled; objects it created carry the label "
                            f"ys1000.io/restore={spec.restore_id}") from exc
        finally:
            with self._state_lock:
                self._running = False
        lines = [f"restore {report.restore_id} of backup {bid} into cluster {self.target_cluster}"
                 f"{' (dry run)' if report.dry_run else ''}: {report.status}; {_counts(report.counts)}"]
        for i in report.items:
            if i.action in ("failed", "would-fail"):
                where = f"{i.namespace}/" if i.namespace else ""
                lines.append(f"  {i.action}: {i.kind} {where}{i.name}: {i.reason}")
        self.log.info("\n".join(lines))
        for v in report.volumes:
            self.log.info("  PVC %s/%s: %s%s", v["namespace"], v["pvc"], v["status"],
                          f" ({v['reason']})" if v.get("reason") else "")
        result = {"restore_id": report.restore_id, "backup_id": bid, "status": report.status,
                  "counts": report.counts, "dry_run": report.dry_run, "failed": len(report.failed),
                  "volumes": {s: sum(v["status"] == s for v in report.volumes) for s in ("data", "empty", "existing", "failed")}}
        if report.failed_volumes:
            raise AirflowFailException(
                f"restore {report.restore_id}: the data of {len(report.failed_volumes)} PVC(s) was not restored: "
                + "; ".join(f"{v['namespace']}/{v['pvc']}: {v['reason']}" for v in report.failed_volumes))
        if report.failed:
            raise AirflowFailException(
                f"restore {report.restore_id}: {len(report.failed)} of {len(report.items)} objects failed "
                f"(status {report.status}); each is listed above with its reason")
        return result
