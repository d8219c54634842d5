"""``ys1000_migrate__<plan>``: incremental syncs and the cutover of a MigrationPlan, as one DAG.

Trigger params: ``mode`` (``incremental`` — the default, and what the plan's schedule runs — or
``cutover``) and ``stop_source`` (default from the plan). Tasks::

    preflight → [presync → presync_volumes → presync_commit → approve_cutover →]
              [pre_backup_hooks →] stop_source → sync → sync_volumes (one per PVC) → sync_commit
              → restore → start_target [→ post_restore_hooks]
                          every task after preflight ──→ undo → failed   (only after a failure)

With ``approval: required`` a cutover first syncs with the source still running (``presync``),
then asks a human (``ys1000.airflow.approval``); a rejection or no answer fails the run before
anything is stopped, and ``undo`` has nothing to undo.

In incremental mode only ``preflight`` and the three sync tasks do work (the others skip). ``undo`` runs when
any cutover task fails or is marked failed (cancel): the source gets its recorded replicas back
and the workloads the cutover restored into the target are removed; its log says what it undid.
``failed`` then fails the run, so a failed cutover never shows as a successful run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowSkipException

from ys1000.airflow.errors import engine_errors
from ys1000.airflow.operators import Ys1000Operator, run_stamp

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ys1000.config import Config, MigrationPlan


class _MigrationOperator(Ys1000Operator):
    template_fields: Sequence[str] = ("plan", "mode", "stop_source_param")

    def __init__(
        self,
        *,
        plan: str,
        mode: str = "{{ params.mode }}",
        stop_source: str = "{{ params.stop_source }}",
        cutover_only: bool = False,
        sync_task: str = "sync",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.mode = mode
        self.stop_source_param = stop_source
        self.cutover_only = cutover_only
        self.sync_task = sync_task  # "presync": the sync before an approval, source running

    @property
    def plan_obj(self) -> "MigrationPlan":
        from airflow.sdk.exceptions import AirflowFailException

        from ys1000.config import MigrationPlan

        plan = self.plan_named(self.plan)
        if not isinstance(plan, MigrationPlan):
            raise AirflowFailException(f"plan {self.plan!r} is a {plan.kind}, not a MigrationPlan")
        return plan

    @property
    def stopping(self) -> bool:
        return str(self.stop_source_param).lower() in ("true", "1", "yes")

    def spec(self):
        from ys1000.config.specs import migration_spec_for

        self.cluster_spec(self.plan_obj.target_cluster)  # a clear error for an unknown cluster
        return migration_spec_for(self.config, self.plan_obj)

    def ids(self, context: Any) -> tuple[str, str]:
        stamp = run_stamp(context)
        sync = self.mode if self.sync_task == "sync" else self.sync_task
        return f"{self.plan}-{sync}-{stamp}", f"{self.plan}-cutover-{stamp}"

    def execute(self, context: Any) -> Any:
        if self.cutover_only and self.mode != "cutover":
            raise AirflowSkipException(f"mode {self.mode}: nothing to do for {self.task_id}")
        p = self.plan_obj
        with engine_errors(f"migration {p.name} ({self.task_id})"):
            return self.run(context, p, self.spec(), self.kube(p.source_cluster), self.kube(p.target_cluster))

    def run(self, context, plan, spec, source, target):  # pragma: no cover - overridden
        raise NotImplementedError


class MigrationPreflightOperator(_MigrationOperator):
    """Both clusters and the repository reachable; the target has none of the namespaces this
    migration did not create itself (refuse with the list otherwise, before writing anything)."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import preflight

        self.repository(plan.repository, create=True)
        namespaces = preflight(source, target, spec)
        self.log.info(
            "migration %s (%s): %s → %s, namespaces %s",
            plan.name,
            self.mode,
            plan.source_cluster,
            plan.target_cluster,
            ", ".join(f"{n} → {spec.target_ns(n)}" for n in namespaces),
        )
        return namespaces


