"""The ys1000 pages through FastAPI's TestClient: Airflow's auth is required, runs and backups
are shown, filters work, Secret data is masked unless revealed by a user allowed to."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from ui_helpers import BACKUP_DAG, PLAN, SECRET_VALUE, jwt_for

# the test configuration's JWT secret is short (unit_tests.cfg); not something the pages choose
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def login(client, role: str = "viewer", username: str | None = None) -> None:
    client.cookies.set("_token", jwt_for(username or role, role))


def test_pages_need_login(client, ui_env):
    r = client.get("/ys1000/jobs")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?next=")
    assert "ys1000%2Fjobs" in r.headers["location"]
    assert client.get("/ys1000/api/jobs").status_code == 401
    page = f"/ys1000/repositories/local/backups/{ui_env.backup_id}"
    assert client.get(page).status_code == 303
    assert client.post(page + "/verify").status_code == 401
    client.cookies.set("_token", "not-a-jwt")
    assert client.get("/ys1000/jobs").status_code == 303
    assert client.get("/ys1000/api/jobs").status_code == 401


def test_bearer_token_is_accepted(client, ui_env):
    r = client.get("/ys1000/api/jobs", headers={"Authorization": f"Bearer {jwt_for('viewer', 'viewer')}"})
    assert r.status_code == 200
    assert {j["run_id"] for j in r.json()["jobs"]} >= {ui_env.run_id, ui_env.running_run_id}


def test_job_monitor_lists_runs_with_progress_and_links(client, ui_env):
    login(client)
    r = client.get("/ys1000/jobs")
    assert r.status_code == 200, r.text
    html = r.text
    assert f'data-run-id="{ui_env.run_id}"' in html and f'data-run-id="{ui_env.running_run_id}"' in html
    run_link = f"/dags/{BACKUP_DAG}/runs/{quote(ui_env.run_id, safe='')}"
    assert f'href="{run_link}"' in html  # Airflow's run view
    assert f"/dags/{BACKUP_DAG}/runs/{quote(ui_env.failed_run_id, safe='')}/tasks/preflight" in html  # its log
    assert ui_env.backup_id in html and "4/4 resources" in html
    assert "40/160 resources" in html and "1.0 KiB/4.0 KiB" in html  # the live progress XCom
    assert "data-refresh" in html  # something runs: the page refreshes itself

    jobs = {j["run_id"]: j for j in client.get("/ys1000/api/jobs").json()["jobs"]}
    done, running = jobs[ui_env.run_id], jobs[ui_env.running_run_id]
    assert (done["kind"], done["plan"], done["cluster"], done["state"]) == ("backup", PLAN, "source", "success")
    assert done["progress"]["objects_done"] == done["progress"]["objects_total"] == 4
    assert done["progress"]["bytes_total"] == 2048 and done["duration_seconds"] is not None
    assert (
        running["progress"].items()
        >= {
            "objects_done": 40,
            "objects_total": 160,
            "bytes_done": 1024,
            "bytes_total": 4096,
            "percent": 25,
            "source": "xcom",
        }.items()
    )
    assert running["progress"]["phase"] == "capture: resources"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("kind=backup", {"done", "running", "failed"}),
        ("kind=restore", {"restore"}),
        ("kind=migration", set()),
        ("state=running", {"running"}),
        ("state=failed", {"failed", "restore"}),
        ("cluster=source", {"done", "running", "failed"}),
        ("cluster=target", {"restore"}),
        (f"plan={PLAN}&state=success", {"done"}),
    ],
)
def test_job_monitor_filters(client, ui_env, query, expected):
    login(client)
    names = {
        ui_env.run_id: "done",
        ui_env.running_run_id: "running",
        ui_env.failed_run_id: "failed",
        ui_env.restore_run_id: "restore",
    }
    got = {names[j["run_id"]] for j in client.get(f"/ys1000/api/jobs?{query}").json()["jobs"] if j["run_id"] in names}
    assert got == expected
    html = client.get(f"/ys1000/jobs?{query}").text
    assert all((f'data-run-id="{rid}"' in html) == (name in expected) for rid, name in names.items())


def job_url(dag_id: str, run_id: str, query: str = "") -> str:
    return f"/ys1000/jobs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}" + (f"?{query}" if query else "")


def test_job_details_lists_resources_and_filters(client, ui_env):
    login(client)
    r = client.get(job_url(BACKUP_DAG, ui_env.run_id))
    assert r.status_code == 200, r.text
    html = r.text
    assert ui_env.backup_id in html and "Completed" in html
    for kind, name in (
        ("Namespace", "demo"),
        ("ConfigMap", "app-config"),
        ("Secret", "db-pass"),
        ("Deployment", "web"),
    ):
        assert f'data-kind="{kind}" data-namespace="{"" if kind == "Namespace" else "demo"}" data-name="{name}"' in html
    assert "Secret 1" in html and "ConfigMap 1" in html  # counts per kind
    html = client.get(job_url(BACKUP_DAG, ui_env.run_id, "kind=Secret")).text
    assert 'data-name="db-pass"' in html and 'data-name="app-config"' not in html
    html = client.get(job_url(BACKUP_DAG, ui_env.run_id, "namespace=-")).text  # cluster-scoped only
    assert 'data-kind="Namespace"' in html and 'data-kind="Deployment"' not in html
    html = client.get(job_url(BACKUP_DAG, ui_env.run_id, "name=WE")).text
    assert 'data-name="web"' in html and 'data-name="db-pass"' not in html
    assert f"/ys1000/restore?repository=local&amp;backup={ui_env.backup_id}&amp;plan={PLAN}" in html


def resource_url(ui_env, reveal: bool = False) -> str:
    return f"/ys1000/repositories/local/backups/{ui_env.backup_id}/resource?gr=secrets&namespace=demo&name=db-pass" + (
        "&reveal=1" if reveal else ""
    )


def test_secret_yaml_is_masked(client, ui_env):
    import base64

    login(client)
    r = client.get(resource_url(ui_env))
    assert r.status_code == 200, r.text
    html = r.text
    assert "password: &#39;***&#39;" in html or "password: '***'" in html
    assert SECRET_VALUE not in html
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in html  # not in data, nor the annotation
    assert "masked: holds the Secret" in html
    assert "reveal-secret" not in html  # a viewer may not reveal: no link
    assert client.get(resource_url(ui_env, reveal=True)).status_code == 403
    cm = client.get(
        f"/ys1000/repositories/local/backups/{ui_env.backup_id}/resource?gr=configmaps&namespace=demo&name=app-config"
    ).text
    assert "greeting: hello" in cm  # other kinds are shown as they are
    missing = client.get(
        f"/ys1000/repositories/local/backups/{ui_env.backup_id}/resource?gr=secrets&namespace=demo&name=nope"
    )
    assert missing.status_code == 404


def test_admin_may_reveal_secret_and_it_is_audited(client, ui_env):
    import base64

    from sqlalchemy import select

    from airflow.models.log import Log
    from airflow.utils.session import create_session

    login(client, "admin", "alice")
    html = client.get(resource_url(ui_env)).text
    assert "reveal-secret" in html and SECRET_VALUE not in html  # masked until asked
    html = client.get(resource_url(ui_env, reveal=True)).text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() in html and SECRET_VALUE in html
    with create_session() as session:
        rows = session.scalars(select(Log).where(Log.event == "ys1000.reveal_secret", Log.owner == "alice")).all()
    assert rows and "db-pass" in rows[-1].extra


def test_catalog_verify_and_restore_form(client, ui_env):
    login(client, "admin")
    html = client.get("/ys1000/repositories/local/backups").text
    assert f'data-backup-id="{ui_env.backup_id}"' in html
    assert "Completed" in html and "resources" in html  # status, scope
    assert "at backup" in html  # verify state from the backup run's verify task
    r = client.post(f"/ys1000/repositories/local/backups/{ui_env.backup_id}/verify")
    assert r.status_code == 303 and r.headers["location"] == "/ys1000/repositories/local/backups"
    html = client.get(f"/ys1000/repositories/local/backups/{ui_env.backup_id}").text
    assert "4 objects verified" in html and "by admin" in html

    html = client.get(f"/ys1000/restore?repository=local&backup={ui_env.backup_id}&plan={PLAN}").text
    assert f'id="param-backup" name="backup" value="{ui_env.backup_id}"' in html
    assert f'id="param-plan" name="plan" value="{PLAN}"' in html
    assert '<option value="local" selected>' in html
    assert 'data-api="/api/v2/dags/ys1000_restore/dagRuns"' in html
    assert 'id="trigger-submit" >' in html or 'id="trigger-submit">' in html  # admin may trigger


def test_other_dags_are_not_jobs(client, ui_env):
    login(client)
    r = client.get(job_url("some_other_dag", "x"))
    assert r.status_code == 404
    r = client.get(job_url(BACKUP_DAG, "no-such-run"))
    assert r.status_code == 404


def test_restore_job_shows_the_per_object_report(client, ui_env):
    login(client)
    job = {j["run_id"]: j for j in client.get("/ys1000/api/jobs?kind=restore").json()["jobs"]}[ui_env.restore_run_id]
    assert (job["cluster"], job["repository"], job["backup_id"], job["restore_id"]) == (
        "target",
        "local",
        ui_env.backup_id,
        ui_env.restore_id,
    )
    html = client.get(job_url("ys1000_restore", ui_env.restore_run_id)).text
    assert 'id="restore-report"' in html and ui_env.restore_id in html and "PartiallyFailed" in html
    assert 'class="action-failed"' in html and "admission webhook denied the request" in html
    assert 'class="action-skipped"' in html and 'class="action-created"' in html
    assert "/dags/ys1000_restore/runs/" in html and "/tasks/restore" in html  # run and failed task's log
