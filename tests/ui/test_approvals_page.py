"""The Approvals page, and the decisions on the pages of the backup, restore and run they concern.

Decisions are stored with ``Repository.save_approval`` (the call ``ys1000.airflow.approval``
makes) into a real repository on the test S3 endpoint (MinIO), reached by the pages through the
Airflow connection ``ys1000_s3`` like in production; the other configured repository (``local``)
cannot be opened. (The shipped repository names are kept: the DAGs of every UI test module share
the metadata DB, and their params list the repositories.) The repository holds a backup of plan ``ap-shop`` (its anomaly review was rejected, with a
comment that tries to inject a script) and the report of a generic restore whose approval was
given; a second restore run was rejected before it got a restore id; a cutover timed out.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import yaml

from ui_helpers import REPO, REPO_KEY, jwt_for, make_run, sync_dags

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

PLAN = "ap-shop"
BACKUP_DAG = f"ys1000_backup__{PLAN}"
RESTORE_DAG = "ys1000_restore"
MIGRATE_DAG = "ys1000_migrate__wp-move"
REPO_NAME = "sandbox-s3"
EVIL = '<script>alert("pwned")</script> not expected & <b>bold</b>'
APPROVED_RUN = "manual__2025-01-04T00:00:00+00:00"
REJECTED_RUN = "manual__2025-01-06T00:00:00+00:00"
RESTORE_ID = "restore-20250104000000-abcd"


def record(kind: str, about: str, decision: str, by: str | None, at: datetime, **extra) -> dict:
    """A decision in the shape ``ApprovalOperator.execute_complete`` stores."""
    rec = {
        "approval_id": f"{at:%Y%m%d%H%M%S}-{kind}-{about}",
        "kind": kind,
        "plan": PLAN,
        "about": about,
        "subject": about,
        "decision": decision,
        "by": by,
        "at": at.isoformat(),
        "comment": "",
        "question": f"{kind} {about}?",
        "summary": {},
        "approvers": [],
        "asked_at": at.replace(minute=0).isoformat(),
        "dag_id": RESTORE_DAG,
        "run_id": APPROVED_RUN,
        "task_id": "approve",
    }
    rec.update(extra)
    return rec


def s3_repo(s3, bucket: str):
    from ys1000.repository import open_repository

    cfg = s3.repository_config(bucket, "ui-approvals")
    return open_repository(cfg, REPO_KEY, create=True)


def write_backup(repo, backup_id: str) -> None:
    with repo.begin_backup(backup_id, PLAN) as w:
        w.add(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}},
            group="",
            version="v1",
            resource="configmaps",
            kind="ConfigMap",
        )
        w.commit(cluster_name="source", namespaces=["shop"], scope="resources")


@pytest.fixture(scope="module")
def ap_env(airflow_db, s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("approvals")
    bucket = s3.new_bucket(f"ap-{uuid.uuid4().hex[:12]}")
    cdir = root / "config"
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    key = {"variable": "ys1000_repo_key"}
    repos = {
        REPO_NAME: {"type": "s3", "connection_id": "ys1000_s3", "bucket": bucket, "prefix": "ui-approvals", "key": key},
        "local": {"type": "local", "path": str(root / "no-repo-here"), "key": key},
    }
    (cdir / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (cdir / "plans" / f"{PLAN}.yaml").write_text(
        f"kind: BackupPlan\nname: {PLAN}\ncluster: source\nrepository: {REPO_NAME}\napproval: required\n"
        "namespaces: {names: [shop]}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))
    mp.setenv("AIRFLOW_VAR_YS1000_REPO_KEY", REPO_KEY)
    mp.setenv(
        "AIRFLOW_CONN_YS1000_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": s3.access_key,
                "password": s3.secret_key,
                "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
            }
        ),
    )
    repo = s3_repo(s3, bucket)
    backup_id = f"{PLAN}-20250105093000"
    write_backup(repo, backup_id)
    repo.save_restore_report(
        RESTORE_ID,
        {
            "restore_id": RESTORE_ID,
            "backup_id": backup_id,
            "dry_run": False,
            "status": "Completed",
            "counts": {"updated": 1},
            "items": [
                {"kind": "ConfigMap", "namespace": "shop", "name": "settings", "action": "updated", "reason": ""}
            ],
        },
    )
    utc = timezone.utc
    anomaly = record(
        "anomaly",
        backup_id,
        "rejected",
        "alice",
        datetime(2025, 1, 5, 10, 0, 0, tzinfo=utc),
        comment=EVIL,
        question=f"Was the change in backup {backup_id} expected?",
        summary={"backup_id": backup_id, "reasons": ["3 of 4 files changed"]},
        approvers=["alice", "bob"],
        dag_id=BACKUP_DAG,
        run_id="scheduled__2025-01-05T09:30:00+00:00",
        task_id="review",
    )
    approved = record(
        "restore",
        RESTORE_ID,
        "approved",
        "bob",
        datetime(2025, 1, 4, 0, 0, 5, tzinfo=utc),
        comment="shop is a scratch copy",
        summary={"backup_id": backup_id, "target_cluster": "target", "existing_resource_policy": "update"},
    )
    rejected = record(
        "restore",
        "restore-20250106000000-beef",
        "rejected",
        "carol",
        datetime(2025, 1, 6, 0, 1, 0, tzinfo=utc),
        comment="wrong backup",
        run_id=REJECTED_RUN,
    )
    timed_out = record(
        "cutover",
        "restore-20250103000000-cafe",
        "timed_out",
        None,
        datetime(2025, 1, 3, 12, 0, 0, tzinfo=utc),
        plan="wp-move",
        dag_id=MIGRATE_DAG,
        run_id="manual__2025-01-03T11:00:00+00:00",
        task_id="approve_cutover",
    )
    for rec in (anomaly, approved, rejected, timed_out):
        repo.save_approval(rec)

    sync_dags()
    conf = {"backup": backup_id, "repository": REPO_NAME, "target_cluster": "target"}
    make_run(
        RESTORE_DAG,
        APPROVED_RUN,
        state="success",
        tasks={"preflight": "success", "restore": "success"},
        conf=conf,
        xcoms={("preflight", "backup_id"): backup_id, ("restore", "restore_id"): RESTORE_ID},
    )
    make_run(RESTORE_DAG, REJECTED_RUN, state="failed", tasks={"preflight": "success"}, conf=conf)
    yield SimpleNamespace(
        repo=repo,
        backup_id=backup_id,
        anomaly=anomaly,
        approved=approved,
        rejected=rejected,
        timed_out=timed_out,
    )
    mp.undo()


@pytest.fixture(scope="module")
def app(ap_env):
    """The ys1000 app behind Airflow's auth manager (over conftest's: this module's config)."""
    from fastapi import FastAPI

    from airflow.api_fastapi.app import init_auth_manager
    from ys1000.ui.plugin import LazyApp

    parent = FastAPI()
    init_auth_manager(parent)
    parent.mount("/ys1000", LazyApp("/ys1000"))
    return parent


