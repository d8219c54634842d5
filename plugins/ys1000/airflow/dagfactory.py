"""Plans in ``config/`` → Airflow DAGs.

- ``BackupPlan``  → ``ys1000_backup__<plan>``: preflight → capture → volumes → verify → commit →
  retention; with hooks/consistency: preflight → pre_backup_hooks → quiesce → capture → volumes →
  resume → post_backup_hooks → … (``hook_operators.chain_with_hooks``).
- ``RestorePlan`` → ``ys1000_restore__<plan>``: preflight → [pre_restore_hooks →] restore
  [→ post_restore_hooks].
- one generic ``ys1000_restore`` DAG (no schedule) whose trigger form (Params) asks for the backup,
  target cluster, mappings, selection, existing-resource policy and dry run.
- ``MigrationPlan`` → ``ys1000_migrate__<plan>`` (``ys1000.airflow.migration``): incremental syncs and cutover.

Cheap to parse: the factory reads YAML and builds DAG objects; no cluster, S3, database or
Variable access (operators resolve connections in ``execute``, providers are imported there).
When a task runs, ``get_parsing_context().dag_id`` names the DAG, and only that one is built.

Broken plan files. Airflow keys import errors by the *Python file* that was parsed, and it marks
every DAG defined by a file that has an import error stale (``DagModel.is_stale``,
``has_import_errors``: the scheduler stops them). So a broken plan must not raise in the factory
file, or one bad plan would stop every plan. Instead:

- ``dags/ys1000_dags.py`` (``register``) builds the DAGs of every valid plan and skips broken ones;
- ``dags/ys1000_config_errors.py`` (``raise_plan_errors``) defines no DAG and raises one
  ``PlanConfigError`` listing each broken plan file with its field, value and what is allowed.
  Its import error is what the UI's "Import errors" panel shows; as the file defines no DAG, the
  other plans' DAGs stay active. When every plan is fixed, the file parses cleanly and the
  error disappears.

Errors in ``clusters.yaml``/``repositories.yaml``/``policies.yaml`` invalidate every plan, so
then the factory file itself raises (one import error; no plan DAG is trustworthy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ys1000.notify import failure_callbacks

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from ys1000.config import BackupPlan, Config, RestorePlan

GENERIC_RESTORE_DAG_ID = "ys1000_restore"
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)  # fixed: keeps the serialized DAG stable
POOL_PREFIX = "ys1000_cluster_"

RETRIES = 3
RETRY_DELAY = timedelta(seconds=30)
RETRY_BACKOFF = 2.0  # 30 s, 60 s, 120 s
MAX_RETRY_DELAY = timedelta(minutes=10)

#: ``execution_timeout`` per task id.
TIMEOUTS = {
    "preflight": timedelta(minutes=10),
    "capture": timedelta(hours=2),
    "volumes": timedelta(hours=4),
    "verify": timedelta(hours=1),
    "commit": timedelta(minutes=10),
    "retention": timedelta(minutes=30),
    "restore": timedelta(hours=4),
}


class PlanConfigError(ValueError):
    """One or more plan files are invalid; the message names each file, field and problem."""


def pool_for(cluster: str) -> str:
    """The Airflow pool of a cluster (jobs on one cluster queue, F32)."""
    return f"{POOL_PREFIX}{cluster}"


def pool_slots_for(config: "Config", cluster: str) -> int:
    """A cluster pool's size: its ``max_concurrent_movers``. Each per-PVC volume task takes one
    slot (so that many movers run at once, deferred tasks counted); every other task of a plan
    takes them all, so a second job on the same cluster waits for the first one's steps."""
    return config.clusters[cluster].max_concurrent_movers if cluster in config.clusters else 1


@dataclass
class Loaded:
    """What the factory built: DAGs by id, and errors by plan file (display path → message)."""

    config_dir: Path
    dags: dict[str, "DAG"] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


#: timetables by (cron expressions, time zone). Airflow's timetables are values (compared by
#: expression and zone); building one parses the cron and writes its description (~1 ms), the
#: largest single cost per DAG with 1,000 plans, while plans share a handful of schedules.
_TIMETABLES: dict[tuple, Any] = {}

