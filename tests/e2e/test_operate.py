"""Operating ys1000 the two ways besides the web UI (issue 18), with real Airflow processes
(api-server, scheduler, dag-processor, triggerer; LocalExecutor + SQLite) against the sandbox:

- **scheduled runs**: two plans with their own cron schedule (every minute) on cluster ``source``,
  unpaused with ``airflow dags unpause``, start by themselves and succeed; their tasks take turns
  in pool ``ys1000_cluster_source`` (one task waits ``scheduled`` while the other plan's runs; no
  two tasks overlap); a third plan with the same schedule, left paused, never runs;
- **the ``airflow`` CLI** as an operator types it: ``airflow dags trigger ys1000_restore --conf``
  with a namespace and a StorageClass mapping (objects and PVC data land in ``target`` mapped), the
  same as a dry run (nothing written), ``airflow dags list-runs``, ``airflow tasks
  states-for-dag-run``; a cancel by marking the running ``restore`` task failed — through the REST
  API, as Airflow 3.3's ``airflow tasks`` has no verb to set a state — removes the run's mover Jobs
  and Secrets;
- **a wrong ``--conf``**: a wrong type is refused by ``airflow dags trigger`` naming the param (no
  run); an unknown key (a typo) and a backup id the repository does not have fail ``preflight``
  (no retry) with a message naming the param, and nothing is written.

The slow plan is slow by construction: its PVC holds incompressible data and both clusters' mover
bandwidth is limited (``e2e_helpers.SLOW_*``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from datetime import datetime

import pytest
from af_helpers import EXAMPLE_CONFIG, write_plan
from e2e_helpers import (
    SLOW_LIMIT_KIB,
    all_tis,
    create_pools,
    dump_logs,
    limit_bandwidth,
    movers_in,
    open_repo,
    pv_dir,
    xcom,
)

from ys1000.waiting import wait_until

slow = pytest.mark.slow

TICK_SLOW, TICK_QUICK, TICK_PAUSED = "tick-slow", "tick-quick", "tick-paused"
DAG = "ys1000_backup__{}".format
RESTORE = "ys1000_restore"
POOL = "ys1000_cluster_source"
ALT_CLASS = "ys1000-local-alt"  # the sandbox's second StorageClass (the sample app uses ys1000-local)


def every_minute_plan(name: str, namespace: str, scope: str) -> str:
    return (
        f"kind: BackupPlan\nname: {name}\ncluster: source\nrepository: sandbox-s3\n"
        f"namespaces: {{names: [{namespace}]}}\n"
        f"policy: {{scope: {scope}, method: filecopy, schedule: {{type: cron, expression: '* * * * *'}}, "
        f"retention: 7d}}\n"
    )


@contextlib.contextmanager
def operate_stack(e2e_env, target, dags_folder=None):
    """Airflow for the e2e config plus three every-minute plans; restores into ``target`` are
    bandwidth-limited too (a cancel has a running mover to stop)."""
    from ys1000_dev.processes import AirflowStack

    cdir, ns = e2e_env.config_dir, e2e_env.namespace
    write_plan(cdir, f"{TICK_SLOW}.yaml", every_minute_plan(TICK_SLOW, ns, "full"))
    write_plan(cdir, f"{TICK_QUICK}.yaml", every_minute_plan(TICK_QUICK, ns, "resources"))
    write_plan(cdir, f"{TICK_PAUSED}.yaml", every_minute_plan(TICK_PAUSED, ns, "resources"))
    limit_bandwidth(cdir, "target", SLOW_LIMIT_KIB)
    s = AirflowStack.standalone(e2e_env.base / "airflow", e2e_env.env, dags_folder=dags_folder)
    t0 = time.monotonic()
    s.start(on_migrated=create_pools)
    created: list[str] = []
    s.target_namespaces = created  # restored namespaces, deleted at the end
    try:
        print(f"Airflow healthy at {s.url} in {time.monotonic() - t0:.1f} s")
        c = s.client()
        for dag_id in (DAG(TICK_SLOW), DAG(TICK_QUICK), DAG(TICK_PAUSED), RESTORE):
            c.wait_for_dag(dag_id)
        assert c.import_errors() == []
        yield s
    finally:
        if any(m.proc.poll() is not None for m in s.procs.procs.values()):
            dump_logs(s)
        s.stop()
        for name in created:
            try:
                target.core.delete_namespace(name)
            except Exception:
                pass
        assert s.procs.remaining() == [], "processes of the stack survived stop()"


@pytest.fixture(scope="module")
def stack(e2e_env, target):
    with operate_stack(e2e_env, target) as s:
        yield s


def airflow_cli(stack, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    """``airflow ARGS`` as an operator runs it, with the stack's AIRFLOW_HOME and settings."""
    r = subprocess.run(
        [stack.airflow(), *args],
        env=dict(stack.procs.env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"`airflow {' '.join(args)}` exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    return r


def cli_json(r: subprocess.CompletedProcess):
    """The JSON document of a CLI's ``-o json`` output (its last line; warnings come before it)."""
    for line in reversed(r.stdout.splitlines()):
        if line.strip().startswith(("[", "{")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    if "No data found" in r.stdout:
        return []
    raise AssertionError(f"no JSON in the output:\n{r.stdout[-2000:]}")


def raw_log(client, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    """A task try's whole log (structured entries, error details included) as text."""
    data = client.request(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true"},
        headers={"Accept": "application/json"},
    )
    return json.dumps(data.get("content") if isinstance(data, dict) else data)


def runs(client, dag_id: str) -> list[dict]:
    return client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def namespace_exists(cluster, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core.read_namespace(name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


# -- scheduled runs ------------------------------------------------------------------------------


def label(ti: dict) -> str:
    return f"{ti['dag_id'].split('__')[-1]}.{ti['task_id']}" + (
        f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""
    )


@slow
def test_scheduled_runs_take_turns_in_the_cluster_pool_and_a_paused_plan_does_not_run(stack, e2e_env, sandbox_s3):
    c = stack.client()
    slow_dag, quick_dag, paused_dag = DAG(TICK_SLOW), DAG(TICK_QUICK), DAG(TICK_PAUSED)
    both = (slow_dag, quick_dag)
    for dag_id in (*both, paused_dag):
        assert c.get(f"/api/v2/dags/{dag_id}")["is_paused"], f"{dag_id} should start paused"
    t0 = time.monotonic()
    for dag_id in both:
        airflow_cli(stack, "dags", "unpause", dag_id, "-y")

    # no REST trigger: the scheduler starts both at a minute tick
    def started():
        got = {d: runs(c, d) for d in both}
        return all(got.values()) and got

    first = wait_until(started, timeout=150, interval=2, what="the schedule to start both plans")
    run_ids = {d: first[d][0]["dag_run_id"] for d in both}
    for d in both:
        assert first[d][0]["run_type"] == "scheduled", first[d][0]
    print(f"scheduled runs {run_ids} created {time.monotonic() - t0:.1f} s after the unpause")

    # while the runs go on, a task of one plan waits in the pool while the other plan's task holds it
    seen: list[tuple] = []
    waits: list[tuple] = []
    while True:
        pool = c.pool(POOL)
        tis = [ti for d in both for ti in all_tis(c, d, run_ids[d])]
        active = [ti for ti in tis if ti["state"] in ("queued", "running", "deferred")]
        waiting = [ti for ti in tis if ti["state"] == "scheduled"]
        seen.append(
            (
                round(time.monotonic() - t0, 1),
                [label(t) for t in active],
                [label(t) for t in waiting],
                pool["open_slots"],
            )
        )
        for w in waiting:
            holders = [a for a in active if a["dag_id"] != w["dag_id"]]
            if holders and pool["open_slots"] < (w.get("pool_slots") or 1):
                waits.append((label(w), [label(h) for h in holders], pool["open_slots"]))
        if all(c.run(d, run_ids[d])["state"] in ("success", "failed") for d in both):
            break
        assert time.monotonic() - t0 < 480, f"the runs did not finish: {seen[-5:]}"
        time.sleep(0.5)
    # no more ticks: the next tests work on the namespace's data
    for dag_id in both:
        airflow_cli(stack, "dags", "pause", dag_id, "-y")
    print(f"scheduled runs done in {time.monotonic() - t0:.1f} s; waits in the pool: {waits[:5]} ...")
    assert {d: c.run(d, run_ids[d])["state"] for d in both} == {d: "success" for d in both}
    assert waits, f"no task was seen waiting in pool {POOL} while the other plan's task held it: {seen}"

    # from the recorded times: no task of one plan ran while a task of the other did
    tis = {d: [ti for ti in all_tis(c, d, run_ids[d]) if ti["start_date"]] for d in both}
    assert all(ti["pool"] == POOL for d in both for ti in tis[d])
    for a in tis[slow_dag]:
        for b in tis[quick_dag]:
            (sa, ea), (sb, eb) = [(ts(t["start_date"]), ts(t["end_date"])) for t in (a, b)]
            assert ea <= sb or eb <= sa, f"{label(a)} ({sa}..{ea}) overlapped {label(b)} ({sb}..{eb})"

    repo = open_repo(sandbox_s3, e2e_env.bucket)
    for plan, d in ((TICK_SLOW, slow_dag), (TICK_QUICK, quick_dag)):
        bid = xcom(c, d, run_ids[d], "capture", "backup_id")
        assert repo.manifest(bid).status == "Completed" and repo.manifest(bid).plan == plan
    assert {v["pvc"] for v in repo.manifest(xcom(c, slow_dag, run_ids[slow_dag], "capture", "backup_id")).volumes} >= {
        "wp-content"
    }

    # the paused plan has the same schedule and saw the same tick(s): no run
    assert c.get(f"/api/v2/dags/{paused_dag}")["is_paused"]
    assert runs(c, paused_dag) == []
    listed = cli_json(airflow_cli(stack, "dags", "list-runs", paused_dag, "-o", "json"))
    assert listed == [], listed


# -- the airflow CLI -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_backup(stack, e2e_env, sandbox_s3) -> str:
    """A completed backup with PVC data: the scheduled one when the test above ran, else one
    taken now."""
    from ys1000.repository import RepositoryNotInitialized

    try:
        repo = open_repo(sandbox_s3, e2e_env.bucket)
        for plan in (TICK_SLOW, "slow-backup"):
            done = [b for b in repo.list_backups(plan) if b.status == "Completed"]
            if done:
                return done[0].backup_id
    except RepositoryNotInitialized:  # nothing backed up yet
        pass
    c = stack.client()
    run = c.trigger("ys1000_backup__slow-backup")["dag_run_id"]
    assert c.wait_run("ys1000_backup__slow-backup", run, timeout=300)["state"] == "success"
    return xcom(c, "ys1000_backup__slow-backup", run, "capture", "backup_id")


def trigger(stack, conf: dict, run_id: str, check: bool = True) -> subprocess.CompletedProcess:
    return airflow_cli(
        stack, "dags", "trigger", RESTORE, "--conf", json.dumps(conf), "--run-id", run_id, "-o", "json", check=check
    )


def report_of(client, run_id: str) -> dict:
    """The restore's summary: the return value of the run's last task (``workloads`` when the
    DAG splits the restore into parts, else ``restore``)."""
    tasks = {ti["task_id"] for ti in all_tis(client, RESTORE, run_id)}
    return xcom(client, RESTORE, run_id, "workloads" if "workloads" in tasks else "restore")


@slow
def test_cli_restore_with_mappings_dry_run_list_and_cancel(stack, e2e_env, slow_backup, source, target):
    from ys1000.kube import Kube

    c = stack.client()
    ns = e2e_env.namespace
    tag = uuid.uuid4().hex[:5]
    mapped, dry, cancelled = f"{ns}-cli", f"{ns}-dry", f"{ns}-cancel"
    stack.target_namespaces.extend([mapped, dry, cancelled])
    base = {
        "backup": slow_backup,
        "repository": "sandbox-s3",
        "target_cluster": "target",
        "storage_class_mapping": {"ys1000-local": ALT_CLASS},
        "remove_node_constraints": True,
    }

    airflow_cli(stack, "dags", "unpause", RESTORE, "-y")
    t0 = time.monotonic()
    dry_run = f"cli-dry-{tag}"
    out = cli_json(trigger(stack, {**base, "namespace_mapping": {ns: dry}, "dry_run": True}, dry_run))
    assert (out[0] if isinstance(out, list) else out)["dag_run_id"] == dry_run, out
    real_run = f"cli-restore-{tag}"
    trigger(stack, {**base, "namespace_mapping": {ns: mapped}}, real_run)

    assert c.wait_run(RESTORE, dry_run, timeout=300)["state"] == "success"
    result = report_of(c, dry_run)
    assert result["dry_run"] is True and result["backup_id"] == slow_backup and result["counts"], result
    assert not namespace_exists(target, dry), "the dry run created its namespace"
    assert not target.core.list_persistent_volume_claim_for_all_namespaces(
        field_selector=f"metadata.namespace={dry}"
    ).items

    assert c.wait_run(RESTORE, real_run, timeout=300)["state"] == "success"
    print(f"dry run and restore done in {time.monotonic() - t0:.1f} s")
    states = cli_json(airflow_cli(stack, "tasks", "states-for-dag-run", RESTORE, real_run, "-o", "json"))
    assert {t["task_id"] for t in states} >= {"preflight", "restore"}
    assert {t["state"] for t in states} <= {"success", "skipped", ""}, states
    # the objects, mapped: namespace renamed, PVCs provisioned in the mapped StorageClass, data in them
    assert {d.metadata.name for d in target.apps.list_namespaced_deployment(mapped).items} == {"wordpress"}
    assert {s.metadata.name for s in target.apps.list_namespaced_stateful_set(mapped).items} == {"mysql"}
    assert (
        target.core.read_namespaced_config_map("wp-config", mapped).data
        == source.core.read_namespaced_config_map("wp-config", ns).data
    )
    claims = target.core.list_namespaced_persistent_volume_claim(mapped).items
    assert {p.metadata.name for p in claims} >= {"wp-content"}
    assert {p.spec.storage_class_name for p in claims} == {ALT_CLASS}, {
        p.metadata.name: p.spec.storage_class_name for p in claims
    }
    src_dir = pv_dir(e2e_env.kube, ns, "wp-content")
    dst_dir = pv_dir(Kube.from_kubeconfig(target.kubeconfig, name="target"), mapped, "wp-content")
    assert (dst_dir / "uploads.bin").read_bytes() == (src_dir / "uploads.bin").read_bytes()

    # cancel: mark the task that copies the PVC data failed while its mover runs
    cancel_run = f"cli-cancel-{tag}"
    trigger(stack, {**base, "namespace_mapping": {ns: cancelled}}, cancel_run)
    wait_until(lambda: movers_in(target, (cancelled,)), timeout=180, interval=0.5, what="the restore's mover Job")

    def settled():
        """The tasks copying data, once none is between states (a task that is about to defer
        has not handed its mover to the triggerer yet): sampled twice, 2 s apart, the same."""

        def sample():
            tis = all_tis(c, RESTORE, cancel_run)
            if any(ti["state"] in ("scheduled", "queued", "up_for_retry") for ti in tis):
                return None
            return [ti for ti in tis if ti["state"] in ("running", "deferred")]

        first = sample()
        time.sleep(2)
        again = sample()
        key = lambda tis: sorted((ti["task_id"], ti["map_index"], ti["state"]) for ti in tis or [])  # noqa: E731
        return first and again and key(first) == key(again) and again

    holders = wait_until(settled, timeout=90, interval=0.5, what="the tasks waiting for the movers")
    t1 = time.monotonic()
    # `airflow tasks` (3.3) reads a task's state but cannot set it: the UI's "Mark as failed" call
    for ti in holders:
        where = f"{ti['task_id']}/{ti['map_index']}" if ti.get("map_index", -1) >= 0 else ti["task_id"]
        c.request(
            "PATCH",
            f"/api/v2/dags/{RESTORE}/dagRuns/{cancel_run}/taskInstances/{where}",
            json={"new_state": "failed", "note": "cancelled from the e2e test"},
        )
    assert c.wait_run(RESTORE, cancel_run, timeout=180)["state"] == "failed"
    wait_until(
        lambda: not movers_in(target, (cancelled,)), timeout=60, what="the cancelled run's mover Jobs/Secrets to go"
    )
    print(f"cancelled {[label(t) for t in holders]}; cleaned up in {time.monotonic() - t1:.1f} s")
    after = cli_json(airflow_cli(stack, "tasks", "states-for-dag-run", RESTORE, cancel_run, "-o", "json"))
    assert "failed" in {t["state"] for t in after if t["task_id"] in {h["task_id"] for h in holders}}, after

    listed = {r["run_id"]: r["state"] for r in cli_json(airflow_cli(stack, "dags", "list-runs", RESTORE, "-o", "json"))}
    assert {dry_run: "success", real_run: "success", cancel_run: "failed"}.items() <= listed.items(), listed


@slow
def test_wrong_conf_fails_before_anything_is_written_naming_the_param(stack, e2e_env, slow_backup, target):
    c = stack.client()
    ns = e2e_env.namespace
    tag = uuid.uuid4().hex[:5]
    typo_ns, missing_ns = f"{ns}-typo", f"{ns}-missing"
    stack.target_namespaces.extend([typo_ns, missing_ns, ns])
    base = {"repository": "sandbox-s3", "target_cluster": "target"}
    airflow_cli(stack, "dags", "unpause", RESTORE, "-y")
    before = {r["dag_run_id"] for r in runs(c, RESTORE)}

    # a wrong type: Airflow's own param validation refuses the trigger, naming the param
    bad_type = trigger(
        stack,
        {**base, "backup": slow_backup, "namespace_mapping": {ns: typo_ns}, "dry_run": "yes"},
        f"cli-badtype-{tag}",
        check=False,
    )
    out = bad_type.stdout + bad_type.stderr
    assert bad_type.returncode != 0 and "Invalid input for param dry_run" in out, out[-3000:]

    # an unknown key (a typo of namespace_mapping) and a backup that does not exist: the run
    # starts, preflight fails at once, naming the param
    typo_run, missing_run = f"cli-typo-{tag}", f"cli-missing-{tag}"
    trigger(stack, {**base, "backup": slow_backup, "namespace_maping": {ns: typo_ns}}, typo_run)
    missing = f"{TICK_SLOW}-20990101000000"
    trigger(stack, {**base, "backup": missing, "namespace_mapping": {ns: missing_ns}}, missing_run)
    assert {r["dag_run_id"] for r in runs(c, RESTORE)} - before == {typo_run, missing_run}

    expected = {
        typo_run: "param 'namespace_maping' is unknown: did you mean 'namespace_mapping'?",
        missing_run: f"param 'backup': no backup '{missing}' in repository 'sandbox-s3'",
    }
    for run_id, message in expected.items():
        assert c.wait_run(RESTORE, run_id, timeout=240)["state"] == "failed"
        tis = {label(ti): ti for ti in all_tis(c, RESTORE, run_id)}
        pre = tis.pop(f"{RESTORE}.preflight")
        assert pre["state"] == "failed" and pre["try_number"] == 1, pre
        assert not {k: t["state"] for k, t in tis.items() if t["state"] == "success"}, tis
        log = raw_log(c, RESTORE, run_id, "preflight")
        # the task failed on purpose (AirflowFailException: no retry) with the message, not on
        # some error deep in the engine
        assert message in log and "AirflowFailException" in log, log[-3000:]
        assert "restore preflight:" not in log, log[-3000:]
    # nothing written: neither the mapped namespaces nor (the typo's mapping ignored) the original
    for name in (typo_ns, missing_ns, ns):
        assert not namespace_exists(target, name), f"namespace {name} was created in target"
    assert not movers_in(target, (typo_ns, missing_ns, ns))


# -- the conf check itself (no processes) --------------------------------------------------------


def restore_dag_params():
    from ys1000.airflow.dagfactory import generic_restore_dag
    from ys1000.config import load_config

    return generic_restore_dag(load_config(EXAMPLE_CONFIG)).params


def test_conf_check_names_unknown_keys_with_a_hint_and_wrong_types():
    from ys1000.airflow.params import ConfError, check_conf, validate_conf

    params = restore_dag_params()
    good = {
        "backup": "b-20250101000000",
        "target_cluster": "target",
        "namespace_mapping": {"a": "b"},
        "storage_class_mapping": {"x": "y"},
        "dry_run": True,
    }
    assert check_conf(good, params) == [] and check_conf({}, params) == [] and check_conf(None, params) == []
    typo = check_conf({"namespace_maping": {"a": "b"}}, params)
    assert typo == [
        "param 'namespace_maping' is unknown: did you mean 'namespace_mapping'? params are " + ", ".join(params)
    ], typo
    assert "did you mean" not in check_conf({"colour": 1}, params)[0]
    (wrong,) = check_conf({"dry_run": "yes"}, params)
    assert wrong.startswith("param 'dry_run': 'yes' is not of type 'boolean'"), wrong
    (nested,) = check_conf({"namespace_mapping": {"a": 1}}, params)
    assert nested.startswith("param 'namespace_mapping'['a']: 1 is not of type 'string'"), nested
    (enum,) = check_conf({"target_cluster": "elsewhere"}, params)
    assert enum.startswith("param 'target_cluster'") and "allowed: source, target" in enum, enum
    assert check_conf(["backup"], params) == ['the conf must be a JSON object of params, got ["backup"]']
    with pytest.raises(ConfError) as info:
        validate_conf({"dry_run": 1, "kinds": []}, params)
    assert [p.split(":")[0] for p in info.value.problems] == ["param 'dry_run'", "param 'kinds' is unknown"]


def test_run_conf_check_fails_the_task_and_skips_dags_without_params():
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.params import check_run_conf

    run = SimpleNamespace(conf={"namespace_maping": {"a": "b"}})
    plan_dag = SimpleNamespace(dag=SimpleNamespace(dag_id="ys1000_restore__p", params={}))
    assert check_run_conf(plan_dag, {"dag_run": run}) is None  # a restore plan: its plan file decides
    generic = SimpleNamespace(
        dag=SimpleNamespace(dag_id=RESTORE, params=restore_dag_params()), backup="latest", repository_name="sandbox-s3"
    )
    with pytest.raises(
        AirflowFailException,
        match=r"wrong conf for ys1000_restore \(nothing was restored\): "
        r"param 'namespace_maping' is unknown: did you mean",
    ):
        check_run_conf(generic, {"dag_run": run})
    assert check_run_conf(generic, {"dag_run": SimpleNamespace(conf={"dry_run": True})}) is None