def login(client, role: str = "viewer", username: str | None = None) -> None:
    client.cookies.set("_token", jwt_for(username or role, role))


def rows_of(html: str) -> dict[str, str]:
    import re

    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr class="approval" data-approval-id="([^"]+)".*?</tr>', html, re.S)
    }


def test_api_lists_every_decision_newest_first(client, ap_env):
    assert client.get("/ys1000/api/approvals").status_code == 401
    login(client)
    r = client.get("/ys1000/api/approvals")
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["approvals"]
    newest_first = [ap_env.rejected, ap_env.anomaly, ap_env.approved, ap_env.timed_out]
    assert [x["approval_id"] for x in rows] == [rec["approval_id"] for rec in newest_first]
    # every stored field, as stored (the comment too: JSON is not HTML), plus where and links
    for got, rec in zip(rows, newest_first, strict=True):
        assert {k: v for k, v in got.items() if k not in ("repository", "links")} == {
            k: v for k, v in rec.items() if k != "subject"
        }
        assert got["repository"] == REPO_NAME
    anomaly, approved, timed_out = rows[1], rows[2], rows[3]
    assert anomaly["comment"] == EVIL and anomaly["by"] == "alice" and anomaly["decision"] == "rejected"
    assert anomaly["links"]["about"] == f"/ys1000/repositories/{REPO_NAME}/backups/{ap_env.backup_id}"
    assert anomaly["links"]["job"] == (
        f"/ys1000/jobs/{BACKUP_DAG}/{quote('scheduled__2025-01-05T09:30:00+00:00', safe='')}"
    )
    run = f"/dags/{RESTORE_DAG}/runs/{quote(APPROVED_RUN, safe='')}"
    assert approved["links"]["about"] == approved["links"]["airflow_run"] == run
    assert approved["links"]["airflow_task"] == run + "/tasks/approve"
    assert timed_out["by"] is None and timed_out["decision"] == "timed_out"
    assert timed_out["links"]["about"] == f"/dags/{MIGRATE_DAG}/runs/{quote(timed_out['run_id'], safe='')}"
    # the repository that cannot be opened is named; the other's decisions are still there
    [err] = body["errors"]
    assert err["repository"] == "local" and "no-repo-here" in err["error"]

    # filters
    only = client.get("/ys1000/api/approvals", params={"decision": "rejected"}).json()["approvals"]
    assert [x["approval_id"] for x in only] == [ap_env.rejected["approval_id"], ap_env.anomaly["approval_id"]]
    only = client.get("/ys1000/api/approvals", params={"kind": "cutover"}).json()["approvals"]
    assert [x["approval_id"] for x in only] == [ap_env.timed_out["approval_id"]]
    assert client.get("/ys1000/api/approvals", params={"plan": "wp-move"}).json()["approvals"] == only


