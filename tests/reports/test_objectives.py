"""Recovery objectives: a plan without a backup within its RPO alerts at once, by e-mail through
a real SMTP receiver, once per breach — whatever its DAG does (paused, never scheduled)."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from receivers import Mailbox
from ys1000.repository import RepositoryConfig, open_repository

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rpo_config(tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    repos = yaml.safe_load((config / "repositories.yaml").read_text())
    repos["local"]["path"] = str(tmp_path / "repo")
    (config / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (config / "reports.yaml").write_text(
        "email: {connection_id: ys1000_smtp, recipients: [ops@example.com]}\nfailure_alerts: {channels: [email]}\n"
    )
    (config / "plans" / "shop.yaml").write_text(
        textwrap.dedent("""
        kind: BackupPlan
        name: shop
        cluster: source
        repository: local
        namespaces: {names: [shop]}
        policy: resources-every-3h
        rpo: 2m
        notify: {email: [dba@example.com]}
        """).lstrip()
    )
    monkeypatch.setenv("AIRFLOW_VAR_YS1000_REPO_KEY", "rpo-key")
    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "repo")), "rpo-key", create=True)
    return config, repo


def _backup(repo, bid: str, when: datetime) -> None:
    with repo.begin_backup(bid, "shop", now=when) as w:
        w.add(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}},
            group="",
            version="v1",
            resource="configmaps",
            kind="ConfigMap",
        )
        w.commit(namespaces=["shop"])


def test_rpo_breach_alerts_once_per_breach(rpo_config, monkeypatch):
    from ys1000.notify.report import run_rpo_watch

    config, repo = rpo_config
    now = datetime.now(timezone.utc)
    with Mailbox() as mail:
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
        # no backup at all yet: breached, alerted once
        [status] = run_rpo_watch(config, now=now - timedelta(minutes=11))
        assert (status["rpo_state"], status["last_backup"], len(mail.messages)) == ("breached", None, 1)
        assert "Last backup:  none" in Mailbox.body(mail.messages[0][1])
        assert run_rpo_watch(config, now=now - timedelta(minutes=10, seconds=30))[0]["alerted"] is not None
        assert len(mail.messages) == 1
        mail.messages.clear()

        _backup(repo, "shop-1", now - timedelta(minutes=10))
        [status] = run_rpo_watch(config, now=now)
        assert status["rpo_state"] == "breached" and status["last_backup"] == "shop-1"
        assert status["age_seconds"] == pytest.approx(600, abs=2)
        assert len(mail.messages) == 1
        to, msg = mail.messages[0]
        assert sorted(to) == ["dba@example.com", "ops@example.com"]
        assert msg["Subject"] == "[YS1000] RPO breached: plan shop has no backup within 2m00s"
        body = Mailbox.body(msg)
        assert "Last backup:  shop-1 at " in body and "(10m00s ago)" in body

        # the next checks of the same breach stay quiet, also from a new process (state in the repo)
        [status] = run_rpo_watch(config, now=now + timedelta(minutes=1))
        assert status["alerted"] == now.isoformat() and len(mail.messages) == 1

        # a new backup ends the breach; at 75 % of the RPO the plan is at risk; past it, a new alert
        _backup(repo, "shop-2", now)
        assert run_rpo_watch(config, now=now + timedelta(seconds=30))[0]["rpo_state"] == "ok"
        assert run_rpo_watch(config, now=now + timedelta(seconds=100))[0]["rpo_state"] == "at_risk"
        assert len(mail.messages) == 1
        [status] = run_rpo_watch(config, now=now + timedelta(minutes=3))
        assert status["rpo_state"] == "breached" and len(mail.messages) == 2
        assert "shop-2" in Mailbox.body(mail.messages[1][1])


def test_a_plan_with_no_backup_at_all_is_breached(rpo_config, monkeypatch):
    from ys1000.objectives import plan_objectives
    from ys1000.config import load_plans

    config, repo = rpo_config
    _, plans = load_plans(config)
    [plan] = [p for p in plans.values() if getattr(p, "name", None) == "shop"]
    status = plan_objectives(repo, plan, datetime.now(timezone.utc))
    assert status == {
        "plan": "shop",
        "cluster": "source",
        "last_backup": None,
        "last_backup_at": None,
        "rpo_seconds": 120.0,
        "rpo_state": "breached",
        "age_seconds": None,
    }


def test_the_daily_report_lists_each_plans_objectives(rpo_config):
    import datetime as dt

    from ys1000.notify.report import plans_objectives
    from ys1000.notify.summary import daily_summary

    config, repo = rpo_config
    now = datetime.now(timezone.utc)
    _backup(repo, "shop-1", now - timedelta(minutes=10))
    repo.save_drill(
        {"drill_id": "drill-20261130000000-abcd", "backup_id": "shop-1", "status": "verified", "rto_seconds": 42.0}
    )
    rows = plans_objectives(config, now)
    by_plan = {r["plan"]: r for r in rows}
    assert by_plan["shop"]["rpo_state"] == "breached" and by_plan["shop"]["last_drill"]["rto_seconds"] == 42.0
    # the example plan's repository has no connection here: its row says so, the report goes on
    assert by_plan["wordpress-backup"]["error"].startswith(
        "MissingConnection: Airflow connection 'ys1000_s3' (repository sandbox-s3) does not exist"
    )
    msg = daily_summary([], since=now - dt.timedelta(days=1), until=now, objectives=rows)
    assert (
        "Recovery objectives:\n  - plan shop: RPO 2m00s breached (last backup 10m00s ago); last drill verified of shop-1"
        in (msg.text)
    )
    assert "**Recovery objectives**" in msg.markdown and "plan shop: RPO 2m00s breached" in msg.markdown