#: failure callbacks by plan ``notify`` during one ``load`` (reports.yaml is read once per load;
#: None outside ``load``, where each call reads it).
_CALLBACKS: dict[str, list] | None = None

#: the DAG arguments Airflow otherwise looks up in its configuration for each DAG (three lookups,
#: each scanning the environment: a third of building 1,000 DAGs here), read once per ``load``
_DAG_DEFAULTS: dict[str, Any] | None = None


def _dag_defaults() -> dict[str, Any]:
    """What ``DAG()`` would read from Airflow's configuration when not given, read now."""
    if _DAG_DEFAULTS is not None:
        return _DAG_DEFAULTS
    from airflow.sdk.configuration import conf

    return {
        "max_active_tasks": conf.getint("core", "max_active_tasks_per_dag"),
        "max_consecutive_failed_dag_runs": conf.getint("core", "max_consecutive_failed_dag_runs_per_dag"),
        "disable_bundle_versioning": conf.getboolean("dag_processor", "disable_bundle_versioning"),
    }


def timetable(schedule: Any) -> Any:
    """``ys1000.config.to_timetable(schedule)``, one instance per distinct cron and zone."""
    from ys1000.config import to_timetable
    from ys1000.config.schedules import cron_expressions

    key = (tuple(cron_expressions(schedule)), getattr(schedule, "timezone", None))
    if key not in _TIMETABLES:
        _TIMETABLES[key] = to_timetable(schedule)
    return _TIMETABLES[key]


def _failure_callbacks(config: "Config", plan: Any = None) -> list:
    if _CALLBACKS is None:
        return failure_callbacks(config.config_dir, plan=plan)
    key = repr(getattr(plan, "notify", None))
    if key not in _CALLBACKS:
        _CALLBACKS[key] = failure_callbacks(config.config_dir, plan=plan)
    return list(_CALLBACKS[key])


def _resolve_dir(config_dir: str | Path | None) -> Path:
    from ys1000.config import default_config_dir

    return Path(config_dir) if config_dir else default_config_dir()


def load(config_dir: str | Path | None = None, *, only_dag_id: str | None = None) -> Loaded:
    """Build the DAGs of every valid plan (only ``only_dag_id`` when given) and collect the errors
    of broken plan files. Raises ``ConfigError`` when the shared config files are invalid."""
    from ys1000.config import load_plans

    global _CALLBACKS, _DAG_DEFAULTS
    cdir = _resolve_dir(config_dir).resolve()
    config, results = load_plans(cdir)
    out = Loaded(cdir)
    _CALLBACKS = {}
    _DAG_DEFAULTS = _dag_defaults()
    try:
        _build(out, config, results, cdir, only_dag_id)
    finally:
        _CALLBACKS = _DAG_DEFAULTS = None
    return out


def _build(out: Loaded, config: "Config", results: dict, cdir: Path, only_dag_id: str | None) -> None:
    from ys1000.config import BackupPlan, ConfigError, MigrationPlan, RestorePlan
    from ys1000.config.loader import display_path

    for path, result in results.items():
        if isinstance(result, ConfigError):
            out.errors[display_path(path, cdir)] = str(result)
            continue
        plan = result
        if only_dag_id and only_dag_id not in (plan.dag_id, drill_dag_id(plan)):
            continue
        try:
            if isinstance(plan, BackupPlan):
                out.dags[plan.dag_id] = backup_dag(plan, config, path)
                if plan.drill is not None and (not only_dag_id or only_dag_id == drill_dag_id(plan)):
                    out.dags[drill_dag_id(plan)] = drill_dag(plan, config, path)
            elif isinstance(plan, RestorePlan):
                out.dags[plan.dag_id] = restore_plan_dag(plan, config, path)
            elif isinstance(plan, MigrationPlan):
                from ys1000.airflow.migration import migration_dag

                out.dags[plan.dag_id] = migration_dag(plan, config, path)
        except Exception as exc:  # a plan that validates but cannot become a DAG: that file only
            shown = display_path(path, cdir)
            out.errors[shown] = f"{shown}: cannot build DAG {plan.dag_id}: {type(exc).__name__}: {exc}"
    if (not only_dag_id or only_dag_id == GENERIC_RESTORE_DAG_ID) and config.repositories and config.clusters:
        out.dags[GENERIC_RESTORE_DAG_ID] = generic_restore_dag(config)


