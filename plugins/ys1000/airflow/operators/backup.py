"""Backup operators: one engine step each (``ys1000.backup.pipeline``).

``preflight`` → ``capture`` → ``volumes`` (mapped: one task per PVC, its waits deferred) [→
``wait_for_export_time`` → ``export`` (mapped)] → ``verify`` → ``commit`` → ``retention``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from ys1000.airflow.errors import Cancelled, engine_errors
from ys1000.airflow.operators.base import (
    CLEANUP_GRACE,
    Ys1000Operator,
    _counts,
    _size,
    backup_id_for,
    run_ref,
)

if TYPE_CHECKING:
    from ys1000.config import BackupPlan


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

    def _repo_config(self):
        from ys1000.airflow.connections import repository_config_for

        p = self.plan_obj
        return repository_config_for(p.repository, self.repository_spec(p.repository))


# -- backup --------------------------------------------------------------------------------------


class BackupPreflightOperator(_BackupPlanOperator):
    """Check before writing anything: the cluster and repository connections work, the selected
    namespaces exist and the plan's limits hold. XCom: the PVCs whose data the backup takes (what
    the ``volumes`` task is mapped over; Airflow maps over return values only), and the inventory
    summary under key ``summary``."""

    def execute(self, context: Any) -> list[dict]:
        from ys1000.backup import preflight
        from ys1000.backup.pipeline import volume_items

        p = self.plan_obj
        kube = self.kube(p.cluster)
        repo = self.repository(p.repository, create=True)
        spec = self.backup_spec(self.backup_id(context))
        with engine_errors(f"preflight of plan {p.name}"):
            inventory = preflight(kube, spec)
        items = volume_items(spec, inventory)
        summary = {
            "plan": p.name,
            "cluster": p.cluster,
            "repository": p.repository,
            "backup_id": spec.backup_id,
            "namespace_names": inventory.namespaces,
            **inventory.summary(),
        }
        self.log.info(
            "preflight of plan %s OK: cluster %s (Kubernetes %s) and repository %s reachable; "
            "%d namespace(s) %s, %d pod(s), %d PVC(s) within limits (%d/%d/%d); %d PVC(s) to copy%s",
            p.name,
            p.cluster,
            kube.version().get("gitVersion"),
            repo.store.describe(),
            len(inventory.namespaces),
            ", ".join(inventory.namespaces),
            inventory.pod_count,
            len(inventory.pvcs),
            spec.limits.max_namespaces,
            spec.limits.max_pods,
            spec.limits.max_pvcs,
            len(items),
            "".join(f"\n  note: skipped {s}" for s in inventory.skipped),
        )
        context["ti"].xcom_push(key="summary", value=summary)
        return items


class CaptureResourcesOperator(_BackupPlanOperator):
    """Capture the plan's resources into a *pending* backup (no manifest yet), and prepare the
    volume copies (each namespace's restic repository, created once before PVCs copy side by side).

    The id comes from the run, so a retry overwrites its own partial upload. XCom ``backup_id``
    (pushed before any upload) and the capture counts.
    """

    _created: tuple[str, str] | None = None

    def execute(self, context: Any) -> dict:
        from ys1000.backup.pipeline import capture, prepare_volumes
        from ys1000.config.specs import volume_options_for
        from ys1000.repository import layout

        p = self.plan_obj
        bid = self.backup_id(context)
        context["ti"].xcom_push(key="backup_id", value=bid)
        kube = self.kube(p.cluster)
        repo = self.repository(p.repository, create=True)
        spec = self.backup_spec(bid)
        spec.made_by = run_ref(context)
        if repo.store.exists(layout.manifest_key(bid)):
            # an earlier attempt of this run got as far as commit: nothing to redo
            m = repo.manifest(bid)
            if m.made_by and m.made_by != spec.made_by:  # never report another run's backup as ours
                raise AirflowFailException(
                    f"backup {bid} already exists, made by run {m.made_by}; this run ({spec.made_by}) "
                    "made no backup: trigger it again"
                )
            self.log.info("backup %s is already complete (an earlier attempt of this run committed it)", bid)
            return {
                "backup_id": bid,
                "objects": m.total,
                "restorable": m.restorable,
                "counts": m.counts,
                "archive_bytes": m.archive.size,
                "namespaces": m.namespaces,
                "complete": True,
            }
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled(f"backup {bid} cancelled before it started")
            self._created = (p.repository, bid)
        try:
            with engine_errors(f"capture of backup {bid}"):
                result = capture(kube, repo, spec, progress=self._progress_logger(f"capture {bid}"), cancel=self.cancel)
                prepare_volumes(
                    kube,
                    repo,
                    spec,
                    volume_options_for(self.config, p, run_id=self.run_key(context)),
                    result.inventory,
                    repo_cfg=self._repo_config(),
                )
        except (InterruptedError, Cancelled) as exc:
            self.cleanup()
            raise Cancelled(f"backup {bid} cancelled; its partial upload was removed") from exc
        if self.cancel.is_set():  # cancelled after the last page: the pending backup is written
            self.cleanup()
            raise Cancelled(f"backup {bid} cancelled; its partial upload was removed")
        m = result.manifest
        self.log.info(
            "captured backup %s (pending): %d objects (%d restorable) from %s, archive %s; %s%s",
            bid,
            m.total,
            m.restorable,
            ", ".join(m.namespaces),
            _size(m.archive.size),
            _counts(m.counts),
            "".join(f"\n  warning: {w}" for w in result.warnings),
        )
        return {
            "backup_id": bid,
            "objects": m.total,
            "restorable": m.restorable,
            "counts": m.counts,
            "archive_bytes": m.archive.size,
            "namespaces": m.namespaces,
            "complete": False,
        }

    def cleanup(self) -> list[str]:
        """The partial upload of this run's backup (never a committed one)."""
        if not self._created:
            return []
        repo_name, bid = self._created
        repo = self._repos.get(repo_name)
        if repo is None:
            return []
        from ys1000.repository import layout

        try:
            if repo.store.exists(layout.manifest_key(bid)):
                return []  # complete: never remove a finished backup here
            repo.delete_backup(bid)
            return [f"the partial upload of backup {bid}"]
        except Exception as exc:  # the incomplete-backup cleanup removes it later
            self.log.warning(
                "could not remove the partial upload of backup %s (%s); having no manifest, "
                "it is never restored and the retention task removes it later",
                bid,
                exc,
            )
            return []


class VolumeDataOperator(_BackupPlanOperator):
    """One PVC's data (mapped over preflight's ``volumes``; the Grid names each by namespace/PVC):
    a restic mover Job (file copy), a CSI snapshot, or a snapshot exported by a mover, by the
    policy's method and the plan's per-PVC override. The waits (mover, snapshot, export PVC) are
    deferred to the triggerer: no worker slot is held while data moves.

    A retry reattaches to its still-running mover (same Job name: run, PVC, purpose) instead of
    starting a second one, and never touches another PVC. XCom: the PVC's volume record, which
    ``commit`` writes into the manifest. With ``export_phase`` (export "selected at a set time"),
    it is mapped over the ``volumes`` records and exports the snapshots taken earlier.
    """

    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, volume: dict | None = None, export_phase: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volume = volume or {}
        self.export_phase = export_phase

    def _unit(self, context: Any):
        from ys1000.backup.pipeline import volume_unit
        from ys1000.config.specs import volume_options_for

        p = self.plan_obj
        opts = volume_options_for(self.config, p, export_phase=self.export_phase, run_id=self.run_key(context))
        if opts.limit_upload_kib:
            self.log.info(
                "bandwidth window of cluster %s in force: movers limited to %d KiB/s", p.cluster, opts.limit_upload_kib
            )
        return volume_unit(
            self.kube(p.cluster),
            self.repository(p.repository),
            self.backup_spec(self.backup_id(context)),
            opts,
            repo_cfg=self._repo_config(),
            export=self.export_phase,
        )

    @property
    def key(self) -> str:
        return f"{self.volume.get('namespace')}/{self.volume.get('pvc')}"

    def execute(self, context: Any) -> Any:
        from ys1000.kube.discovery import PVCS

        p = self.plan_obj
        with self._failures(context):
            unit = self._unit(context)
            if self.export_phase:
                step = unit.begin(dict(self.volume))
            else:
                pvc = self.kube(p.cluster).get(PVCS.path(self.volume["namespace"], self.volume["pvc"]))
                step = unit.begin(pvc, self.volume.get("node"))
            return self._next(step)

    def resume(self, context: Any, event: dict) -> Any:
        with self._failures(context):
            if event.get("status") == "error":  # the trigger could not look: a retry looks again
                raise AirflowException(event.get("reason") or "the wait failed")
            return self._next(self._unit(context).resume(event["state"], event))

    def _next(self, step: Any) -> Any:
        from ys1000.volumes.steps import Done

        if isinstance(step, Done):
            self._log_record(step.record)
            return step.record
        self.log.info(
            "PVC %s: waiting for %s (deferred to the triggerer; no worker slot held)", self.key, step.what.get("label")
        )
        return self.defer_step(step, self.plan_obj.cluster)

    def _failures(self, context: Any):
        """A failure names the PVC; on the last try it is also left in XCom ``error`` for
        ``commit``, which then marks the backup PartiallyFailed naming this PVC."""
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                with engine_errors(f"PVC {self.key} of backup {self.backup_id(context)}"):
                    yield
            except Exception as exc:
                from airflow.sdk.exceptions import TaskDeferred

                if isinstance(exc, TaskDeferred):
                    raise
                if isinstance(exc, AirflowFailException) or self.last_try(context):
                    context["ti"].xcom_push(
                        key="error",
                        value={
                            "namespace": self.volume.get("namespace"),
                            "pvc": self.volume.get("pvc"),
                            "error": str(exc),
                        },
                    )
                raise

        return guard()

    def _log_record(self, r: dict) -> None:
        data = r.get("restic") or {}
        how = "+".join(k for k in ("csi", "restic") if k in r) or "skipped"
        self.log.info(
            "PVC %s: %s%s",
            self.key,
            how,
            f", {_size(data.get('total_bytes'))} ({_size(data.get('bytes_added'))} new)" if data else "",
        )


class VerifyBackupOperator(_BackupPlanOperator):
    """Verify the captured backup: checksums, decryption, every document, index ↔ archive.

    Runs when the volume tasks are done, also when some failed (``commit`` then marks the backup
    PartiallyFailed naming them), but only after a successful capture."""

    template_fields: Sequence[str] = ("plan", "backup_id_value")

    def __init__(
        self, *, backup_id: str = "{{ ti.xcom_pull(task_ids='capture', key='backup_id') }}", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.backup_id_value = backup_id

    def execute(self, context: Any) -> dict:
        from ys1000.backup.pipeline import verify

        if context["ti"].xcom_pull(task_ids="capture") is None:
            raise AirflowFailException("the capture did not complete in this run: there is no backup to verify")
        p = self.plan_obj
        bid = self.backup_id_value or self.backup_id(context)
        repo = self.repository(p.repository)
        with engine_errors(f"verification of backup {bid}"):
            self._sweep(context, bid)
            result = verify(repo, bid)
        self.log.info(
            "backup %s verified: %d objects, archive %s (%s uncompressed)\n  %s",
            bid,
            result.objects,
            _size(result.archive_size),
            _size(result.uncompressed_size),
            "\n  ".join(result.checks),
        )
        return {
            "backup_id": bid,
            "objects": result.objects,
            "archive_bytes": result.archive_size,
            "uncompressed_bytes": result.uncompressed_size,
            "ok": result.ok,
        }

    def _sweep(self, context: Any, bid: str) -> None:
        """The volume tasks are all done: nothing of theirs may still run (see ``steps.sweep``)."""
        from ys1000.volumes.steps import sweep

        items = context["ti"].xcom_pull(task_ids="preflight") or []
        if not items:
            return
        run_id = context["dag_run"].run_id
        gone = sweep(
            self.kube(self.plan_obj.cluster),
            [i["namespace"] for i in items],
            [f"{run_id}/volumes", f"{run_id}/export"],
            backup_id=bid,
        )
        for line in gone:
            self.log.warning("removed %s left by a cancelled volume task", line)


def collect_volume_records(ti: Any, items: list[dict], tasks: Sequence[str]) -> list[dict]:
    """The volume record of each PVC preflight listed, from the mapped tasks ``tasks`` (a later
    task's record wins); a PVC whose task failed gets an ``error`` record naming why."""
    records: dict[tuple[str, str], dict] = {}
    errors: dict[tuple[str, str], str] = {}
    for task_id in tasks:
        for i in range(len(items)):
            rec = ti.xcom_pull(task_ids=task_id, map_indexes=i)
            if rec:
                records[(rec["namespace"], rec["pvc"])] = rec
            err = ti.xcom_pull(task_ids=task_id, key="error", map_indexes=i)
            if err:
                errors[(err["namespace"], err["pvc"])] = err["error"]
    out = []
    for item in items:
        key = (item["namespace"], item["pvc"])
        rec = records.get(key)
        if rec is None:
            rec = {
                "namespace": key[0],
                "pvc": key[1],
                "error": errors.get(key) or "its volume task did not finish (see the task's log)",
            }
        elif key in errors and not rec.get("restic") and rec.get("method") == "snapshot_export":
            rec = {**rec, "error": f"export failed: {errors[key]}"}
        out.append(rec)
    return out


class CommitBackupOperator(_BackupPlanOperator):
    """Write the manifest (last, with each PVC's volume record) and the catalog entry: from now on
    the backup counts as complete. A PVC whose data is missing makes it ``PartiallyFailed`` and
    this task fails naming it. XCom and the log: the run's summary."""

    template_fields: Sequence[str] = ("plan", "backup_id_value")

    def __init__(
        self,
        *,
        backup_id: str = "{{ ti.xcom_pull(task_ids='capture', key='backup_id') }}",
        volumes_tasks: Sequence[str] = ("volumes",),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backup_id_value = backup_id
        self.volumes_tasks = list(volumes_tasks)

    def execute(self, context: Any) -> dict:
        from ys1000.backup.pipeline import commit, volume_failures

        p = self.plan_obj
        bid = self.backup_id_value or self.backup_id(context)
        repo = self.repository(p.repository)
        items = context["ti"].xcom_pull(task_ids="preflight") or []
        volumes = collect_volume_records(context["ti"], items, self.volumes_tasks)
        with engine_errors(f"commit of backup {bid}"):
            m = commit(repo, bid, volumes)
        summary: dict[str, Any] = {
            "backup_id": m.backup_id,
            "plan": m.plan,
            "status": m.status,
            "cluster": m.cluster_name,
            "namespaces": m.namespaces,
            "objects": m.total,
            "restorable": m.restorable,
            "counts": m.counts,
            "archive_bytes": m.archive.size,
            "uncompressed_bytes": m.uncompressed_size,
            "volumes": len(m.volumes),
            "warnings": m.warnings,
            "retain_until": m.retain_until.isoformat() if m.retain_until else None,
        }
        self.log.info(
            "backup %s %s (plan %s, cluster %s): %d objects (%d restorable) from %s; archive %s "
            "(%s uncompressed); %s%s",
            m.backup_id,
            m.status,
            m.plan,
            m.cluster_name,
            m.total,
            m.restorable,
            ", ".join(m.namespaces),
            _size(m.archive.size),
            _size(m.uncompressed_size),
            _counts(m.counts),
            "".join(f"\n  warning: {w}" for w in m.warnings),
        )
        anomaly = getattr(m, "anomaly", None) or {}
        if isinstance(anomaly, dict) and anomaly.get("suspicious"):
            reasons = [str(r) for r in anomaly.get("reasons") or []]
            summary["anomaly"] = {"suspicious": True, "reasons": reasons}
            self._alert_suspicious(context, m.backup_id, reasons)
        failures = volume_failures(m.volumes)
        if failures:
            # committed (the resources and the other PVCs' data are restorable), but the run must
            # not look green: the backup lacks data in its scope
            context["ti"].xcom_push(key="return_value", value=summary)
            raise AirflowFailException(
                f"backup {bid} is PartiallyFailed: the data of {len(failures)} PVC(s) is "
                "not in it:\n  " + "\n  ".join(failures)
            )
        from ys1000.airflow.assets import backup_assets, emit

        started = getattr(context.get("dag_run"), "start_date", None)
        emit(
            context,
            backup_assets(p),
            {
                "backup_id": m.backup_id,
                "plan": m.plan,
                "status": m.status,
                "objects": m.total,
                "bytes": m.archive.size + sum((v.get("restic") or {}).get("total_bytes") or 0 for v in m.volumes),
                "volumes": len(m.volumes),
                "duration_seconds": round((m.completed - started).total_seconds(), 1) if started else None,
            },
        )
        return summary

    def _alert_suspicious(self, context: Any, bid: str, reasons: list[str]) -> None:
        """A suspicious backup is alerted at once, through the plan's failure-alert channels."""
        from ys1000.notify.report import alert_plan

        p = self.plan_obj
        self.log.warning("backup %s is SUSPICIOUS:\n  %s", bid, "\n  ".join(reasons))
        text = "\n".join(
            [
                f"Backup {bid} of plan {p.name} (cluster {p.cluster}) does not look like the plan's earlier backups:",
                *(f"  - {r}" for r in reasons),
                "",
                "It is committed and marked suspicious: retention keeps the newest clean backup, and 'latest'",
                "in restores and drills skips this one. If the data was damaged (ransomware, a runaway job),",
                "restore from the newest clean backup: `ys1000 backups list` shows which.",
                *(
                    [
                        f"A review is waiting in Airflow (DAG {context['ti'].dag_id}, run {context['ti'].run_id}, task review)."
                    ]
                    if p.approval == "required"
                    else []
                ),
            ]
        )
        try:
            sent = alert_plan(
                self.config.config_dir,
                p,
                f"suspicious backup {bid} of plan {p.name}",
                text,
                what="suspicious-backup alert",
            )
            self.log.info("suspicious-backup alert sent: %s", ", ".join(sent) or "no channel configured")
        except Exception as exc:  # the backup is committed; a lost alert must not undo that
            self.log.error("the suspicious-backup alert could not be sent: %s", exc)


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
            report, volumes = expire_backups(
                repo,
                repository_config_for(p.repository, self.repository_spec(p.repository)),
                p.name,
                retention,
                kube=self.kube(p.cluster),
            )
            cleanup = repo.cleanup_incomplete(self.grace)
        for rel, ids in volumes.forgotten.items():
            self.log.info("  volume data: forgot %d restic snapshot(s) in %s and pruned", len(ids), rel)
        for content in volumes.snapshots_deleted:
            self.log.info("  volume data: deleted VolumeSnapshotContent %s", content)
        for err in volumes.errors:
            self.log.warning("  volume data: %s (the next retention run retries)", err)
        self.log.info(
            "retention of plan %s (keep %s): %d deleted, %d kept, %d waiting for Object Lock",
            p.name,
            format_duration(retention),
            len(report.deleted),
            len(report.kept),
            len(report.waiting),
        )
        for bid in report.deleted:
            self.log.info("  deleted backup %s", bid)
        for bid, why in report.protected.items():
            self.log.info("  kept backup %s past its retention: %s", bid, why)
        for w in [*report.waiting, *cleanup.waiting]:
            self.log.info(
                "  backup %s waits for its Object Lock until %s",
                w.backup_id,
                w.retain_until.isoformat() if w.retain_until else "an unknown date",
            )
        for bid in cleanup.deleted:
            self.log.info(
                "  removed incomplete backup %s (no manifest, older than %s)", bid, format_duration(self.grace)
            )
        for bid, err in {**report.errors, **cleanup.errors}.items():
            self.log.warning("  could not delete backup %s: %s", bid, err)
        return {
            "deleted": report.deleted,
            "kept": len(report.kept),
            "waiting": [
                {"backup_id": w.backup_id, "retain_until": w.retain_until.isoformat() if w.retain_until else None}
                for w in [*report.waiting, *cleanup.waiting]
            ],
            "incomplete_deleted": cleanup.deleted,
            "incomplete_in_flight": cleanup.in_flight,
            "protected": report.protected,
        }