class StopSourceOperator(_MigrationOperator):
    """Cutover with stop_source: stop the source's workloads (``ys1000.migration.stop_source``),
    recording what they ran with in annotations, and wait for the app's pods to stop."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import stop_source

        if not self.stopping:
            raise AirflowSkipException("stop_source is false: the source keeps running (crash-consistent copy)")
        namespaces = context["ti"].xcom_pull(task_ids="preflight")
        recorded = stop_source(source, namespaces)
        for key, before in sorted(recorded.items()):
            self.log.info("  stopped %s (was %s)", key, json.dumps(before))
        return recorded


class SyncOperator(_MigrationOperator):
    """The sync's first step: the conflict check, the source's resources into a pending backup,
    each namespace's restic repository and the namespaces in the target. XCom: the PVCs to sync
    (``sync_volumes`` is mapped over them) and, under ``summary``, the sync's backup id."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import sync_options, sync_start

        backup_id, _ = self.ids(context)
        repo = self.repository(plan.repository, create=True)
        cluster = self.cluster_spec(plan.source_cluster)
        _, items = sync_start(
            source,
            target,
            repo,
            spec,
            backup_id,
            sync_options(spec, self.run_key(context), image=cluster.mover_image),
            repo_cfg=self._repo_config(),
        )
        context["ti"].xcom_push(key="summary", value={"backup_id": backup_id})
        self.log.info(
            "sync %s: resources captured; %d PVC(s) to sync: %s",
            backup_id,
            len(items),
            ", ".join(f"{i['namespace']}/{i['pvc']}" for i in items) or "none",
        )
        return items

    def _repo_config(self):
        from ys1000.airflow.connections import repository_config_for

        return repository_config_for(self.plan_obj.repository, self.repository_spec(self.plan_obj.repository))