def test_page_shows_decisions_and_escapes_comments(client, ap_env):
    login(client)
    r = client.get("/ys1000/approvals")
    assert r.status_code == 200, r.text
    html = r.text
    assert 'id="nav-approvals"' in html and 'href="/ys1000/approvals"' in html
    rows = rows_of(html)
    assert list(rows) == [
        rec["approval_id"] for rec in (ap_env.rejected, ap_env.anomaly, ap_env.approved, ap_env.timed_out)
    ]

    anomaly = rows[ap_env.anomaly["approval_id"]]
    assert 'data-kind="anomaly"' in anomaly and 'data-decision="rejected"' in anomaly
    assert '<span class="badge decision rejected" data-decision="rejected">rejected</span>' in anomaly
    assert f'href="/ys1000/repositories/{REPO_NAME}/backups/{ap_env.backup_id}"' in anomaly
    assert '<td class="by">alice</td>' in anomaly and "2025-01-05 10:00:00" in anomaly
    # the comment is text, never markup
    assert EVIL not in html and "<script>alert" not in html and "<b>bold</b>" not in html
    assert (
        '<td class="comment">&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt; not expected &amp; '
        "&lt;b&gt;bold&lt;/b&gt;</td>"
    ) in anomaly
    # the question, expandable, with what the approver was shown
    assert f"<summary>Was the change in backup {ap_env.backup_id} expected?</summary>" in anomaly
    assert "3 of 4 files changed" in anomaly and "of alice, bob" in anomaly

    approved = rows[ap_env.approved["approval_id"]]
    run = f"/dags/{RESTORE_DAG}/runs/{quote(APPROVED_RUN, safe='')}"
    assert f'href="{run}"' in approved and f">{RESTORE_ID}</a>" in approved
    assert '<span class="badge decision approved" data-decision="approved">approved</span>' in approved
    assert "shop is a scratch copy" in approved and '<td class="by">bob</td>' in approved

    timed_out = rows[ap_env.timed_out["approval_id"]]
    assert '<span class="badge decision timed_out" data-decision="timed_out">timed out</span>' in timed_out
    assert '<span class="empty">no answer</span>' in timed_out
    assert "Repository local: decisions not readable: " in html

    only = rows_of(client.get("/ys1000/approvals?decision=approved").text)
    assert list(only) == [ap_env.approved["approval_id"]]
    assert 'id="no-approvals"' in client.get("/ys1000/approvals?kind=restore&decision=timed_out").text


