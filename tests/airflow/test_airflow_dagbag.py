"""The DAG factory: DagBag integrity, structure, broken-plan isolation, parse-time cheapness.

No sandbox needed: parsing must work without any cluster, S3 or database.
"""

from __future__ import annotations

import socket
from datetime import timedelta

from dag_helpers import chain_order
from af_helpers import copy_config, write_plan

BACKUP_TASKS = ["preflight", "capture", "volumes", "verify", "commit", "retention"]
EXPECTED = {
    "ys1000_backup__wordpress-backup": BACKUP_TASKS,
    "ys1000_restore__wordpress-restore": ["preflight", "restore", "volumes", "workloads"],
    "ys1000_restore": ["preflight", "restore", "volumes", "workloads"],
    "ys1000_drill__wordpress-backup": ["drill"],
}
MIGRATION_DAG = "ys1000_migrate__wordpress-migrate"
SYSTEM_DAGS = {"ys1000_report", "ys1000_self_backup", "ys1000_objectives"}

GOOD_PLAN = """
kind: BackupPlan
name: shop-backup
cluster: source
repository: sandbox-s3
namespaces: {names: [shop]}
policy: resources-every-3h
"""

BROKEN_PLAN = """
kind: BackupPlan
name: broken-backup
cluster: source
repository: sandbox-s3
namespaces: {names: [shop]}
policy:
  scope: full
  method: filecopy
  schedule: {type: on_demand}
  retention: forever
"""


