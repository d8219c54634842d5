"""Human approval of destructive steps in real Airflow (api-server, scheduler, dag-processor,
triggerer; LocalExecutor), answered through the REST API by real users of the simple auth manager
(a viewer sees the request but can neither answer it nor trigger a restore):

- a migration with ``approval: required``: a cutover run syncs with the source running, then waits
  (``awaiting_input``) with the source untouched; the request shows the workloads that will stop;
  a user not in ``approvers`` is refused (403); rejecting fails the run saying who rejected, the
  source's workloads exactly as they were; a second run approved by an allowed user cuts over
  (target up, source at 0) and the decision — who, when, the comment — is in the repository;
  the browser shows the request with its summary (screenshots in test-artifacts/approvals);
- a restore plan with ``existing_resource_policy: update`` into a namespace that is not empty waits
  for approval before writing anything, then restores;
- a backup plan with ``approval: required``: after a third of its ConfigMaps are deleted the backup
  is suspicious and its ``review`` task asks; rejecting keeps the mark and pauses the plan's DAG
  (through the ``airflow_api`` connection); once resumed, the next (still suspicious) backup is
  confirmed by alice: the mark is cleared and ``latest`` is that backup.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from af_helpers import copy_config, set_bucket, write_plan
from e2e_helpers import create_pools, dump_logs, open_repo, pv_dir, xcom

from ys1000.waiting import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))  # the browser fixture
from test_ui_e2e import browser, settled_wait  # noqa: E402, F401  (a fixture, used by name)

pytestmark = pytest.mark.slow

MIGRATE = "ys1000_migrate__move"
RESTORE = "ys1000_restore__put-back"
BACKUP = "ys1000_backup__keep"
WATCHED = "ys1000_backup__watched"
# alice may answer; mallory (an admin too) may not; vera only reads
USERS = "admin:admin,alice:admin,mallory:admin,vera:viewer"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "approvals"


def _deployment(replicas: int, claim: str) -> dict:
    labels = {"app": "web"}
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "c", "image": "nginx", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def env(sandbox, sandbox_s3, source, tmp_path_factory):
    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.kube import Kube

    base = tmp_path_factory.mktemp("approvals")
    bucket = sandbox_s3.new_bucket(f"appr-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(base / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    ns = f"appr-{uuid.uuid4().hex[:6]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    source.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    wait_until(
        lambda: source.core.read_namespaced_persistent_volume_claim("data", ns).status.phase == "Bound",
        timeout=30,
        what="PVC data bound",
    )
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    (pv_dir(kube, ns, "data") / "page.html").write_text("v1\n")
    source.apps.create_namespaced_deployment(ns, _deployment(2, "data"))
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"colour": "blue"}})
    write_plan(
        cdir,
        "move.yaml",
        f"""
        kind: MigrationPlan
        name: move
        source_cluster: source
        target_cluster: target
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        namespace_mapping: {{{ns}: {ns}-moved}}
        storage_class_mapping: {{ys1000-local: ys1000-local-alt}}
        approval: required
        approvers: [alice]
        approval_timeout: 30m
        """,
    )
    write_plan(
        cdir,
        "keep.yaml",
        f"""
        kind: BackupPlan
        name: keep
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        policy: {{scope: resources, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        """,
    )
    wns = f"{ns}-w"  # thirty ConfigMaps under a plan that asks for a review of suspicious backups
    source.core.create_namespace({"metadata": {"name": wns, "labels": {"ys1000.io/test": "true"}}})
    for i in range(30):
        source.core.create_namespaced_config_map(wns, {"metadata": {"name": f"cm-{i:02d}"}, "data": {"v": str(i)}})
    write_plan(
        cdir,
        "watched.yaml",
        f"""
        kind: BackupPlan
        name: watched
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{wns}]}}
        policy: {{scope: resources, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        approval: required
        approvers: [alice]
        """,
    )
    write_plan(
        cdir,
        "put-back.yaml",
        """
        kind: RestorePlan
        name: put-back
        backup: {plan: keep, id: latest}
        target_cluster: source
        repository: sandbox-s3
        scope: resources
        include_kinds: [ConfigMap]
        existing_resource_policy: update
        approval: required
        approvers: [alice]
        """,
    )
    env = sandbox_env(sandbox["dir"]) | {
        "YS1000_CONFIG_DIR": str(cdir),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
    }
    yield SimpleNamespace(config_dir=cdir, bucket=bucket, ns=ns, tns=f"{ns}-moved", wns=wns, env=env, base=base)
    source.core.delete_namespace(ns)
    source.core.delete_namespace(wns)


@pytest.fixture(scope="module")
def airflow(env):
    from ys1000_dev.processes import AirflowStack

    stack = AirflowStack.standalone(env.base / "airflow", env.env)
    stack.start(on_migrated=create_pools)
    try:
        client = stack.client()
        for dag in (MIGRATE, RESTORE, BACKUP, WATCHED):
            client.wait_for_dag(dag)
        assert client.import_errors() == []
        yield stack
    finally:
        if any(m.proc.poll() is not None for m in stack.procs.procs.values()):
            dump_logs(stack)
        stack.stop()


def _as(stack, user: str):
    from ys1000_dev.processes import ApiClient

    return ApiClient(stack.url, user, json.loads(stack.password_file.read_text())[user])


def _hitl(dag: str, run: str, task: str) -> str:
    return f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails"


def _paused(stack, dag: str, run: str, task: str) -> None:
    """Wait until the scheduler has seen the asking process end (its executor event processed).

    Airflow 3.3 resumes an answered task under the same try key: an answer that arrives before the
    scheduler has processed the first process's exit makes it see "finished, but queued" and fail
    the resumed task. A person never answers within that second; the test, through the API, can.
    """
    log = stack.procs.procs["scheduler"].log
    line = f"TaskInstance Finished: dag_id={dag}, task_id={task}, run_id={run},"
    wait_until(lambda: line in log.read_text(errors="replace"), timeout=120, what=f"the scheduler to see {task} ask")


def _answer(client, dag: str, run: str, task: str, option: str, comment: str) -> None:
    client.request(
        "PATCH", _hitl(dag, run, task), json={"chosen_options": [option], "params_input": {"comment": comment}}
    )


def _workloads(source, ns: str) -> dict:
    """What a cutover changes in the source, for an exact before/after comparison."""
    d = source.apps.read_namespaced_deployment("web", ns)
    return {"replicas": d.spec.replicas, "annotations": d.metadata.annotations or {}}


def test_cutover_waits_for_an_allowed_approver(airflow, env, source, target, sandbox_s3, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    from ys1000_dev.processes import ApiError

    admin = airflow.client()
    alice, mallory = _as(airflow, "alice"), _as(airflow, "mallory")
    before = _workloads(source, env.ns)
    assert before["replicas"] == 2

    # 1. a cutover asks first: the pre-sync ran with the source up, nothing is stopped yet
    run = admin.trigger(MIGRATE, {"mode": "cutover"})["dag_run_id"]
    admin.wait_task(MIGRATE, run, "approve_cutover", {"awaiting_input"}, timeout=600)
    _paused(airflow, MIGRATE, run, "approve_cutover")
    states = {t: ti["state"] for t, ti in admin.task_instances(MIGRATE, run).items()}
    assert states["presync_commit"] == "success" and states.get("stop_source") in (None, "none", "scheduled"), states
    assert _workloads(source, env.ns) == before
    detail = admin.get(_hitl(MIGRATE, run, "approve_cutover"))
    body = detail["body"]
    assert f"`{env.ns}` Deployment `web`: 2 replicas → 0 replicas" in body, body
    assert f"`{env.ns}-moved`" in body and "Last incremental sync" in body and "target" in body
    assert [u["id"] for u in detail["assigned_users"]] == ["alice"]

    # the request in the browser, as alice sees it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wait = settled_wait(browser)
    browser.get(f"{airflow.url}/")
    wait.until(EC.presence_of_element_located((By.NAME, "username")))
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys(alice.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/" not in d.current_url and d.get_cookie("_token"))
    browser.get(f"{airflow.url}/dags/{MIGRATE}/runs/{run}/tasks/approve_cutover/required_actions")
    wait.until(lambda d: "2 replicas → 0 replicas" in d.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Cut over move" in text and "Last incremental sync" in text
    browser.save_screenshot(str(ARTIFACTS / "01-cutover-request.png"))

    # 2. mallory is not an approver: refused, nothing recorded
    with pytest.raises(ApiError, match="HTTP 403"):
        _answer(mallory, MIGRATE, run, "approve_cutover", "Approve", "let me")
    assert admin.get(_hitl(MIGRATE, run, "approve_cutover"))["responded_by_user"] is None
    # vera (viewer) sees the run and the request, but cannot answer it nor trigger a restore
    vera = _as(airflow, "vera")
    assert vera.get(f"/api/v2/dags/{MIGRATE}/dagRuns/{run}")["state"] == "running"
    assert "2 replicas → 0 replicas" in vera.get(_hitl(MIGRATE, run, "approve_cutover"))["body"]
    with pytest.raises(ApiError, match="HTTP 403"):
        _answer(vera, MIGRATE, run, "approve_cutover", "Approve", "read-only")
    with pytest.raises(ApiError, match="HTTP 403"):
        vera.request("POST", f"/api/v2/dags/{RESTORE}/dagRuns", json={"logical_date": None, "conf": {}})
    assert admin.get(_hitl(MIGRATE, run, "approve_cutover"))["responded_by_user"] is None

    # 3. alice rejects: the run fails saying so; the source exactly as it was
    _answer(alice, MIGRATE, run, "approve_cutover", "Reject", "not during the sale")
    done = admin.wait_run(MIGRATE, run, timeout=300)
    assert done["state"] == "failed"
    states = {t: ti["state"] for t, ti in admin.task_instances(MIGRATE, run).items()}
    assert states["approve_cutover"] == "failed" and states["stop_source"] == "upstream_failed", states
    assert states["undo"] == "skipped" and states["failed"] == "failed", states
    assert _workloads(source, env.ns) == before
    assert target.apps.list_namespaced_deployment(env.tns).items == []
    repo = open_repo(sandbox_s3, env.bucket)
    [rejected] = repo.approvals(kind="cutover")
    assert (rejected["decision"], rejected["by"], rejected["comment"]) == ("rejected", "alice", "not during the sale")
    assert rejected["summary"]["will_stop"][0]["now"] == "2 replicas" and rejected["run_id"] == run

    # 4. a second run, approved by alice: the cutover happens
    (pv_dir(_kube(source), env.ns, "data") / "page.html").write_text("v2\n")
    run2 = admin.trigger(MIGRATE, {"mode": "cutover"})["dag_run_id"]
    admin.wait_task(MIGRATE, run2, "approve_cutover", {"awaiting_input"}, timeout=600)
    _paused(airflow, MIGRATE, run2, "approve_cutover")
    assert _workloads(source, env.ns)["replicas"] == 2
    _answer(alice, MIGRATE, run2, "approve_cutover", "Approve", "change CHG-42")
    done = admin.wait_run(MIGRATE, run2, timeout=900)
    assert done["state"] == "success", {t: ti["state"] for t, ti in admin.task_instances(MIGRATE, run2).items()}
    assert source.apps.read_namespaced_deployment("web", env.ns).spec.replicas == 0
    assert target.apps.read_namespaced_deployment("web", env.tns).spec.replicas == 2
    assert (pv_dir(_kube(target), env.tns, "data") / "page.html").read_text() == "v2\n"
    approved = repo.approvals(kind="cutover")[0]
    assert (approved["decision"], approved["by"], approved["comment"]) == ("approved", "alice", "change CHG-42")
    assert xcom(admin, MIGRATE, run2, "approve_cutover")["by"] == "alice"


def _kube(cluster):
    from ys1000.kube import Kube

    return Kube.from_kubeconfig(cluster.kubeconfig, name="k")


def test_an_overwriting_restore_waits_for_approval(airflow, env, source, sandbox_s3):
    admin, alice = airflow.client(), _as(airflow, "alice")
    run = admin.trigger(BACKUP)["dag_run_id"]
    assert admin.wait_run(BACKUP, run, timeout=600)["state"] == "success"
    # the live object changes after the backup; the restore (existing: update) would overwrite it
    source.core.patch_namespaced_config_map("settings", env.ns, {"data": {"colour": "red"}})

    run = admin.trigger(RESTORE)["dag_run_id"]
    admin.wait_task(RESTORE, run, "approve", {"awaiting_input"}, timeout=300)
    _paused(airflow, RESTORE, run, "approve")
    body = admin.get(_hitl(RESTORE, run, "approve"))["body"]
    assert "`update`" in body and "overwritten" in body and "ConfigMap 1" in body, body
    assert source.core.read_namespaced_config_map("settings", env.ns).data == {"colour": "red"}  # nothing yet

    _answer(alice, RESTORE, run, "approve", "Approve", "roll the settings back")
    assert admin.wait_run(RESTORE, run, timeout=600)["state"] == "success"
    assert source.core.read_namespaced_config_map("settings", env.ns).data == {"colour": "blue"}
    repo = open_repo(sandbox_s3, env.bucket)
    [rec] = repo.approvals(kind="restore")
    assert (rec["decision"], rec["by"], rec["comment"]) == ("approved", "alice", "roll the settings back")
    assert rec["summary"]["existing_resource_policy"] == "update"


def test_a_rejected_suspicious_backup_pauses_the_plan(airflow, env, source, sandbox_s3):
    from ys1000.config.specs import resolve_backup

    admin, alice = airflow.client(), _as(airflow, "alice")
    # the review pauses the DAG through the REST API, as the user of the `airflow_api` connection
    admin.request(
        "POST",
        "/api/v2/connections",
        json={
            "connection_id": "ys1000_airflow_api",
            "conn_type": "http",
            "host": airflow.url,
            "login": "admin",
            "password": airflow.admin_password(),
        },
    )

    def review_of(run: str) -> dict:
        admin.wait_task(WATCHED, run, "review", {"awaiting_input"}, timeout=600)
        _paused(airflow, WATCHED, run, "review")
        return admin.get(_hitl(WATCHED, run, "review"))

    first = admin.trigger(WATCHED)["dag_run_id"]
    assert admin.wait_run(WATCHED, first, timeout=600)["state"] == "success"  # nothing to review
    repo = open_repo(sandbox_s3, env.bucket)
    clean = repo.list_backups("watched")[0].backup_id

    for i in range(0, 30, 3):  # a third of the ConfigMaps gone
        source.core.delete_namespaced_config_map(f"cm-{i:02d}", env.wns)
    run = admin.trigger(WATCHED)["dag_run_id"]
    body = review_of(run)["body"]
    assert f"configmaps in {env.wns}: 10 of 30 gone" in body and "**suspicious**" in body, body
    _answer(alice, WATCHED, run, "review", "Reject", "nobody deleted settings")
    assert admin.wait_run(WATCHED, run, timeout=300)["state"] == "failed"
    assert admin.get(f"/api/v2/dags/{WATCHED}")["is_paused"] is True
    rejected = repo.list_backups("watched")[0]
    assert rejected.suspicious and rejected.review["decision"] == "rejected" and rejected.review["by"] == "alice"
    assert resolve_backup(repo, "latest", "watched") == clean

    # resumed (trigger unpauses): compared with the last trusted backup, the loss is still there
    run = admin.trigger(WATCHED)["dag_run_id"]
    assert f"configmaps in {env.wns}: 10 of 30 gone" in review_of(run)["body"]
    _answer(alice, WATCHED, run, "review", "Approve", "settings moved to a Secret")
    assert admin.wait_run(WATCHED, run, timeout=300)["state"] == "success"
    confirmed = repo.list_backups("watched")[0]
    assert not confirmed.suspicious and confirmed.anomaly["suspicious"] and confirmed.review["decision"] == "approved"
    assert resolve_backup(repo, "latest", "watched") == confirmed.backup_id
    assert [r["decision"] for r in repo.approvals(kind="anomaly")] == ["approved", "rejected"]