class SyncVolumeOperator(SyncOperator):
    """One PVC of the sync (mapped; named namespace/PVC): its data into the repository from the
    source, then the target's PVC made equal to it — every wait deferred to the triggerer, in the
    cluster it concerns. A retry reattaches to its still-running mover. XCom: the PVC's record."""

    def __init__(self, *, volume: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volume = volume or {}

    def _unit(self, context: Any, plan, spec, source, target):
        from ys1000.migration import VolumeSync, sync_options

        backup_id, _ = self.ids(context)
        cluster = self.cluster_spec(plan.source_cluster)
        return VolumeSync(
            source,
            target,
            self._repo_config(),
            self.repository(plan.repository).restic_password(),
            spec,
            sync_options(spec, self.run_key(context), image=cluster.mover_image),
            backup_id,
        )

    def run(self, context, plan, spec, source, target):
        from ys1000.kube.discovery import PVCS

        v = self.volume
        with self._failures(context), engine_errors(f"migration {plan.name} (sync of {self.key})"):
            unit = self._unit(context, plan, spec, source, target)
            return self._next(unit.begin(source.get(PVCS.path(v["namespace"], v["pvc"])), v.get("node")), plan)

    def resume(self, context: Any, event: dict) -> Any:
        from airflow.sdk.exceptions import AirflowException

        p = self.plan_obj
        with self._failures(context), engine_errors(f"migration {p.name} (sync of {self.key})"):
            if event.get("status") == "error":  # the trigger could not look: a retry looks again
                raise AirflowException(event.get("reason") or "the wait failed")
            unit = self._unit(context, p, self.spec(), self.kube(p.source_cluster), self.kube(p.target_cluster))
            return self._next(unit.resume(event["state"], event), p)

    @property
    def key(self) -> str:
        return f"{self.volume.get('namespace')}/{self.volume.get('pvc')}"

    def _next(self, step: Any, plan) -> Any:
        from ys1000.volumes.steps import Done

        if isinstance(step, Done):
            r = step.record
            self.log.info(
                "PVC %s: %s bytes sent (of %s)%s",
                self.key,
                r.get("bytes_added"),
                r.get("total_bytes"),
                "; target filled" if r.get("restored") else "",
            )
            return r
        role = step.what.get("cluster", "source")
        cluster = plan.source_cluster if role == "source" else plan.target_cluster
        self.log.info(
            "PVC %s: waiting for %s in cluster %s (deferred to the triggerer)",
            self.key,
            step.what.get("label"),
            cluster,
        )
        return self.defer_step(step, cluster)

    def _failures(self, context: Any):
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except Exception as exc:
                from airflow.sdk.exceptions import AirflowFailException

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


class SyncCommitOperator(SyncOperator):
    """The sync's last step: verify and commit its backup with every PVC's record (a PVC whose
    task failed is named); fails when a PVC was not synced. XCom: backup id and bytes sent."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import failed_sync, sync_finish

        ti = context["ti"]
        first, volumes_task = self.sync_task, f"{self.sync_task}_volumes"
        backup_id = ti.xcom_pull(task_ids=first, key="summary")["backup_id"]
        items = ti.xcom_pull(task_ids=first) or []
        if items:  # the sync tasks are all done: nothing of theirs may still run (steps.sweep)
            from ys1000.volumes.steps import sweep

            key = f"{context['dag_run'].run_id}/{volumes_task}"
            for kube, namespaces in (
                (source, [i["namespace"] for i in items]),
                (target, [spec.target_ns(i["namespace"]) for i in items]),
            ):
                for line in sweep(kube, namespaces, [key], backup_id=backup_id):
                    self.log.warning("removed %s left by a cancelled sync task", line)
        records = []
        for i, item in enumerate(items):
            rec = ti.xcom_pull(task_ids=volumes_task, map_indexes=i)
            err = ti.xcom_pull(task_ids=volumes_task, key="error", map_indexes=i)
            records.append(rec or failed_sync(item, (err or {}).get("error") or "its sync task did not finish"))
        result = sync_finish(self.repository(plan.repository), backup_id, records)
        self.log.info(
            "sync %s: %d bytes sent in all; PVCs created in the target this time: %s",
            backup_id,
            result.bytes_sent,
            ", ".join(result.created_pvcs) or "none",
        )
        summary = {"backup_id": backup_id, "bytes_sent": result.bytes_sent, "volumes": result.volumes}
        from ys1000.airflow.assets import emit, migration_assets

        emit(
            context,
            migration_assets(plan),
            {"plan": plan.name, "mode": self.mode, "target": plan.target_cluster, **summary},
        )
        return summary


class CutoverRestoreOperator(_MigrationOperator):
    """Restore the final sync's resources into the target (namespaces and PVCs are kept)."""

    def run(self, context, plan, spec, source, target):
        from airflow.sdk.exceptions import AirflowFailException

        from ys1000.migration import restore_resources

        backup_id = context["ti"].xcom_pull(task_ids="sync_commit")["backup_id"]
        _, restore_id = self.ids(context)
        report = restore_resources(target, self.repository(plan.repository), spec, backup_id, restore_id)
        self.log.info("restored %s into %s: %s %s", backup_id, plan.target_cluster, report.status, report.counts)
        if report.failed:
            raise AirflowFailException("; ".join(f"{i.kind} {i.namespace}/{i.name}: {i.reason}" for i in report.failed))
        return {"restore_id": restore_id, "counts": report.counts}


class StartTargetOperator(_MigrationOperator):
    """Scale the target's workloads to the replicas recorded from the source."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import recorded_state, start_target

        namespaces = context["ti"].xcom_pull(task_ids="preflight")
        started = start_target(target, spec, recorded_state(source, namespaces))
        for line in started:
            self.log.info("  started %s", line)
        from ys1000.airflow.assets import emit, migration_assets

        sync = context["ti"].xcom_pull(task_ids="sync_commit") or {}
        emit(
            context,
            migration_assets(plan),
            {"plan": plan.name, "mode": "cutover", "cutover": True, "target": plan.target_cluster, **sync},
        )
        return started


class UndoCutoverOperator(_MigrationOperator):
    """After a failed or cancelled cutover: the source back to its recorded replicas, the target
    without the workloads the cutover restored."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import undo

        refused = _refusal(context)
        if refused:
            raise AirflowSkipException(f"{refused}: nothing was stopped or restored, nothing to undo")
        namespaces = context["ti"].xcom_pull(task_ids="preflight") or []
        _, restore_id = self.ids(context)
        undone = undo(source, target, spec, namespaces, restore_id)
        self.log.warning(
            "cutover of %s failed or was cancelled; undone:\n  %s", plan.name, "\n  ".join(undone) or "nothing to undo"
        )
        return undone


def _cutover_hooks_operator():
    from ys1000.airflow.hook_operators import RunHooksOperator

    class CutoverHooksOperator(RunHooksOperator):
        """The plan's hooks of one phase, in cutover runs only (PreBackup before the source stops,
        PostRestore after the app started in the target, e.g. the WordPress URL rewrite)."""

        template_fields: Sequence[str] = (*RunHooksOperator.template_fields, "mode")

        def __init__(self, *, mode: str = "{{ params.mode }}", **kwargs: Any) -> None:
            super().__init__(plan_kind="MigrationPlan", **kwargs)
            self.mode = mode

        def execute(self, context: Any) -> list[dict]:
            if self.mode != "cutover":
                raise AirflowSkipException(f"mode {self.mode}: hooks run at the cutover")
            return super().execute(context)

    return CutoverHooksOperator


class CutoverFailedOperator(Ys1000Operator):
    """Fails the run after a failed cutover (the ``undo`` leaf succeeding would otherwise make the
    run look successful)."""

    def execute(self, context: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        refused = _refusal(context)
        if refused:
            raise AirflowFailException(f"{refused}; the source keeps running as it was")
        raise AirflowFailException(
            "the migration failed or was cancelled; the failed task's log says why and "
            "the undo task's log lists what was undone"
        )


def _refusal(context: Any) -> str | None:
    """ "cutover rejected by X: why" / "no answer in time" when the approval refused the cutover."""
    rec = context["ti"].xcom_pull(task_ids="approve_cutover", key="decision")
    if not isinstance(rec, dict) or rec.get("decision") in (None, "approved"):
        return None
    if rec["decision"] == "timed_out":
        return "the cutover was not approved in time"
    return f"the cutover was rejected by {rec.get('by')}" + (f" ({rec['comment']})" if rec.get("comment") else "")


def migration_dag(plan: "MigrationPlan", config: "Config", path: Path) -> "DAG":
    from ys1000.airflow.assets import migration_assets
    from ys1000.airflow.dagfactory import MAP_INDEX_TEMPLATE, plan_dag, pool_for
    from ys1000.config import to_timetable

    common: dict[str, Any] = {"plan": plan.name, "config_dir": str(config.config_dir)}
    doc = "\n".join(
        [
            f"# Migration plan `{plan.name}`",
            "",
            plan.description or "",
            f"- from cluster `{plan.source_cluster}` to `{plan.target_cluster}` through repository `{plan.repository}`",
            f"- namespaces: {', '.join(plan.namespaces.names) or '(by pattern/selector)'}; mapping: {plan.namespace_mapping or 'none'}",
            f"- StorageClass mapping: {plan.storage_class_mapping or 'none'}; node constraints removed: {plan.remove_node_constraints}",
            f"- source: `{path}`",
            "",
            "Trigger with `mode: incremental` to sync volume data (repeatable; each run sends only the changes), "
            "then with `mode: cutover` to stop the source (unless `stop_source: false`), sync a last time, "
            "restore the resources into the target and start the app there. A failed or cancelled cutover "
            "is undone by the `undo` task.",
        ]
    )
    with plan_dag(
        plan,
        config,
        kind="migration",
        clusters=[plan.source_cluster, plan.target_cluster],
        pool=pool_for(plan.source_cluster),
        schedule=to_timetable(plan.schedule),
        doc=doc,
        description=f"Migrate {plan.source_cluster} → {plan.target_cluster}",
        params={
            "mode": Param(
                "incremental",
                enum=["incremental", "cutover"],
                description="incremental: sync volume data only; cutover: move the app",
            ),
            "stop_source": Param(
                plan.stop_source, type="boolean", description="scale the source app to zero for a consistent final copy"
            ),
        },
    ) as dag:
        preflight = MigrationPreflightOperator(task_id="preflight", execution_timeout=timedelta(minutes=10), **common)
        stop = StopSourceOperator(
            task_id="stop_source", cutover_only=True, retries=1, execution_timeout=timedelta(minutes=30), **common
        )

        def sync_tasks(first: str, **extra: Any) -> list:
            sync = SyncOperator(
                task_id=first,
                trigger_rule="none_failed",
                execution_timeout=timedelta(hours=2),
                sync_task=first,
                **extra,
                **common,
            )
            sync_volumes = SyncVolumeOperator.partial(
                task_id=f"{first}_volumes",
                pool_slots=1,
                execution_timeout=timedelta(hours=6),
                map_index_template=MAP_INDEX_TEMPLATE,
                sync_task=first,
                **extra,
                **common,
            ).expand(volume=sync.output)
            sync_commit = SyncCommitOperator(
                task_id=f"{first}_commit",
                trigger_rule="none_failed",
                execution_timeout=timedelta(hours=1),
                outlets=migration_assets(plan),
                sync_task=first,
                **extra,
                **common,
            )
            return [sync, sync_volumes, sync_commit]

        sync, sync_volumes, sync_commit = sync_tasks("sync")
        ask: list = []
        if plan.approval == "required":  # sync with the source running, then ask before stopping it
            from ys1000.airflow.approval import cutover_approval_operator

            ask = [
                *sync_tasks("presync", cutover_only=True),
                cutover_approval_operator()(task_id="approve_cutover", retries=0, **common),
            ]
        restore = CutoverRestoreOperator(
            task_id="restore", cutover_only=True, execution_timeout=timedelta(hours=2), **common
        )
        start = StartTargetOperator(
            task_id="start_target",
            cutover_only=True,
            execution_timeout=timedelta(minutes=30),
            outlets=migration_assets(plan),
            **common,
        )
        undo = UndoCutoverOperator(
            task_id="undo",
            cutover_only=True,
            trigger_rule="one_failed",
            retries=3,
            execution_timeout=timedelta(minutes=30),
            **common,
        )
        failed = CutoverFailedOperator(
            task_id="failed", trigger_rule="one_failed", retries=0, config_dir=str(config.config_dir)
        )
        hooks = _cutover_hooks_operator()
        phases = {h.phase for h in plan.hooks}
        pre = (
            [hooks(task_id="pre_backup_hooks", phase="PreBackup", execution_timeout=timedelta(hours=1), **common)]
            if "PreBackup" in phases
            else []
        )
        post = (
            [
                hooks(
                    task_id="post_restore_hooks",
                    phase="PostRestore",
                    trigger_rule="none_failed",
                    execution_timeout=timedelta(hours=1),
                    **common,
                )
            ]
            if "PostRestore" in phases
            else []
        )
        chain = [preflight, *ask, *pre, stop, sync, sync_volumes, sync_commit, restore, start, *post]
        for upstream, downstream in pairwise(chain):
            upstream >> downstream
        cutover = [*ask, *pre, stop, sync, sync_volumes, sync_commit, restore, start, *post]
        cutover >> undo
        [*cutover, undo] >> failed
    return dag
