"""Proven restores in real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor):

- a backup run commits and emits its asset event; the plan's drill DAG, scheduled on that asset,
  starts by itself, restores the backup into a scratch namespace with its PVC data read back,
  waits for the workloads, runs the checks (objects, an HTTP GET), records the evidence with an
  RTO and removes the scratch namespace; the asset history shows both events;
- a backup of an application whose image no longer pulls: its drill fails naming the pod and
  ErrImagePull, the scratch namespace is gone, and the failure alert reaches a real SMTP server;
- a plan with ``rpo: 2m`` and no backup (its schedule never ran): once the objectives DAG runs,
  the RPO alert arrives within a minute;
- a Secret of the drilled namespace (backed up, restored by the drill into its scratch namespace)
  leaves its value in none of the Airflow home (SQLite, task and trigger logs), the bucket (drill
  evidence included) or the alert mails."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from af_helpers import copy_config, set_bucket, write_plan
from e2e_helpers import create_pools, dump_logs, open_repo, plant_data, pv_dir, xcom

from ys1000.kube.discovery import NAMESPACES
from ys1000.waiting import wait_until

pytestmark = pytest.mark.slow

PLAN = "shop-backup"
BACKUP = f"ys1000_backup__{PLAN}"
DRILL = f"ys1000_drill__{PLAN}"


@pytest.fixture(scope="module")
def http_port():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: owned at once
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def mailbox():
    from reports.receivers import Mailbox

    with Mailbox() as box:
        yield box


@pytest.fixture(scope="module")
def drill_env(sandbox, sandbox_s3, source, tmp_path_factory, http_port, mailbox):
    from ys1000_dev.sandbox import sampleapp
    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.kube import Kube

    base = tmp_path_factory.mktemp("drill")
    bucket = sandbox_s3.new_bucket(f"drill-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(base / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    ns = f"shop-{uuid.uuid4().hex[:6]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    sampleapp.deploy(kube, ns)
    plant_data(pv_dir(kube, ns, "wp-content"), 2)
    (pv_dir(kube, ns, "data-mysql-0") / "ibdata1").write_bytes(b"\1" * 65536)
    # a Secret value the drill restores into its scratch namespace: found nowhere afterwards (last test)
    planted = f"planted-{uuid.uuid4().hex}"
    source.core.create_namespaced_secret(ns, {"metadata": {"name": "planted"}, "stringData": {"token": planted}})
    write_plan(
        cdir,
        "shop.yaml",
        f"""
        kind: BackupPlan
        name: {PLAN}
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        policy: {{scope: full, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        rto: 10m
        drill:
          timeout: 10m
          checks:
            - {{name: web, type: object, kind: Deployment, object: wordpress}}
            - {{name: site, type: http, service: wordpress, host: 127.0.0.1, port: {http_port}, path: /}}
        """,
    )
    # an application whose image no longer pulls (the sandbox node fails it like a kubelet)
    broken = f"gone-{uuid.uuid4().hex[:6]}"
    source.core.create_namespace({"metadata": {"name": broken, "labels": {"ys1000.io/test": "true"}}})
    labels = {"app": "web"}
    source.apps.create_namespaced_deployment(
        broken,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/shop/web:1"}]},
                },
            },
        },
    )
    write_plan(
        cdir,
        "broken.yaml",
        f"""
        kind: BackupPlan
        name: broken-backup
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{broken}]}}
        policy: {{scope: resources, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        notify: {{email: [dba@example.com]}}
        drill: {{timeout: 5m}}
        """,
    )
    write_plan(
        cdir,
        "stale.yaml",
        f"""
        kind: BackupPlan
        name: stale-backup
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        policy: {{scope: resources, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        rpo: 2m
        """,
    )
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": mailbox.port,
        "extra": {"from_email": "ys1000@example.com", "disable_tls": True, "disable_ssl": True},
    }
    env = sandbox_env(sandbox["dir"]) | {
        "YS1000_CONFIG_DIR": str(cdir),
        "AIRFLOW_CONN_YS1000_SMTP": json.dumps(smtp),
    }
    yield SimpleNamespace(
        config_dir=cdir, bucket=bucket, namespace=ns, broken=broken, env=env, base=base, kube=kube, planted=planted
    )
    source.core.delete_namespace(ns)
    source.core.delete_namespace(broken)


@pytest.fixture(scope="module")
def airflow(drill_env):
    from ys1000_dev.processes import AirflowStack

    stack = AirflowStack.standalone(drill_env.base / "airflow", drill_env.env)
    stack.start(on_migrated=create_pools)
    try:
        client = stack.client()
        client.wait_for_dag(BACKUP)
        client.wait_for_dag(DRILL)
        assert client.import_errors() == []
        yield stack
    finally:
        if any(m.proc.poll() is not None for m in stack.procs.procs.values()):
            dump_logs(stack)
        stack.stop()


def test_a_backup_triggers_its_drill_through_the_asset(airflow, drill_env, sandbox_s3):
    c = airflow.client()
    c.unpause(DRILL)  # scheduled on the plan's assets: it waits for a backup
    assert c.get(f"/api/v2/dags/{DRILL}/dagRuns")["dag_runs"] == []
    run = c.trigger(BACKUP)["dag_run_id"]
    assert c.wait_run(BACKUP, run, timeout=600)["state"] == "success"
    bid = xcom(c, BACKUP, run, "commit")["backup_id"]

    drills = wait_until(
        lambda: c.get(f"/api/v2/dags/{DRILL}/dagRuns")["dag_runs"],
        timeout=120,
        what="the drill DAG started by the backup's asset event",
        interval=1.0,
    )
    [drill_run] = drills
    assert drill_run["run_type"] == "asset_triggered"
    t0 = time.monotonic()
    done = c.wait_run(DRILL, drill_run["dag_run_id"], timeout=900)
    assert done["state"] == "success", f"drill run {done['state']} after {time.monotonic() - t0:.0f} s"
    summary = xcom(c, DRILL, drill_run["dag_run_id"], "drill")
    assert summary["backup_id"] == bid and summary["verified"] is True and summary["rto_seconds"] > 0

    # the evidence in the repository: every step, both checks passed, the PVCs' bytes read back
    repo = open_repo(sandbox_s3, drill_env.bucket)
    [ev] = repo.drills(bid)
    assert ev["drill_id"] == summary["drill_id"] and ev["status"] == "verified"
    assert ev["rto_seconds"] == summary["rto_seconds"] and ev["rto_met"] is True and ev["rto_objective_seconds"] == 600
    assert [(ch["name"], ch["ok"]) for ch in ev["checks"]] == [("web", True), ("site", True)]
    assert {v["pvc"] for v in ev["volumes"] if v["ok"] and v["content_verified"]} == {"wp-content", "data-mysql-0"}
    scratch = ev["namespaces"][drill_env.namespace]
    assert ev["cleanup"] == [scratch]
    assert drill_env.kube.get_or_none(NAMESPACES.path(name=scratch)) is None
    [entry] = repo.list_backups(PLAN)
    assert entry.drill["state"] == "verified" and entry.drill["rto_seconds"] == ev["rto_seconds"]

    # the Assets history: the backup's event with its extra, and the drill's own
    uri = f"ys1000://source/{drill_env.namespace}"
    events = c.get("/api/v2/assets/events", params={"limit": 50})["asset_events"]
    by_uri = {e["uri"]: e for e in events}
    assert by_uri[uri]["extra"]["backup_id"] == bid and by_uri[uri]["extra"]["status"] == "Completed"
    assert by_uri[uri]["extra"]["bytes"] >= 2 << 20 and by_uri[uri]["extra"]["duration_seconds"] > 0
    assert by_uri[f"{uri}/drill"]["extra"]["verified"] is True


def test_a_drill_of_an_app_whose_image_no_longer_pulls_fails_and_alerts(airflow, drill_env, sandbox_s3, mailbox):
    c = airflow.client()
    dag, drill_dag = "ys1000_backup__broken-backup", "ys1000_drill__broken-backup"
    c.wait_for_dag(drill_dag)
    c.unpause(drill_dag)
    run = c.trigger(dag)["dag_run_id"]
    assert c.wait_run(dag, run, timeout=300)["state"] == "success"
    bid = xcom(c, dag, run, "commit")["backup_id"]
    [drill_run] = wait_until(
        lambda: c.get(f"/api/v2/dags/{drill_dag}/dagRuns")["dag_runs"],
        timeout=120,
        what="the drill started by the backup",
        interval=1.0,
    )
    assert c.wait_run(drill_dag, drill_run["dag_run_id"], timeout=600)["state"] == "failed"
    [ev] = open_repo(sandbox_s3, drill_env.bucket).drills(bid)
    scratch = ev["namespaces"][drill_env.broken]
    assert ev["status"] == "failed" and ev["reason"].startswith(f"workloads not ready: pod {scratch}/web-")
    assert "ErrImagePull" in ev["reason"] or "ImagePullBackOff" in ev["reason"]
    assert drill_env.kube.get_or_none(NAMESPACES.path(name=scratch)) is None
    alert = wait_until(
        lambda: [m for _, m in mailbox.messages if drill_dag in (m["Subject"] or "")],
        timeout=60,
        what="the drill's failure alert by e-mail",
    )[0]
    body = mailbox.body(alert)
    assert f"drill {ev['drill_id']} of backup {bid} failed: workloads not ready: pod {scratch}/web-" in body


def test_a_plan_without_a_backup_within_its_rpo_alerts(airflow, mailbox):
    c = airflow.client()
    c.wait_for_dag("ys1000_objectives")
    t0 = time.monotonic()
    c.unpause("ys1000_objectives")  # every minute: the plan never had a backup, so it is breached
    alert = wait_until(
        lambda: [m for _, m in mailbox.messages if "RPO breached: plan stale-backup" in (m["Subject"] or "")],
        timeout=120,
        what="the RPO alert by e-mail",
        interval=1.0,
    )[0]
    assert time.monotonic() - t0 < 90
    assert alert["Subject"] == "[YS1000] RPO breached: plan stale-backup has no backup within 2m00s"
    assert "Last backup:  none" in mailbox.body(alert)


def test_the_drilled_secret_is_nowhere_but_in_the_cluster_and_encrypted_repository(
    airflow, drill_env, sandbox_s3, mailbox
):
    from security.secret_scan import Blob, Bucket, Files, Sqlite, find

    value = drill_env.planted.encode()
    repo = open_repo(sandbox_s3, drill_env.bucket)
    [entry] = repo.list_backups(PLAN)
    # the Secret was backed up (and so restored by the drill into its scratch namespace)
    assert ("Secret", "planted") in {(e.kind, e.name) for e in repo.read_index(entry.backup_id)}
    [ev] = repo.drills(entry.backup_id)
    assert ev["status"] == "verified"
    home = airflow.home
    assert list((home / "logs").glob(f"dag_id={DRILL}/**/*.log")), "no drill task logs to scan"
    mails = [Blob(f"mail {m['Subject']}", m.as_bytes()) for _, m in mailbox.messages]
    assert mails  # the alerts of the tests above
    places = [Files(drill_env.base), Sqlite(home / "airflow.db"), Bucket(sandbox_s3.client(), drill_env.bucket), *mails]
    assert find(value, places) == []
    # the scan finds the value where it is (proven on the same material)
    assert find(value, [Blob("a log line", b"token " + value)]) == ["a log line"]