def build_dags(config_dir: str | Path | None = None) -> dict[str, "DAG"]:
    """Every DAG the configuration defines (broken plan files are skipped; see ``plan_errors``)."""
    return load(config_dir).dags


def plan_errors(config_dir: str | Path | None = None) -> dict[str, str]:
    """Broken plan files: display path → message naming the file, field and problem."""
    return load(config_dir).errors


def _parsing_dag_id() -> str | None:
    from airflow.sdk import get_parsing_context

    return get_parsing_context().dag_id


def register(globals_dict: dict[str, Any], config_dir: str | Path | None = None) -> dict[str, "DAG"]:
    """For the factory entry file: put the DAGs into the module's globals (Airflow finds them
    there). When a task runs, only the DAG being run is built."""
    dag_id = _parsing_dag_id()
    loaded = load(config_dir, only_dag_id=dag_id)
    if dag_id and dag_id not in loaded.dags:  # not one of ours (or renamed): build all
        loaded = load(config_dir)
    for dag_id, dag in loaded.dags.items():
        globals_dict[re.sub(r"\W", "_", dag_id)] = dag
    return loaded.dags


def raise_plan_errors(config_dir: str | Path | None = None) -> None:
    """For the errors entry file: raise ``PlanConfigError`` listing every broken plan file."""
    if _parsing_dag_id():
        return  # a task is running: it only needs its own DAG, from the factory file
    try:
        loaded = load(config_dir)
    except Exception:
        return  # the shared config is broken: the factory file reports that
    if loaded.errors:
        n = len(loaded.errors)
        raise PlanConfigError(
            f"{n} plan file{'s' if n > 1 else ''} in {loaded.config_dir} {'are' if n > 1 else 'is'} invalid "
            "(their DAGs are not built; the other plans' DAGs are unaffected):\n" + "\n".join(loaded.errors.values())
        )


# -- DAGs ---------------------------------------------------------------------------------------


def _default_args(owner: str, pool: str | None, callbacks: list | None = None, pool_slots: int = 1) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": owner,
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": RETRY_BACKOFF,
        "max_retry_delay": MAX_RETRY_DELAY,
        # a started job's later tasks before another job's first ones (they share the pool)
        "weight_rule": "upstream",
    }
    if pool:
        args["pool"] = pool
        args["pool_slots"] = pool_slots
    if callbacks:
        args["on_failure_callback"] = callbacks  # failure alerts (reports.yaml, the plan's notify)
    return args


def plan_dag(
    plan: Any,
    config: "Config",
    *,
    kind: str,
    clusters: list[str],
    schedule: Any,
    pool: str,
    doc: str,
    description: str,
    dag_id: str | None = None,
    **extra: Any,
) -> "DAG":
    """The DAG of one plan file, with what backup, restore and migration plans have in common:
    one run at a time, no catch-up, the plan's owner and tags, its cluster's pool, failure alerts."""
    from airflow.sdk import DAG

    return DAG(
        auto_register=False,  # found through the factory module's globals only
        dag_id=dag_id or plan.dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=list(dict.fromkeys(["ys1000", kind, *clusters, *plan.tags])),
        doc_md=doc,
        description=(plan.description or description)[:200],
        default_args=_default_args(
            plan.owner,
            pool,
            _failure_callbacks(config, plan),
            pool_slots=pool_slots_for(config, clusters[0]),
        ),
        **_dag_defaults(),
        **extra,
    )