def test_example_config_dagbag(dagbag, tmp_path):
    bag = dagbag(copy_config(tmp_path / "config"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {*EXPECTED, MIGRATION_DAG, *SYSTEM_DAGS}
    for dag_id, tasks in EXPECTED.items():
        assert chain_order(bag.dags[dag_id]) == tasks
    mig = bag.dags[MIGRATION_DAG]
    assert {t.task_id: sorted(t.downstream_task_ids) for t in mig.tasks} == {
        "preflight": ["stop_source"],
        "stop_source": ["failed", "sync", "undo"],
        "sync": ["failed", "sync_volumes", "undo"],
        "sync_volumes": ["failed", "sync_commit", "undo"],
        "sync_commit": ["failed", "restore", "undo"],
        "restore": ["failed", "start_target", "undo"],
        "start_target": ["failed", "post_restore_hooks", "undo"],
        "post_restore_hooks": ["failed", "undo"],
        "undo": ["failed"],
        "failed": [],
    }
    assert mig.get_task("undo").trigger_rule == "one_failed"
    assert type(mig.get_task("sync_volumes")).__name__ == "MappedOperator"  # one task per PVC
    assert mig.get_task("sync_volumes").pool_slots == 1 and mig.get_task("sync_commit").trigger_rule == "none_failed"
    assert mig.params["mode"] == "incremental" and mig.params["stop_source"] is True
    # every sync and the end of a cutover are events of the migrated namespace's asset
    for task in ("sync_commit", "start_target"):
        assert [a.uri for a in mig.get_task(task).outlets] == ["ys1000://source/wordpress/migration"]


def test_backups_are_assets_and_the_drill_is_scheduled_on_them(dagbag, tmp_path):
    bag = dagbag(copy_config(tmp_path / "config"))
    commit = bag.dags["ys1000_backup__wordpress-backup"].get_task("commit")
    assert [a.uri for a in commit.outlets] == ["ys1000://source/wordpress"]
    drill = bag.dags["ys1000_drill__wordpress-backup"]
    assert [a.uri for a in drill.timetable.asset_condition.objects] == ["ys1000://source/wordpress"]
    task = drill.get_task("drill")
    assert [a.uri for a in task.outlets] == ["ys1000://source/wordpress/drill"] and task.retries == 0
    assert task.pool == "ys1000_cluster_source" and task.execution_timeout == timedelta(minutes=25)
    # namespaces chosen at run time (glob): one asset for the plan
    write_plan(
        tmp_path / "config", "globbed.yaml", GOOD_PLAN.replace("{names: [shop]}", "{globs: [shop-*]}") + "drill: {}\n"
    )
    bag = dagbag(tmp_path / "config")
    assert [a.uri for a in bag.dags["ys1000_backup__shop-backup"].get_task("commit").outlets] == [
        "ys1000://source/plans/shop-backup"
    ]
    assert "ys1000_drill__shop-backup" in bag.dag_ids

    # a drill on its own schedule, into another cluster (its pool); an unknown cluster is named
    write_plan(
        tmp_path / "config",
        "globbed.yaml",
        GOOD_PLAN + "drill: {cluster: target, every: 3, schedule: {type: cron, expression: '0 4 * * 0'}}\n",
    )
    dag = dagbag(tmp_path / "config").dags["ys1000_drill__shop-backup"]
    assert dag.timetable.summary == "0 4 * * 0" and dag.get_task("drill").pool == "ys1000_cluster_target"
    write_plan(tmp_path / "config", "globbed.yaml", GOOD_PLAN + "drill: {cluster: nowhere}\n")
    bag = dagbag(tmp_path / "config")
    [error] = [e for e in bag.import_errors.values() if "globbed.yaml" in e]
    assert (
        "globbed.yaml: drill.cluster: 'nowhere' is not a cluster defined in config/clusters.yaml; defined: source, target (line 7)"
        in error
    )


def test_backup_dag_settings(dagbag, tmp_path):
    from airflow.timetables.trigger import CronTriggerTimetable

    dag = dagbag(copy_config(tmp_path / "config")).dags["ys1000_backup__wordpress-backup"]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert str(dag.timetable._timezone.name) == "Asia/Shanghai"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {"ys1000", "backup", "source", "wordpress"} <= set(dag.tags)
    assert "wordpress-backup" in dag.doc_md and "sandbox-s3" in dag.doc_md
    for task in dag.tasks:
        assert task.pool == "ys1000_cluster_source"
        assert task.retries == 3 and task.retry_exponential_backoff
        assert task.execution_timeout and task.execution_timeout <= timedelta(hours=4)
        assert task.owner == "ys1000"
        # one slot per PVC task (max_concurrent_movers of them at once); the others take the
        # whole pool, so a second job on the cluster waits
        assert task.pool_slots == (1 if task.task_id == "volumes" else 2), task.task_id
        assert task.weight_rule == "upstream"
    volumes = dag.get_task("volumes")
    assert type(volumes).__name__ == "MappedOperator"
    assert volumes.map_index_template == "{{ task.volume['namespace'] }}/{{ task.volume['pvc'] }}"
    assert dag.get_task("verify").trigger_rule == "all_done"  # a failed PVC still gets its backup committed
    restore = dagbag(tmp_path / "config").dags["ys1000_restore__wordpress-restore"]
    assert {t.pool for t in restore.tasks} == {"ys1000_cluster_target"}
    assert type(restore.get_task("volumes")).__name__ == "MappedOperator"
    assert restore.get_task("workloads").trigger_rule == "all_done"
    assert type(restore.timetable).__name__ == "NullTimetable"


def test_generic_restore_params(dagbag, tmp_path):
    dag = dagbag(copy_config(tmp_path / "config")).dags["ys1000_restore"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    params = dag.params
    expected = {
        "backup",
        "plan",
        "repository",
        "target_cluster",
        "namespace_mapping",
        "storage_class_mapping",
        "include_kinds",
        "exclude_kinds",
        "resources",
        "remove_node_constraints",
        "existing_resource_policy",
        "dry_run",
    }
    assert expected <= set(params.keys())
    for name in expected:
        assert params.get_param(name).description, name
    assert params["backup"] == "latest"
    assert params.get_param("repository").schema["enum"] == ["sandbox-s3", "local"]
    assert params.get_param("target_cluster").schema["enum"] == ["source", "target"]
    assert params.get_param("existing_resource_policy").schema["enum"] == ["skip", "update", "fail"]
    assert params.get_param("namespace_mapping").schema["type"] == "object"
    assert params.get_param("include_kinds").schema["type"] == "array"
    assert params["dry_run"] is False and params["remove_node_constraints"] is False


def test_dags_serialize(dagbag, tmp_path):
    """What the dag processor stores: every DAG serializes and comes back with the same tasks,
    dependencies, pools, trigger rules and mapping (what the scheduler runs from)."""
    from airflow.serialization.serialized_objects import DagSerialization

    bag = dagbag(copy_config(tmp_path / "config"))
    for dag_id, dag in bag.dags.items():
        back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert back.dag_id == dag_id

        def shape(d):
            return {
                t.task_id: (
                    sorted(t.downstream_task_ids),
                    t.pool,
                    t.pool_slots,
                    getattr(t.trigger_rule, "value", t.trigger_rule),
                    type(t).__name__ == "MappedOperator" or getattr(t, "is_mapped", False),
                )
                for t in d.tasks
            }

        assert shape(back) == shape(dag), dag_id
        assert type(back.timetable).__name__ == type(dag.timetable).__name__, dag_id


def test_broken_plan_is_an_import_error_of_its_own(dagbag, tmp_path):
    cdir = copy_config(tmp_path / "config")
    write_plan(cdir, "shop-backup.yaml", GOOD_PLAN)
    write_plan(cdir, "broken-backup.yaml", BROKEN_PLAN)
    bag = dagbag(cdir)
    # the other plans' DAGs still load, from the factory file, which has no error
    assert set(bag.dag_ids) == set(EXPECTED) | SYSTEM_DAGS | {MIGRATION_DAG, "ys1000_backup__shop-backup"}
    assert "ys1000_backup__broken-backup" not in bag.dag_ids
    assert {d.relative_fileloc for d in bag.dags.values() if d.dag_id not in SYSTEM_DAGS} == {"ys1000_dags.py"}
    # one import error, on the file that defines no DAG, naming the plan file and the field
    assert list(bag.import_errors) == ["ys1000_config_errors.py"]
    message = bag.import_errors["ys1000_config_errors.py"]
    assert "config/plans/broken-backup.yaml" in message
    assert "policy.retention" in message and "forever" in message
    assert "shop-backup.yaml" not in message


def test_fixing_the_plan_clears_the_error(dagbag, tmp_path):
    cdir = copy_config(tmp_path / "config")
    path = write_plan(cdir, "broken-backup.yaml", BROKEN_PLAN)
    assert dagbag(cdir).import_errors
    path.write_text(path.read_text().replace("forever", "3d"))
    bag = dagbag(cdir)
    assert bag.import_errors == {}
    assert "ys1000_backup__broken-backup" in bag.dag_ids


def test_broken_shared_config_fails_the_factory(dagbag, tmp_path):
    cdir = copy_config(tmp_path / "config")
    (cdir / "clusters.yaml").write_text("source:\n  connection_id: ys1000_source\n  bandwidth: {limit_kib_s: -1}\n")
    bag = dagbag(cdir)
    assert "ys1000_dags.py" in bag.import_errors
    assert "clusters.yaml" in bag.import_errors["ys1000_dags.py"]
    assert "bandwidth.limit_kib_s" in bag.import_errors["ys1000_dags.py"]


def test_parsing_makes_no_network_or_variable_access(dagbag, tmp_path, monkeypatch):
    """Bogus endpoints and no network at all: parsing still works (nothing is contacted)."""
    from airflow.sdk import Variable

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access at parse time: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(Variable, "get", refuse)
    monkeypatch.setenv(
        "AIRFLOW_CONN_YS1000_S3", '{"conn_type": "aws", "extra": {"endpoint_url": "http://192.0.2.1:1"}}'
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_YS1000_SOURCE", '{"conn_type": "kubernetes", "extra": {"kube_config_path": "/nonexistent"}}'
    )
    bag = dagbag(copy_config(tmp_path / "config"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == set(EXPECTED) | {MIGRATION_DAG} | SYSTEM_DAGS


def test_parsing_context_builds_only_the_running_dag(tmp_path, monkeypatch):
    from ys1000.airflow import dagfactory

    cdir = copy_config(tmp_path / "config")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "ys1000_restore__wordpress-restore")
    found: dict = {}
    dags = dagfactory.register(found, cdir)
    assert list(dags) == ["ys1000_restore__wordpress-restore"]
    assert list(found) == ["ys1000_restore__wordpress_restore"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "ys1000_restore")
    assert list(dagfactory.register({}, cdir)) == ["ys1000_restore"]


def test_many_plans_build_one_dag_each(tmp_path):
    """200 plans: one DAG each, every one scheduled by its plan's cron. How fast is a benchmark
    (``make bench``: 1,000 plans against their floors), not a timed assertion here."""
    from ys1000.airflow.dagfactory import build_dags

    n = 200
    cdir = copy_config(tmp_path / "config", plans=False)
    for i in range(n):
        write_plan(cdir, f"p{i:04d}.yaml", GOOD_PLAN.replace("shop-backup", f"plan-{i:04d}"))
    dags = build_dags(cdir)
    backups = {d for d in dags if d.startswith("ys1000_backup__plan-")}
    assert backups == {f"ys1000_backup__plan-{i:04d}" for i in range(n)}
    assert len(dags) == n + 1  # and the generic restore
    assert len({str(dags[d].timetable.summary) for d in backups}) == 1  # all the same cron


def test_migration_plan_with_hooks_runs_them_around_the_cutover(tmp_path):
    from ys1000.airflow.dagfactory import build_dags

    cdir = copy_config(tmp_path / "config", plans=False)
    write_plan(
        cdir,
        "move.yaml",
        """
        kind: MigrationPlan
        name: move
        source_cluster: source
        target_cluster: target
        repository: sandbox-s3
        namespaces: {names: [wordpress]}
        hooks:
          - {phase: PreBackup, type: image, image: busybox, namespace: wordpress, command: [sh, -c, "echo pre"]}
          - {phase: PostRestore, type: ansible, namespace: wordpress, playbook_file: wordpress/rewrite-url.yml}
        """,
    )
    dag = build_dags(cdir)["ys1000_migrate__move"]
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream["pre_backup_hooks"] == {"preflight"} and upstream["stop_source"] == {"pre_backup_hooks"}
    assert upstream["sync"] == {"stop_source"} and upstream["post_restore_hooks"] == {"start_target"}
    assert {"pre_backup_hooks", "post_restore_hooks"} <= dag.get_task("undo").upstream_task_ids


def test_export_at_a_set_time_is_a_deferred_wait(tmp_path):
    from ys1000.airflow.dagfactory import build_dags

    cdir = copy_config(tmp_path / "config", plans=False)
    write_plan(
        cdir,
        "snap.yaml",
        """
        kind: BackupPlan
        name: snap
        cluster: source
        repository: sandbox-s3
        namespaces: {names: [wordpress]}
        policy:
          scope: full
          method: snapshot_export
          export: {mode: selected_at, at: "02:30", pvcs: [wordpress/wp-content]}
          schedule: {type: on_demand}
          retention: 3d
        """,
    )
    dag = build_dags(cdir)["ys1000_backup__snap"]
    assert chain_order(dag) == [
        "preflight",
        "capture",
        "volumes",
        "wait_for_export_time",
        "export",
        "verify",
        "commit",
        "retention",
    ]
    wait = dag.get_task("wait_for_export_time")
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

    from datetime import datetime, timezone

    from ys1000.airflow.dagfactory import next_time_at

    assert isinstance(wait, DateTimeSensorAsync) and "ys1000_export_time(" in wait.target_time
    assert "'UTC', 2, 30" in wait.target_time and "ys1000_export_time" in dag.user_defined_macros
    assert next_time_at(datetime(2030, 1, 1, 1, 0, tzinfo=timezone.utc), "UTC", 2, 30) == "2030-01-01T02:30:00+00:00"
    assert next_time_at(datetime(2030, 1, 1, 3, 0, tzinfo=timezone.utc), "UTC", 2, 30) == "2030-01-02T02:30:00+00:00"
    assert (
        next_time_at(datetime(2030, 1, 1, 17, 0, tzinfo=timezone.utc), "Asia/Shanghai", 2, 30)
        == "2030-01-02T02:30:00+08:00"
    )
    assert dag.get_task("commit").volumes_tasks == ["volumes", "export"]
    export = dag.get_task("export")
    assert type(export).__name__ == "MappedOperator" and export.partial_kwargs["export_phase"] is True


def test_plan_dags_take_airflow_configured_dag_defaults(tmp_path, monkeypatch):
    """The factory reads what DAG() would look up in Airflow's configuration once per build and
    passes it: a plan's DAG still gets what airflow.cfg (here its environment form) says."""
    from airflow.sdk import DAG

    from ys1000.airflow.dagfactory import build_dags

    monkeypatch.setenv("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "7")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_CONSECUTIVE_FAILED_DAG_RUNS_PER_DAG", "5")
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DISABLE_BUNDLE_VERSIONING", "True")
    bare = DAG(dag_id="bare", schedule=None, auto_register=False)
    assert (bare.max_active_tasks, bare.max_consecutive_failed_dag_runs, bare.disable_bundle_versioning) == (7, 5, True)
    dags = build_dags(copy_config(tmp_path / "config"))
    plan_dags = [d for d in dags.values() if "__" in d.dag_id]
    assert {d.dag_id.split("__")[0] for d in plan_dags} >= {"ys1000_backup", "ys1000_restore", "ys1000_migrate"}
    for dag in plan_dags:
        assert dag.max_active_tasks == 7, dag.dag_id
        assert dag.max_consecutive_failed_dag_runs == 5, dag.dag_id
        assert dag.disable_bundle_versioning is True, dag.dag_id
        assert dag.max_active_runs == 1, dag.dag_id  # the factory's own choice still wins
