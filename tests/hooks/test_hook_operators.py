"""The hook operators' ``execute``/``on_kill`` against the sandbox and a real MariaDB (connections
from ``AIRFLOW_CONN_*`` built from the sandbox, no metadata DB)."""

from __future__ import annotations

import base64
import shutil
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_quiesce import Writer, count, mysql_table  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(sandbox, source, namespace, mysql_table, tmp_path, monkeypatch):  # noqa: F811  (the fixture imported from test_quiesce)
    from ys1000_dev.sandbox.connections import sandbox_env

    for key, value in sandbox_env(sandbox["dir"]).items():
        monkeypatch.setenv(key, value)
    db = mysql_table
    source.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "mysql-credentials"},
            "data": {
                "username": base64.b64encode(db.user.encode()).decode(),
                "password": base64.b64encode(db.password.encode()).decode(),
            },
        },
    )
    cdir = tmp_path / "config"
    shutil.copytree(REPO / "config", cdir)
    (cdir / "plans" / "app.yaml").write_text(
        textwrap.dedent(f"""
        kind: BackupPlan
        name: app-backup
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{namespace}]}}
        policy: resources-every-3h
        hooks:
          - {{name: say-hi, phase: PreBackup, type: image, namespace: {namespace}, image: busybox,
              command: [python, -c, "print('hi from the pre-backup hook')"]}}
          - {{name: broken, phase: PostBackup, type: image, namespace: {namespace}, image: busybox,
              command: [python, -c, "import sys; print('oops'); sys.exit(2)"]}}
        consistency:
          - {{type: mariadb, host: {db.host}, port: {db.port}, secret: {{name: mysql-credentials}}, max_lock: 2m}}
        """).lstrip()
    )
    return SimpleNamespace(config_dir=str(cdir), db=db, namespace=namespace)


def context(run_id: str) -> dict:
    when = datetime.now(timezone.utc)
    return {
        "logical_date": when,
        "ti": SimpleNamespace(xcom_push=lambda **kw: None),
        "dag_run": SimpleNamespace(run_id=run_id, dag_id="ys1000_backup__app-backup", run_after=when),
    }


def test_hooks_quiesce_resume_operators(env, capsys):
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.hook_operators import QuiesceOperator, ResumeOperator, RunHooksOperator

    ctx = context("manual__hooks-1")
    common = {"plan": "app-backup", "config_dir": env.config_dir}
    [pre] = RunHooksOperator(task_id="pre_backup_hooks", phase="PreBackup", **common).execute(ctx)
    logged = capsys.readouterr()
    assert pre["ok"] and "| hi from the pre-backup hook" in logged.out + logged.err  # output in the task log

    handles = QuiesceOperator(task_id="quiesce", **common).execute(ctx)
    assert [h["type"] for h in handles] == ["mariadb"]
    w = Writer(env.db, "op-lock")
    w.start()
    assert not w.done.wait(1.5)
    # the resume task is another process: it finds the run's quiesce Job by label
    [res] = ResumeOperator(task_id="resume", **common).execute(ctx)
    assert res["ok"] and res["released_by"] == "signal"
    assert w.done.wait(10) and count(env.db, "op-lock") == 1
    assert ResumeOperator(task_id="resume", **common).execute(ctx) == []  # a retry: nothing left

    with pytest.raises(AirflowFailException, match="broken.*exit code 2"):
        RunHooksOperator(task_id="post_backup_hooks", phase="PostBackup", **common).execute(ctx)


def test_quiesce_on_kill_resumes(env):
    from ys1000.airflow.hook_operators import QuiesceOperator

    ctx = context("manual__hooks-2")
    op = QuiesceOperator(task_id="quiesce", plan="app-backup", config_dir=env.config_dir)
    op.execute(ctx)
    w = Writer(env.db, "killed")
    w.start()
    assert not w.done.wait(1.0)
    op.on_kill()  # the task is cancelled while holding the lock
    assert w.done.wait(10) and count(env.db, "killed") == 1


def _slow_plan(env, seconds: int) -> str:
    (Path(env.config_dir) / "plans" / "slow.yaml").write_text(
        textwrap.dedent(f"""
        kind: BackupPlan
        name: slow-backup
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{env.namespace}]}}
        policy: resources-every-3h
        hooks:
          - {{name: slow, phase: PreBackup, type: image, namespace: {env.namespace}, image: busybox,
              command: [python, -c, "import time; time.sleep({seconds}); print('slow hook done')"]}}
          - {{name: quick, phase: PreBackup, type: image, namespace: {env.namespace}, image: busybox,
              command: [python, -c, "print('quick hook done')"]}}
        """).lstrip()
    )
    return "slow-backup"


def _first_event(trigger):
    import asyncio

    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_a_running_hook_is_waited_for_in_the_triggerer(env, source, capsys):
    """A hook still running after a few seconds defers: the wait for its Job moves to a trigger
    (serialisable, one event) and the task resumes with its result, then runs the next hook."""
    from airflow.sdk.exceptions import TaskDeferred

    from ys1000.airflow.triggers import VolumeWaitTrigger
    from ys1000.airflow.hook_operators import RunHooksOperator

    plan = _slow_plan(env, 10)
    ctx = context("manual__hooks-deferred")
    op = RunHooksOperator(task_id="pre_backup_hooks", phase="PreBackup", plan=plan, config_dir=env.config_dir)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    path, kwargs = deferred.value.trigger.serialize()
    assert path == "ys1000.airflow.triggers.VolumeWaitTrigger" and kwargs["what"]["kind"] == "hook"
    assert kwargs["cluster"] == "source" and kwargs["state"]["hook"] == "slow"
    job = kwargs["what"]["name"]
    assert source.batch.read_namespaced_job(job, env.namespace).status.active == 1  # running, not waited on here
    event = _first_event(VolumeWaitTrigger(**kwargs))  # as the triggerer would, from the stored kwargs
    assert event["status"] == "success"
    results = op.resume(ctx, event)
    assert [(r["name"], r["ok"]) for r in results] == [("slow", True), ("quick", True)]
    logged = capsys.readouterr()
    assert "| slow hook done" in logged.out + logged.err and "| quick hook done" in logged.out + logged.err
    assert source.batch.list_namespaced_job(env.namespace, label_selector="ys1000.io/component=hook").items == []


def test_cancelling_a_deferred_hook_deletes_its_job(env, source):
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    from ys1000.airflow.triggers import VolumeWaitTrigger
    from ys1000.airflow.hook_operators import RunHooksOperator
    from ys1000.waiting import wait_until

    plan = _slow_plan(env, 300)
    op = RunHooksOperator(task_id="pre_backup_hooks", phase="PreBackup", plan=plan, config_dir=env.config_dir)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context("manual__hooks-cancelled"))
    _, kwargs = deferred.value.trigger.serialize()
    hooks = "ys1000.io/component=hook"
    [job] = source.batch.list_namespaced_job(env.namespace, label_selector=hooks).items
    assert job.metadata.name == kwargs["what"]["name"]
    asyncio.run(VolumeWaitTrigger(**kwargs).on_kill())  # the task marked failed while deferred
    wait_until(
        lambda: (
            not source.batch.list_namespaced_job(env.namespace, label_selector=hooks).items
            and not source.core.list_namespaced_pod(env.namespace, label_selector=hooks).items
        ),
        timeout=30,
        what="the hook's Job and pod gone",
    )