def _doc_backup(plan: "BackupPlan", config: "Config", path: Path) -> str:
    policy = config.policy_for(plan)
    policy_name = plan.policy if isinstance(plan.policy, str) else "inline"
    ns = plan.namespaces
    sel = ", ".join([*ns.names, *ns.globs] + ([f"selector `{ns.selector}`"] if ns.selector else []))
    repo = config.repositories[plan.repository]
    lines = [
        f"### Backup plan `{plan.name}`",
        "",
        plan.description or "",
        "",
        f"- **Cluster**: `{plan.cluster}` (connection `{config.clusters[plan.cluster].connection_id}`, "
        f"pool `{pool_for(plan.cluster)}`)",
        f"- **Repository**: `{plan.repository}` ({repo.describe()})",
        f"- **Namespaces**: {sel}",
        f"- **Policy** ({policy_name}): scope `{policy.scope}`, method `{policy.method}`, "
        f"schedule: {policy.schedule.describe()}, retention {_fmt(policy.retention)}",
        f"- **Limits**: {plan.limits.max_namespaces} namespaces, {plan.limits.max_pods} pods, "
        f"{plan.limits.max_pvcs} PVCs",
        f"- **Plan file**: `{path}`",
        "",
        "Tasks: `preflight` (connections, namespaces, limits, the PVCs to copy) → `capture` (resources "
        "into a pending backup) → `volumes` (one task per PVC, named namespace/PVC; movers and snapshots "
        "are waited for in the triggerer) → `verify` (checksums, decryption, documents) → `commit` "
        "(manifest: the backup is complete; PartiallyFailed, naming it, when a PVC's data is missing) → "
        "`retention` (old and incomplete backups removed).",
    ]
    return "\n".join(lines)


def _fmt(td: timedelta) -> str:
    from ys1000.config import format_duration

    return format_duration(td)


MAP_INDEX_TEMPLATE = "{{ task.volume['namespace'] }}/{{ task.volume['pvc'] }}"


def backup_dag(plan: "BackupPlan", config: "Config", path: Path) -> "DAG":
    """``ys1000_backup__<plan>``: preflight → capture → volumes (one per PVC) [→ wait → export
    (one per PVC)] → verify → commit → retention."""
    from ys1000.airflow.operators import (
        BackupPreflightOperator,
        CaptureResourcesOperator,
        CommitBackupOperator,
        RetentionOperator,
        VerifyBackupOperator,
        VolumeDataOperator,
    )
    from ys1000.airflow.assets import backup_assets

    common: dict[str, Any] = {"plan": plan.name, "config_dir": str(config.config_dir)}
    with plan_dag(
        plan,
        config,
        kind="backup",
        clusters=[plan.cluster],
        pool=pool_for(plan.cluster),
        schedule=timetable(config.schedule_for(plan)),
        doc=_doc_backup(plan, config, path),
        description=f"Back up {plan.cluster}",
        user_defined_macros={"ys1000_export_time": next_time_at},
    ) as dag:
        preflight = BackupPreflightOperator(task_id="preflight", execution_timeout=TIMEOUTS["preflight"], **common)
        volumes = VolumeDataOperator.partial(
            task_id="volumes",
            execution_timeout=TIMEOUTS["volumes"],
            pool_slots=1,
            map_index_template=MAP_INDEX_TEMPLATE,
            **common,
        ).expand(volume=preflight.output)
        export = _export_at(plan, config, common, volumes)
        ops = [
            preflight,
            CaptureResourcesOperator(task_id="capture", execution_timeout=TIMEOUTS["capture"], **common),
            volumes,
            *export,
            # verify and commit also when a PVC's task failed: the backup is then committed
            # PartiallyFailed naming it (commit fails the run); never without a capture
            VerifyBackupOperator(
                task_id="verify", execution_timeout=TIMEOUTS["verify"], trigger_rule="all_done", **common
            ),
            CommitBackupOperator(
                task_id="commit",
                execution_timeout=TIMEOUTS["commit"],
                volumes_tasks=["volumes", "export"] if export else ["volumes"],
                outlets=backup_assets(plan),  # a committed backup is an event of what it protects
                **common,
            ),
            RetentionOperator(task_id="retention", execution_timeout=TIMEOUTS["retention"], **common),
        ]
        if plan.approval == "required":  # a suspicious backup waits for a human's review
            from ys1000.airflow.approval import BackupReviewOperator

            ops.insert(-1, BackupReviewOperator(task_id="review", retries=0, **common))
        if plan.hooks or plan.consistency:  # hooks and quiesce/resume around the capture
            from ys1000.airflow.hook_operators import chain_with_hooks

            chain_with_hooks(plan, ops, str(config.config_dir))
        else:
            for upstream, downstream in pairwise(ops):
                upstream >> downstream
    return dag


