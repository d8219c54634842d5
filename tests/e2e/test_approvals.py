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

import base64
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
    # a Secret whose value must never show up outside the cluster and the encrypted repository
    # (the last test scans every other place the runs leave something in)
    planted = f"planted-{uuid.uuid4().hex}"
    source.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "planted"},
            "type": "Opaque",
            "data": {"token": base64.b64encode(planted.encode()).decode()},
        },
    )
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
    yield SimpleNamespace(
        config_dir=cdir, bucket=bucket, ns=ns, tns=f"{ns}-moved", wns=wns, env=env, base=base, planted=planted
    )
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


# -- issue 16: secrets stay secret ----------------------------------------------------------------


def _viewer_pages(stack, env) -> tuple[list, dict[str, int]]:
    """What Airflow's UI and the ys1000 pages show vera (a viewer): every body, and the status of
    every path asked for. Airflow 3's UI is a single-page app: what it renders comes from these
    ``/api/v2`` and ``/ui`` responses."""
    import re
    from urllib.parse import quote

    from security.secret_scan import Blob

    vera = _as(stack, "vera")
    headers = {"Authorization": f"Bearer {vera.token()}"}
    pages, status = [], {}

    def get(path: str, **params):
        r = vera.http.get(path, params=params or None, headers=headers, follow_redirects=True)
        status[path] = r.status_code
        pages.append(Blob(f"{stack.url}{path}{'?' + str(r.request.url.query, 'ascii') if params else ''}", r.content))
        return r

    q = lambda v: quote(str(v), safe="")  # noqa: E731
    dags = [d["dag_id"] for d in get("/api/v2/dags", limit=100).json()["dags"]]
    for d in dags:
        for path in (f"/api/v2/dags/{d}/details", f"/api/v2/dags/{d}/tasks", f"/api/v2/dagSources/{d}"):
            get(path)
        get(f"/ui/grid/structure/{d}")
        get(f"/ui/grid/runs/{d}")
    runs = get("/api/v2/dags/~/dagRuns", limit=100).json()["dag_runs"]
    for run in runs:
        base = f"/api/v2/dags/{q(run['dag_id'])}/dagRuns/{q(run['dag_run_id'])}"
        get(base)
        get(f"{base}/hitlDetails")
        get(f"/ui/gantt/{q(run['dag_id'])}/{q(run['dag_run_id'])}")
        for ti in get(f"{base}/taskInstances", limit=1000).json()["task_instances"]:
            mapped = {"map_index": ti["map_index"]} if ti["map_index"] >= 0 else {}
            for n in range(1, (ti.get("try_number") or 0) + 1):
                get(f"{base}/taskInstances/{q(ti['task_id'])}/logs/{n}", full_content="true", **mapped)
    entries = get("/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries", limit=1000).json()["xcom_entries"]
    for e in entries:
        get(
            f"/api/v2/dags/{q(e['dag_id'])}/dagRuns/{q(e['run_id'])}/taskInstances/{q(e['task_id'])}"
            f"/xcomEntries/{q(e['key'])}",
            map_index=e["map_index"],
        )
    for path in (
        "/api/v2/eventLogs",
        "/api/v2/importErrors",
        "/api/v2/dagWarnings",
        "/api/v2/dagStats",
        "/api/v2/assets",
        "/api/v2/assets/events",
        "/api/v2/pools",
        "/api/v2/jobs",
        "/api/v2/plugins",
        "/api/v2/variables",
        "/api/v2/config",
        "/api/v2/connections",
        "/ui/dags",
        "/ui/config",
        "/ui/dashboard/dag_stats",
    ):
        get(path)
    # the ys1000 pages: job monitor and every job's details, protection, approvals, the catalog,
    # every backup's page and the planted Secret's (masked) YAML in each backup that has it
    jobs = get("/ys1000/api/jobs").json()["jobs"]
    get("/ys1000/jobs")
    for job in jobs:
        get(f"/ys1000/jobs/{q(job['dag_id'])}/{q(job['run_id'])}")
    for path in ("/ys1000/protection", "/ys1000/api/protection", "/ys1000/approvals", "/ys1000/api/approvals"):
        get(path)
    get("/ys1000/repositories")
    catalog = get("/ys1000/repositories/sandbox-s3/backups").text
    backup_ids = sorted(set(re.findall(r"/repositories/sandbox-s3/backups/([^/?\"'#&]+)", catalog)))
    for bid in backup_ids:
        get(f"/ys1000/repositories/sandbox-s3/backups/{bid}")
        get(
            f"/ys1000/repositories/sandbox-s3/backups/{bid}/resource",
            gr="secrets",
            namespace=env.ns,
            name="planted",
        )
    get("/ys1000/restore")
    return pages, status