def test_backup_page_shows_its_anomaly_decision(client, ap_env):
    login(client)
    r = client.get(f"/ys1000/repositories/{REPO_NAME}/backups/{ap_env.backup_id}")
    assert r.status_code == 200, r.text
    html = r.text
    assert '<section id="approval">' in html
    assert f'data-approval-id="{ap_env.anomaly["approval_id"]}"' in html
    assert '<span class="badge decision rejected" data-decision="rejected">rejected</span>' in html
    assert '<strong class="by">alice</strong>' in html and "2025-01-05 10:00:00" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    # only the decision about this backup: not the restores of it
    assert ap_env.approved["approval_id"] not in html and ap_env.rejected["approval_id"] not in html


def test_restore_job_pages_show_their_decision(client, ap_env):
    login(client)
    # approved: found by the run's restore id, next to its restore report
    html = client.get(f"/ys1000/jobs/{RESTORE_DAG}/{quote(APPROVED_RUN, safe='')}").text
    assert 'id="restore-report"' in html and f'data-approval-id="{ap_env.approved["approval_id"]}"' in html
    assert '<strong class="by">bob</strong>' in html and "shop is a scratch copy" in html
    assert ap_env.rejected["approval_id"] not in html and ap_env.anomaly["approval_id"] not in html
    # rejected before the restore ran (no restore id): found by the run that asked
    html = client.get(f"/ys1000/jobs/{RESTORE_DAG}/{quote(REJECTED_RUN, safe='')}").text
    assert f'data-approval-id="{ap_env.rejected["approval_id"]}"' in html
    assert '<span class="badge decision rejected" data-decision="rejected">rejected</span>' in html
    assert '<strong class="by">carol</strong>' in html and "wrong backup" in html
    assert ap_env.approved["approval_id"] not in html


def test_new_decisions_show_up_and_hidden_dags_hide_theirs(client, ap_env, monkeypatch):
    login(client)
    before = client.get("/ys1000/api/approvals").json()["approvals"]
    late = record(
        "restore",
        "restore-20250107000000-0001",
        "approved",
        "dave",
        datetime(2025, 1, 7, tzinfo=timezone.utc),
        run_id="manual__2025-01-07T00:00:00+00:00",
    )
    key = ap_env.repo.save_approval(late)
    try:
        now = client.get("/ys1000/api/approvals").json()["approvals"]
        assert [x["approval_id"] for x in now] == [late["approval_id"]] + [x["approval_id"] for x in before]
    finally:
        ap_env.repo.store.delete(key)
    assert client.get("/ys1000/api/approvals").json()["approvals"] == before

    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    orig_dag, orig_ids = am.is_authorized_dag, am.get_authorized_dag_ids

    def is_authorized_dag(**kw):
        if kw["user"].get_name() == "restricted" and kw.get("details") is not None and kw["details"].id == RESTORE_DAG:
            return False
        return orig_dag(**kw)

    def get_authorized_dag_ids(**kw):
        ids = set(orig_ids(**kw))
        return ids - {RESTORE_DAG} if kw["user"].get_name() == "restricted" else ids

    monkeypatch.setattr(am, "is_authorized_dag", is_authorized_dag)
    monkeypatch.setattr(am, "get_authorized_dag_ids", get_authorized_dag_ids)
    login(client, "viewer", "restricted")
    kinds = [x["kind"] for x in client.get("/ys1000/api/approvals").json()["approvals"]]
    assert kinds == ["anomaly", "cutover"]
    assert ap_env.approved["approval_id"] not in client.get("/ys1000/approvals").text


def test_plugin_lists_the_approvals_page():
    from ys1000.ui.plugin import Ys1000Plugin

    views = {v["name"]: v for v in Ys1000Plugin.external_views}
    assert views["Approvals"]["href"] == "/ys1000/approvals" and views["Approvals"]["destination"] == "nav"
