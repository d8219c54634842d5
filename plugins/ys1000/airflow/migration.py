"""``ys1000_migrate__<plan>``: incremental syncs and the cutover of a MigrationPlan, as one DAG.

Trigger params: ``mode`` (``incremental`` — the default, and what the plan's schedule runs — or
``cutover``) and ``stop_source`` (default from the plan). Tasks::

    preflight → [pre_backup_hooks →] stop_source → sync → restore → start_target [→ post_restore_hooks]
                          every task after preflight ──→ undo → failed   (only after a failure)

In incremental mode only ``preflight`` and ``sync`` do work (the others skip). ``undo`` runs when
any cutover task fails or is marked failed (cancel): the source gets its recorded replicas back
and the workloads the cutover restored into the target are removed; its log says what it undid.
``failed`` then fails the run, so a failed cutover never shows as a successful run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowSkipException

from ys1000.airflow.errors import engine_errors
from ys1000.airflow.operators import Ys1000Operator, run_time

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ys1000.config import Config, MigrationPlan


class _MigrationOperator(Ys1000Operator):
    template_fields: Sequence[str] = ("plan", "mode", "stop_source_param")

    def __init__(self, *, plan: str, mode: str = "{{ params.mode }}",
                 stop_source: str = "{{ params.stop_source }}", cutover_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.mode = mode
        self.stop_source_param = stop_source
        self.cutover_only = cutover_only

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
        stamp = f"{run_time(context):%Y%m%d%H%M%S}"
        return f"{self.plan}-{self.mode}-{stamp}", f"{self.plan}-cutover-{stamp}"

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
        self.log.info("migration %s (%s): %s → %s, namespaces %s", plan.name, self.mode, plan.source_cluster,
                      plan.target_cluster, ", ".join(f"{n} → {spec.target_ns(n)}" for n in namespaces))
        return namespaces


class StopSourceOperator(_MigrationOperator):
    """Cutover with stop_source: scale the source's Deployments/StatefulSets to 0, recording their
    replicas in an annotation, and wait for the app's pods to stop."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import stop_source

        if not self.stopping:
            raise AirflowSkipException("stop_source is false: the source keeps running (crash-consistent copy)")
        namespaces = context["ti"].xcom_pull(task_ids="preflight")
        recorded = stop_source(source, namespaces)
        for key, n in sorted(recorded.items()):
            self.log.info("  stopped %s (had %d replicas)", key, n)
        return recorded


class SyncOperator(_MigrationOperator):
    """Source → repository → target PVCs; only what changed since the previous sync is sent."""

    template_fields: Sequence[str] = (*_MigrationOperator.template_fields,)

    def run(self, context, plan, spec, source, target):
        from ys1000.airflow.connections import repository_config_for
        from ys1000.migration import sync

        backup_id, _ = self.ids(context)
        repo = self.repository(plan.repository, create=True)
        cluster = self.cluster_spec(plan.source_cluster)
        result = sync(source, target, repo, repository_config_for(plan.repository, self.repository_spec(plan.repository)),
                      spec, backup_id, run_id=f"{context['dag_run'].run_id}/{self.task_id}",
                      image=cluster.mover_image, max_concurrent=cluster.max_concurrent_movers)
        for v in result.volumes:
            self.log.info("  %s/%s: %d bytes sent (of %d)", v["namespace"], v["pvc"], v["bytes_added"], v["total_bytes"])
        self.log.info("sync %s: %d bytes sent in all; PVCs created in the target this time: %s", backup_id,
                      result.bytes_sent, ", ".join(result.created_pvcs) or "none")
        return {"backup_id": backup_id, "bytes_sent": result.bytes_sent, "volumes": result.volumes}


class CutoverRestoreOperator(_MigrationOperator):
    """Restore the final sync's resources into the target (namespaces and PVCs are kept)."""

    def run(self, context, plan, spec, source, target):
        from airflow.sdk.exceptions import AirflowFailException

        from ys1000.migration import restore_resources

        backup_id = context["ti"].xcom_pull(task_ids="sync")["backup_id"]
        _, restore_id = self.ids(context)
        report = restore_resources(target, self.repository(plan.repository), spec, backup_id, restore_id)
        self.log.info("restored %s into %s: %s %s", backup_id, plan.target_cluster, report.status, report.counts)
        if report.failed:
            raise AirflowFailException("; ".join(f"{i.kind} {i.namespace}/{i.name}: {i.reason}" for i in report.failed))
        return {"restore_id": restore_id, "counts": report.counts}