def drill_dag_id(plan: Any) -> str:
    return f"ys1000_drill__{plan.name}"


def drill_dag(plan: "BackupPlan", config: "Config", path: Path) -> "DAG":
    """``ys1000_drill__<plan>``: scheduled on the plan's backup assets, one ``drill`` task that
    restores the new backup into scratch namespaces and proves it (``ys1000.drill``)."""
    from airflow.sdk import AssetAny

    from ys1000.airflow.assets import backup_assets, drill_assets
    from ys1000.airflow.operators.drill import DrillOperator

    assert plan.drill is not None
    cluster = plan.drill.cluster or plan.cluster
    checks = ", ".join(f"`{c.name}` ({c.type})" for c in plan.drill.checks) or "none"
    if plan.drill.schedule:
        when = f"On {plan.drill.schedule.describe()}, restore the newest backup of `{plan.name}`"
    else:
        nth = "each" if plan.drill.every == 1 else f"every {plan.drill.every}th"
        when = f"After {nth} backup of `{plan.name}` (its assets), restore it"
    doc = "\n".join(
        [
            f"### Restore drill of backup plan `{plan.name}`",
            "",
            f"{when} into scratch namespaces of `{cluster}` with its PVC data read back against the "
            f"snapshots, wait for the workloads, run the checks ({checks}), record the evidence (RTO, "
            "per-step times) in the repository, and remove the scratch namespaces. A failed drill fails "
            "the run and alerts.",
            "",
            f"- **Plan file**: `{path}`",
        ]
    )
    with plan_dag(
        plan,
        config,
        kind="drill",
        clusters=[cluster],
        pool=pool_for(cluster),
        schedule=timetable(plan.drill.schedule) if plan.drill.schedule else AssetAny(*backup_assets(plan)),
        doc=doc,
        description=f"Prove the backups of {plan.name} restore",
        dag_id=drill_dag_id(plan),
    ) as dag:
        DrillOperator(
            task_id="drill",
            plan=plan.name,
            config_dir=str(config.config_dir),
            execution_timeout=plan.drill.timeout + timedelta(minutes=10),
            retries=0,  # a drill is evidence: a failed one is reported, not retried into a pass
            outlets=drill_assets(plan),
        )
    return dag


def next_time_at(after: datetime, tz: str, hour: int, minute: int) -> str:
    """The first HH:MM in zone ``tz`` strictly after ``after``, as an ISO timestamp (the
    export time of 'selected at a set time'; a DAG macro, so the wait renders it per run)."""
    from zoneinfo import ZoneInfo

    local = after.astimezone(ZoneInfo(tz))
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= local:
        at += timedelta(days=1)
    return at.isoformat()


def _export_at(plan: "BackupPlan", config: "Config", common: dict, volumes: Any) -> list:
    """Export 'selected at a set time': a deferred wait (no worker slot held), then the export."""
    policy = config.policy_for(plan)
    if policy.method != "snapshot_export" or policy.export is None or policy.export.mode != "selected_at":
        return []
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

    from ys1000.airflow.operators import VolumeDataOperator

    at = policy.export.at
    assert at is not None  # mode selected_at has one
    tz = getattr(config.schedule_for(plan), "timezone", "UTC")
    target = f"{{{{ ys1000_export_time(dag_run.start_date or dag_run.run_after, '{tz}', {at.hour}, {at.minute}) }}}}"
    return [
        # deferred to the triggerer: no worker slot waits for the export time
        DateTimeSensorAsync(task_id="wait_for_export_time", target_time=target, pool_slots=1),
        VolumeDataOperator.partial(
            task_id="export",
            export_phase=True,
            execution_timeout=TIMEOUTS["volumes"],
            pool_slots=1,
            trigger_rule="all_done",
            map_index_template=MAP_INDEX_TEMPLATE,
            **common,
        ).expand(volume=volumes.output),
    ]


