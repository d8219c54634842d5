"""The daily report lists the human decisions (approvals) taken in its window.

Decisions are stored with ``Repository.save_approval`` in the repository of the shipped plans
(``sandbox-s3``, on the test S3 endpoint, reached through the Airflow connection ``ys1000_s3``);
a second plan uses a repository that cannot be opened. ``run_daily_report`` runs as the
``ys1000_report`` task does — job history through Airflow's REST API (served in-process over the
test's metadata DB, where the window in 2025 has no runs) — and delivers to a loopback SMTP server
and a loopback Work WeChat robot: the e-mail (text) and the robot message (Markdown) list the
decisions inside the window, and none outside it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from receivers import Mailbox, WebhookReceiver

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

REPO = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
KEY = "report-approvals-key"
UNTIL = dt.datetime(2025, 3, 2, 0, 30, tzinfo=UTC)  # 08:30 in Asia/Shanghai; the window is the 24 h before


def decision(kind: str, about: str, decision: str, by: str | None, at: dt.datetime, **extra) -> dict:
    """A decision in the shape ``ApprovalOperator.execute_complete`` stores."""
    rec = {
        "approval_id": f"{at:%Y%m%d%H%M%S}-{kind}-{about}",
        "kind": kind,
        "plan": "wordpress-restore" if kind == "restore" else "wordpress-backup",
        "about": about,
        "subject": about,
        "decision": decision,
        "by": by,
        "at": at.isoformat(),
        "comment": "",
        "question": f"{kind} {about}?",
        "summary": {},
        "approvers": [],
        "asked_at": (at - dt.timedelta(minutes=5)).isoformat(),
        "dag_id": "ys1000_restore__wordpress-restore",
        "run_id": f"manual__{at.isoformat()}",
        "task_id": "approve",
    }
    rec.update(extra)
    return rec


INSIDE = [
    decision(
        "restore",
        "restore-20250301080000-ab12",
        "approved",
        "alice",
        dt.datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
        comment="the target\nnamespace is a scratch copy",
    ),
    decision(
        "cutover",
        "restore-20250301120000-cd34",
        "timed_out",
        None,
        dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        plan="wordpress-migrate",
    ),
    decision(
        "anomaly",
        "wordpress-backup-20250301200000",
        "rejected",
        "bob",
        dt.datetime(2025, 3, 1, 20, 15, 30, tzinfo=UTC),
        comment='<font color="info">all good</font> `not` expected',
    ),
    # an id without the time stamp in front: read, and placed by its ``at``
    decision(
        "restore",
        "restore-20250301220000-ef56",
        "approved",
        "carol",
        dt.datetime(2025, 3, 1, 22, 0, tzinfo=UTC),
        approval_id="imported-restore-ef56",
    ),
]
OUTSIDE = [
    decision("restore", "restore-20250301002959-0001", "approved", "dave", UNTIL - dt.timedelta(days=1, seconds=1)),
    decision("restore", "restore-20250302003000-0002", "rejected", "erin", UNTIL),  # the window ends before
    decision("anomaly", "wordpress-backup-20250220000000", "rejected", "frank", dt.datetime(2025, 2, 20, tzinfo=UTC)),
    decision("restore", "restore-20250303000000-0003", "approved", "grace", dt.datetime(2025, 3, 3, tzinfo=UTC)),
]


@pytest.fixture
def report_env(s3, tmp_path, monkeypatch):
    from ys1000.repository import open_repository

    bucket = s3.new_bucket(f"rep-{uuid.uuid4().hex[:12]}")
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    repos = yaml.safe_load((config / "repositories.yaml").read_text())
    repos["sandbox-s3"].update(bucket=bucket, prefix="report")
    repos["offline"] = {"type": "local", "path": str(tmp_path / "no-repo-here"), "key": {"variable": "ys1000_repo_key"}}
    (config / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (config / "plans" / "elsewhere.yaml").write_text(
        "kind: BackupPlan\nname: elsewhere\ncluster: source\nrepository: offline\nnamespaces: {names: [x]}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n"
    )
    (config / "reports.yaml").write_text(
        "email: {connection_id: ys1000_smtp, recipients: [ops@example.com]}\n"
        "wecom: {connection_id: ys1000_wecom, msgtype: markdown}\n"
        'daily: {at: "08:30", timezone: Asia/Shanghai, channels: [email, wecom]}\n'
    )
    monkeypatch.setenv("AIRFLOW_VAR_YS1000_REPO_KEY", KEY)
    monkeypatch.setenv(
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
    repo = open_repository(
        s3.repository_config(bucket, "report"),
        KEY,
        create=True,
    )
    for rec in INSIDE + OUTSIDE:
        repo.save_approval(rec)
    return config


@pytest.fixture
def airflow_api():
    """Airflow's REST API served in-process over the test's metadata DB."""
    from airflow.utils import db

    from ys1000.notify.airflow_api import AirflowApiClient

    db.initdb()
    return AirflowApiClient.in_process()


def test_window_approvals_reads_the_plans_repositories(report_env):
    from ys1000.notify.report import window_approvals

    got = window_approvals(report_env, UNTIL - dt.timedelta(days=1), UNTIL)
    decisions, errors = [d for d in got if not d.get("error")], [d for d in got if d.get("error")]
    # oldest first, each once (three shipped plans share sandbox-s3), with its repository
    assert [d["approval_id"] for d in decisions] == [d["approval_id"] for d in INSIDE]
    assert all(d["repository"] == "sandbox-s3" for d in decisions)
    assert decisions[0] == {**INSIDE[0], "repository": "sandbox-s3"}
    # the repository that cannot be opened costs its own decisions only
    [err] = errors
    assert err["repository"] == "offline" and "no-repo-here" in err["error"]


def test_daily_report_lists_the_decisions_of_its_window(report_env, airflow_api, monkeypatch):
    from ys1000.notify.report import run_daily_report

    with Mailbox() as mail, WebhookReceiver() as hook:
        monkeypatch.setenv(
            "AIRFLOW_CONN_YS1000_SMTP",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": mail.port,
                    "extra": {"from_email": "ys1000@example.com", "disable_tls": True, "disable_ssl": True},
                }
            ),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_YS1000_WECOM",
            json.dumps(
                {"conn_type": "http", "password": "k", "host": f"http://127.0.0.1:{hook.port}/cgi-bin/webhook/send"}
            ),
        )
        result = run_daily_report(report_env, until=UNTIL, api=airflow_api)
    assert result["jobs"] == 0 and result["decisions"] == 4, result
    assert result["subject"] == "YS1000 daily report 2025-03-02: 0 jobs, 0 failed"

    # e-mail: the text form, times in the report's time zone (UTC+8)
    [(_, msg)] = mail.messages
    body = Mailbox.body(msg)
    assert "No jobs ran in this period." in body
    section = body[body.index("Decisions (4):") :]
    assert section.splitlines()[:7] == [
        "Decisions (4):",
        "  - 2025-03-01 16:00 restore of plan wordpress-restore, restore-20250301080000-ab12: approved by alice",
        "    comment: the target namespace is a scratch copy",
        "  - 2025-03-01 20:00 cutover of plan wordpress-migrate, restore-20250301120000-cd34: timed out (no answer)",
        "  - 2025-03-02 04:15 anomaly of plan wordpress-backup, wordpress-backup-20250301200000: rejected by bob",
        '    comment: <font color="info">all good</font> `not` expected',
        "  - 2025-03-02 06:00 restore of plan wordpress-restore, restore-20250301220000-ef56: approved by carol",
    ]
    assert "  - repository offline: decisions not readable: " in section
    for rec in OUTSIDE:
        assert rec["about"] not in body and rec["by"] not in body
    raw = msg.get_body(preferencelist=("html",)).get_content()  # the comment is text in the HTML part too
    assert "&lt;font color=&quot;info&quot;&gt;all good" in raw and "<font" not in raw

    # Work WeChat: the Markdown form; the comment cannot add markup of its own
    [req] = hook.requests
    md = req["json"]["markdown"]["content"]
    assert "**Decisions** (4)" in md
    assert (
        "- 2025-03-01 16:00 restore wordpress-restore `restore-20250301080000-ab12`: "
        '<font color="info">approved</font> by alice: the target namespace is a scratch copy'
    ) in md
    assert '`restore-20250301120000-cd34`: <font color="warning">timed out (no answer)</font>' in md
    assert (
        '`wordpress-backup-20250301200000`: <font color="warning">rejected</font> by bob: '
        "‹font color=\"info\"›all good‹/font› 'not' expected"
    ) in md
    assert "- repository offline: decisions not readable" in md
    for rec in OUTSIDE:
        assert rec["about"] not in md


def test_summary_without_decisions_has_no_section():
    from ys1000.notify.summary import daily_summary

    msg = daily_summary([], since=UNTIL - dt.timedelta(days=1), until=UNTIL, approvals=[])
    assert "Decisions" not in msg.text and "Decisions" not in msg.markdown