class StartTargetOperator(_MigrationOperator):
    """Scale the target's workloads to the replicas recorded from the source."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import recorded_replicas, start_target

        namespaces = context["ti"].xcom_pull(task_ids="preflight")
        started = start_target(target, spec, recorded_replicas(source, namespaces))
        for line in started:
            self.log.info("  started %s", line)
        return started


class UndoCutoverOperator(_MigrationOperator):
    """After a failed or cancelled cutover: the source back to its recorded replicas, the target
    without the workloads the cutover restored."""

    def run(self, context, plan, spec, source, target):
        from ys1000.migration import undo

        namespaces = context["ti"].xcom_pull(task_ids="preflight") or []
        _, restore_id = self.ids(context)
        undone = undo(source, target, spec, namespaces, restore_id)
        self.log.warning("cutover of %s failed or was cancelled; undone:\n  %s", plan.name,
                         "\n  ".join(undone) or "nothing to undo")
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

        raise AirflowFailException("the migration failed or was cancelled; the failed task's log says why and "
                                   "the undo task's log lists what was undone")


def migration_dag(plan: "MigrationPlan", config: "Config", path: Path) -> "DAG":
    from ys1000.airflow.dagfactory import plan_dag, pool_for
    from ys1000.config import to_timetable

    common = {"plan": plan.name, "config_dir": str(config.config_dir)}
    doc = "\n".join([
        f"# Migration plan `{plan.name}`", "", plan.description or "",
        f"- from cluster `{plan.source_cluster}` to `{plan.target_cluster}` through repository `{plan.repository}`",
        f"- namespaces: {', '.join(plan.namespaces.names) or '(by pattern/selector)'}; mapping: {plan.namespace_mapping or 'none'}",
        f"- StorageClass mapping: {plan.storage_class_mapping or 'none'}; node constraints removed: {plan.remove_node_constraints}",
        f"- source: `{path}`", "",
        "Trigger with `mode: incremental` to sync volume data (repeatable; each run sends only the changes), "
        "then with `mode: cutover` to stop the source (unless `stop_source: false`), sync a last time, "
        "restore the resources into the target and start the app there. A failed or cancelled cutover "
        "is undone by the `undo` task.",
    ])
    with plan_dag(
        plan, config, kind="migration", clusters=[plan.source_cluster, plan.target_cluster],
        pool=pool_for(plan.source_cluster), schedule=to_timetable(plan.schedule), doc=doc,
        description=f"Migrate {plan.source_cluster} → {plan.target_cluster}",
        params={
            "mode": Param("incremental", enum=["incremental", "cutover"],
                          description="incremental: sync volume data only; cutover: move the app"),
            "stop_source": Param(plan.stop_source, type="boolean",
                                 description="scale the source app to zero for a consistent final copy"),
        },
    ) as dag:
        preflight = MigrationPreflightOperator(task_id="preflight", execution_timeout=timedelta(minutes=10), **common)
        stop = StopSourceOperator(task_id="stop_source", cutover_only=True, retries=1,
                                  execution_timeout=timedelta(minutes=30), **common)
        sync = SyncOperator(task_id="sync", trigger_rule="none_failed", execution_timeout=timedelta(hours=6), **common)
        restore = CutoverRestoreOperator(task_id="restore", cutover_only=True,
                                         execution_timeout=timedelta(hours=2), **common)
        start = StartTargetOperator(task_id="start_target", cutover_only=True,
                                    execution_timeout=timedelta(minutes=30), **common)
        undo = UndoCutoverOperator(task_id="undo", cutover_only=True, trigger_rule="one_failed", retries=3,
                                   execution_timeout=timedelta(minutes=30), **common)
        failed = CutoverFailedOperator(task_id="failed", trigger_rule="one_failed", retries=0,
                                       config_dir=str(config.config_dir))
        hooks = _cutover_hooks_operator()
        phases = {h.phase for h in plan.hooks}
        pre = [hooks(task_id="pre_backup_hooks", phase="PreBackup", execution_timeout=timedelta(hours=1),
                     **common)] if "PreBackup" in phases else []
        post = [hooks(task_id="post_restore_hooks", phase="PostRestore", trigger_rule="none_failed",
                      execution_timeout=timedelta(hours=1), **common)] if "PostRestore" in phases else []
        chain = [preflight, *pre, stop, sync, restore, start, *post]
        for upstream, downstream in zip(chain, chain[1:]):
            upstream >> downstream
        cutover = [*pre, stop, sync, restore, start, *post]
        cutover >> undo
        [*cutover, undo] >> failed
    return dag