def test_the_planted_secret_is_nowhere_but_in_the_cluster_and_encrypted_repository(
    airflow, env, sandbox_s3, tmp_path, monkeypatch
):
    """After the migrations, the restore and the backups above, plus ``ys1000 collect-logs`` and the
    daily report: the planted Secret's value (raw or base64) is in none of the Airflow home (SQLite
    metadata DB, task/trigger logs, every component's log), the metadata DB's columns (XComs...),
    the repository bucket, the collect-logs archive, the report and anything vera (a viewer) is
    shown. The scan is proven on the same run: a copy of the logs with the value written into one
    task log, and the Secret revealed to a user who may read connections, are found."""
    import datetime as dt
    import shutil
    import sqlite3

    import httpx

    from security.secret_scan import Blob, Bucket, Files, Sqlite, find
    from ys1000.notify.airflow_api import AirflowApiClient
    from ys1000.notify.report import collect_jobs, window_approvals
    from ys1000.notify.summary import daily_summary

    value = env.planted.encode()
    home = airflow.home
    # the support bundle, as an operator makes it (the stack's environment: its connections)
    bundle = tmp_path / "support.tar.gz"
    airflow.procs.run(
        "collect-logs",
        [str(Path(sys.executable).parent / "ys1000"), "collect-logs", "-o", str(bundle), "--since", "24h"],
        timeout=300,
    )
    # the daily report of this window (what the ys1000_report task sends), built in-process
    for k, v in env.env.items():
        monkeypatch.setenv(k, v)
    api = AirflowApiClient(
        httpx.Client(base_url=airflow.url, timeout=30), username="admin", password=airflow.admin_password()
    )
    until = dt.datetime.now(dt.timezone.utc)
    since = until - dt.timedelta(hours=24)
    jobs = collect_jobs(api, since, until)
    report = daily_summary(jobs, since=since, until=until, approvals=window_approvals(env.config_dir, since, until))
    assert any(j.dag_id == MIGRATE for j in jobs) and report.text

    pages, status = _viewer_pages(airflow, env)

    # the places hold what they should (so an empty scan means something)
    db = home / "airflow.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM xcom").fetchone()[0] > 10
    task_logs = list((home / "logs").glob(f"dag_id={MIGRATE}/**/*.log"))
    assert task_logs and (home / "process-logs" / "triggerer.log").is_file()
    bucket = Bucket(sandbox_s3.client(), env.bucket)
    assert len(bucket.keys()) > 20
    import tarfile

    with tarfile.open(bundle) as tar:
        members = tar.getnames()
    assert any(m.startswith(f"airflow/tasks/dag_id={MIGRATE}/") for m in members), members[:20]
    ok = {p for p, s in status.items() if s == 200}
    assert "/api/v2/dags" in ok and "/api/v2/dags/~/dagRuns" in ok and "/ys1000/api/jobs" in ok
    assert sum("/logs/" in p for p in ok) > 20 and sum("/xcomEntries/" in p for p in ok) > 10
    assert sum(p.startswith("/ys1000/jobs/") for p in ok) >= 5
    secret_pages = [p for p in ok if p.endswith("/resource")]
    assert secret_pages, status  # the Secret is in backups vera may read: shown masked
    assert status["/api/v2/connections"] == 403

    found = find(
        value,
        [
            Files(env.base),  # Airflow home: airflow.db, logs/ (tasks, triggers), process-logs/; config
            Sqlite(db),
            bucket,
            Files(bundle),
            Blob("daily report", f"{report.subject}\n{report.text}".encode()),
            *pages,
        ],
    )
    assert found == []

    # the scan is proven on this run's own material: a copy of the logs, one task log with the value
    copy = tmp_path / "logs-copy"
    shutil.copytree(home / "logs", copy)
    leaked = copy / task_logs[0].relative_to(home / "logs")
    with open(leaked, "a") as f:
        f.write(json.dumps({"event": f"connecting with token {env.planted}", "level": "info"}) + "\n")
    assert find(value, [Files(copy)]) == [str(leaked)]
    # ... and the Secret's page revealed to a user who may read connections (admin) holds it
    bid = secret_pages[0].split("/backups/")[1].split("/")[0]
    admin = airflow.client()
    r = admin.http.get(
        f"/ys1000/repositories/sandbox-s3/backups/{bid}/resource",
        params={"gr": "secrets", "namespace": env.ns, "name": "planted", "reveal": "1"},
        headers={"Authorization": f"Bearer {admin.token()}"},
    )
    assert r.status_code == 200
    assert find(value, [Blob(str(r.url), r.content)]) == [str(r.url)]
    # vera may not reveal it
    vera = _as(airflow, "vera")
    r = vera.http.get(
        f"/ys1000/repositories/sandbox-s3/backups/{bid}/resource",
        params={"gr": "secrets", "namespace": env.ns, "name": "planted", "reveal": "1"},
        headers={"Authorization": f"Bearer {vera.token()}"},
    )
    assert r.status_code == 403 and value not in r.content