def restore_plan_dag(plan: "RestorePlan", config: "Config", path: Path) -> "DAG":
    """``ys1000_restore__<plan>``: preflight (resolves ``latest``) → restore."""
    doc = "\n".join(
        [
            f"### Restore plan `{plan.name}`",
            "",
            plan.description or "",
            "",
            f"- **Backup**: `{plan.backup.id}` of plan `{plan.backup.plan}` in repository `{plan.repository}`",
            f"- **Target cluster**: `{plan.target_cluster}` (pool `{pool_for(plan.target_cluster)}`)",
            f"- **Namespace mapping**: {plan.namespace_mapping or 'none'}",
            f"- **StorageClass mapping**: {plan.storage_class_mapping or 'none'}",
            f"- **Existing resources**: {plan.existing_resource_policy}; remove node constraints: "
            f"{plan.remove_node_constraints}; dry run: {plan.dry_run}",
            f"- **Plan file**: `{path}`",
        ]
    )
    common = {"restore_plan": plan.name, "config_dir": str(config.config_dir)}
    with plan_dag(
        plan,
        config,
        kind="restore",
        clusters=[plan.target_cluster],
        pool=pool_for(plan.target_cluster),
        schedule=timetable(config.schedule_for(plan)),
        doc=doc,
        description=f"Restore into {plan.target_cluster}",
    ) as dag:
        cluster = config.clusters.get(plan.target_cluster)
        asks = plan.approval == "required" or getattr(cluster, "restore_approval", "none") == "required"
        ops = restore_tasks(common, pool_slots=1, approval=asks)
        if plan.hooks:  # pre_restore_hooks → restore … workloads → post_restore_hooks
            from ys1000.airflow.hook_operators import chain_with_hooks

            chain_with_hooks(plan, ops, str(config.config_dir))
        else:
            for upstream, downstream in pairwise(ops):
                upstream >> downstream
    return dag


# what the API server would refuse later, refused in the trigger form and by the preflight
NAMESPACE_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
STORAGE_CLASS_NAME = {
    "type": "string",
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "maxLength": 253,
}


def restore_tasks(args: dict[str, Any], *, pool_slots: int | None, approval: bool = False) -> list:
    """preflight (resolves ``latest``) → approve (waits for a human only when the plan or the
    target cluster asks and the restore overwrites) → restore (up to the PVCs) → volumes (one per
    PVC, waits deferred) → workloads (the rest, the report)."""
    from ys1000.airflow.operators import (
        RestoreOperator,
        RestorePreflightOperator,
        RestoreVolumeOperator,
        RestoreWorkloadsOperator,
    )

    resolved = {**args, "backup": "{{ ti.xcom_pull(task_ids='preflight', key='backup_id') }}"}
    from ys1000.airflow.approval import RestoreApprovalOperator

    pre = RestorePreflightOperator(task_id="preflight", execution_timeout=TIMEOUTS["preflight"], **args)
    approve = [RestoreApprovalOperator(task_id="approve", retries=0, **resolved)] if approval else []
    run = RestoreOperator(task_id="restore", execution_timeout=TIMEOUTS["restore"], **resolved)
    slots = {"pool_slots": pool_slots} if pool_slots else {}
    volumes = RestoreVolumeOperator.partial(
        task_id="volumes",
        execution_timeout=TIMEOUTS["volumes"],
        map_index_template=MAP_INDEX_TEMPLATE,
        **slots,
        **resolved,
    ).expand(volume=run.output)
    workloads = RestoreWorkloadsOperator(
        task_id="workloads", execution_timeout=TIMEOUTS["restore"], trigger_rule="all_done", **resolved
    )
    return [pre, *approve, run, volumes, workloads]


def restore_params(config: "Config") -> dict[str, Any]:
    """The generic restore DAG's trigger form."""
    from airflow.sdk import Param

    repos = list(config.repositories)
    clusters = list(config.clusters)
    plans = sorted(config.backup_plans) or None
    return {
        "backup": Param(
            "latest",
            type="string",
            minLength=1,
            title="Backup",
            description="A backup id from the backup list, or 'latest' for the newest completed "
            "backup of the plan below.",
        ),
        "plan": Param(
            None,
            type=["null", "string"],
            title="Backup plan",
            description="With backup 'latest': the backup plan whose newest backup to restore "
            "(e.g. " + ", ".join(plans or ["wordpress-backup"]) + ").",
        ),
        "repository": Param(
            repos[0],
            type="string",
            enum=repos,
            title="Repository",
            description="The repository holding the backup (repositories.yaml).",
        ),
        "target_cluster": Param(
            clusters[0],
            type="string",
            enum=clusters,
            title="Target cluster",
            description="The cluster to restore into (clusters.yaml); its image registry rewrite applies.",
        ),
        "namespaces": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Namespaces",
            description="Restore only these namespaces of the backup (empty: all).",
        ),
        "namespace_mapping": Param(
            {},
            type="object",
            additionalProperties=NAMESPACE_NAME,
            title="Namespace mapping",
            description='Restore namespace OLD as NEW, e.g. {"wordpress": "wordpress-copy"}.',
        ),
        "storage_class_mapping": Param(
            {},
            type="object",
            additionalProperties=STORAGE_CLASS_NAME,
            title="StorageClass mapping",
            description="Provision PVCs of StorageClass OLD in NEW.",
        ),
        "include_kinds": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Include kinds",
            description="Restore only these kinds (e.g. Deployment, ConfigMap); empty: all.",
        ),
        "exclude_kinds": Param(
            [], type="array", items={"type": "string"}, title="Exclude kinds", description="Never restore these kinds."
        ),
        "resources": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Resources",
            description="Restore only these objects: 'Kind/namespace/name' or 'Kind/name'.",
        ),
        "remove_node_constraints": Param(
            False,
            type="boolean",
            title="Remove node constraints",
            description="Drop nodeSelector, nodeName and affinity (other cluster).",
        ),
        "existing_resource_policy": Param(
            "skip",
            type="string",
            enum=["skip", "update", "fail"],
            title="Existing resources",
            description="What to do with objects that already exist: skip them, "
            "update them to the backed-up version, or fail them.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Only report what would be done (the API server validates each object).",
        ),
    }


def generic_restore_dag(config: "Config") -> "DAG":
    """``ys1000_restore``: an on-demand restore whose arguments come from the trigger form."""
    from airflow.sdk import DAG

    args = {
        "backup": "{{ params.backup }}",
        "plan": "{{ params.plan }}",
        "repository": "{{ params.repository }}",
        "target_cluster": "{{ params.target_cluster }}",
        "namespaces": "{{ params.namespaces }}",
        "namespace_mapping": "{{ params.namespace_mapping }}",
        "storage_class_mapping": "{{ params.storage_class_mapping }}",
        "include_kinds": "{{ params.include_kinds }}",
        "exclude_kinds": "{{ params.exclude_kinds }}",
        "resource_refs": "{{ params.resources }}",
        "remove_node_constraints": "{{ params.remove_node_constraints }}",
        "existing_resource_policy": "{{ params.existing_resource_policy }}",
        "dry_run": "{{ params.dry_run }}",
        "config_dir": str(config.config_dir),
    }
    with DAG(
        auto_register=False,  # found through the factory module's globals only
        dag_id=GENERIC_RESTORE_DAG_ID,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["ys1000", "restore"],
        params=restore_params(config),
        render_template_as_native_obj=True,
        description="Restore a backup into a cluster (on demand, from the trigger form)",
        doc_md="### Restore a backup\n\nTrigger with the form: choose the backup (an id or `latest` of a "
        "plan), the target cluster, mappings and filters, the existing-resource policy and whether "
        "to dry-run. `preflight` checks the cluster, repository and backup; `restore` applies it and "
        "fails (without retry) when any object failed, listing each with its reason.\n\n"
        "The target cluster is chosen per run, so these tasks use the default pool, not a "
        "cluster pool.",
        default_args=_default_args("ys1000", None, failure_callbacks(config.config_dir)),
    ) as dag:
        asks = any(c.restore_approval == "required" for c in config.clusters.values())
        ops = restore_tasks(args, pool_slots=None, approval=asks)
        for upstream, downstream in pairwise(ops):
            upstream >> downstream
    return dag
