"""Reports (F28): reports.yaml validation, report texts, and end to end: job history in a real
Airflow DB, a failure alert from ``on_failure_callback`` and the daily ``ys1000_report`` DAG
delivering to a loopback SMTP server (aiosmtpd) and a loopback Work WeChat webhook."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from receivers import Mailbox, WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc


# -- config ---------------------------------------------------------------------------------------


def test_reports_yaml_errors_name_file_field_value(tmp_path):
    from ys1000.config import ConfigError
    from ys1000.notify.config import load_reports_config

    (tmp_path / "reports.yaml").write_text(
        textwrap.dedent("""
        email: {recipients: [not-an-address]}
        daily: {at: "25:61", timezone: Mars/Olympus, channels: [wecom]}
        failure_alerts: {chanels: [email]}
        """)
    )
    with pytest.raises(ConfigError) as err:
        load_reports_config(tmp_path)
    text = str(err.value)
    assert "reports.yaml: email.recipients: " in text and "not-an-address" in text
    assert "daily.at: '25:61' is not a time" in text
    assert "daily.timezone: 'Mars/Olympus'" in text
    assert "failure_alerts.chanels" in text and "did you mean 'channels'" in text


def test_channel_listed_without_section(tmp_path):
    from ys1000.config import ConfigError
    from ys1000.notify.config import load_reports_config

    (tmp_path / "reports.yaml").write_text("email: {recipients: [a@example.com]}\ndaily: {channels: [email, wecom]}\n")
    with pytest.raises(ConfigError, match=r"daily.channels.1: 'wecom' is listed but there is no 'wecom' section"):
        load_reports_config(tmp_path)


def test_shipped_reports_yaml_and_schedule():
    from ys1000.notify.config import load_reports_config

    cfg = load_reports_config(REPO / "config")
    assert cfg.cron() == "30 8 * * *" and cfg.daily.timezone == "Asia/Shanghai"
    assert cfg.channels_for("daily") == ["email", "wecom"]


def test_missing_reports_yaml_sends_nowhere(tmp_path):
    from ys1000.notify.config import load_reports_config

    assert load_reports_config(tmp_path).channels_for("daily") == []


# -- texts (pure) ---------------------------------------------------------------------------------


def _jobs():
    from ys1000.notify.summary import JobRecord

    t0 = dt.datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
    return [
        JobRecord(
            "ys1000_backup__shop",
            "scheduled__1",
            "success",
            t0,
            t0 + dt.timedelta(minutes=3, seconds=5),
            backup={
                "backup_id": "shop-20250301003000",
                "plan": "shop",
                "cluster": "prod",
                "status": "Completed",
                "objects": 42,
                "archive_bytes": 3 * 1024 * 1024,
                "volumes": 2,
            },
        ),
        JobRecord(
            "ys1000_backup__shop",
            "scheduled__2",
            "failed",
            t0 + dt.timedelta(hours=6),
            t0 + dt.timedelta(hours=7),
            failed_tasks=["capture"],
            reason="capture: KubeError 403 Forbidden: pods is forbidden",
        ),
        JobRecord(
            "ys1000_restore", "manual__3", "success", t0 + dt.timedelta(hours=8), t0 + dt.timedelta(hours=8, seconds=40)
        ),
        JobRecord("ys1000_migrate__wp", "manual__4", "running", t0 + dt.timedelta(hours=9)),
    ]


def test_daily_summary_counts_failures_sizes():
    from ys1000.notify.summary import daily_summary

    until = dt.datetime(2025, 3, 2, 0, 30, tzinfo=UTC)
    msg = daily_summary(_jobs(), since=until - dt.timedelta(days=1), until=until, timezone="Asia/Shanghai")
    assert msg.subject == "YS1000 daily report 2025-03-02: 4 jobs, 1 failed"
    assert "Jobs: 4 (success 2, failed 1, running 1)" in msg.text
    assert "  backup: success 1, failed 1" in msg.text and "  migration: running 1" in msg.text
    assert "capture: KubeError 403 Forbidden" in msg.text
    assert "shop-20250301003000 (plan shop, cluster prod): Completed, 42 objects, archive 3.0 MiB" in msg.text
    assert "took 3m05s" in msg.text
    assert "2025-03-01 08:30" in msg.text  # local time (UTC+8)
    assert msg.markdown.startswith("## YS1000") and "failed 1" in msg.markdown


def test_failure_alert_and_wecom_payloads():
    from ys1000.notify.summary import FailureInfo, failure_alert, fit_markdown, wecom_payload

    info = FailureInfo(
        "ys1000_backup__shop",
        "manual__x",
        "capture",
        4,
        "LimitExceeded: 12 pods > 10",
        dt.datetime(2025, 3, 1, tzinfo=UTC),
        "http://ui/log",
    )
    msg = failure_alert(info)
    assert msg.subject == "YS1000 backup job of plan shop failed: ys1000_backup__shop / capture"
    assert "LimitExceeded: 12 pods > 10" in msg.text and "Task:    capture (try 4)" in msg.text
    assert wecom_payload(msg) == {"msgtype": "markdown", "markdown": {"content": msg.markdown}}
    text = wecom_payload(msg, "text", ["13800000000"])
    assert text["msgtype"] == "text" and text["text"]["mentioned_mobile_list"] == ["13800000000"]
    assert len(fit_markdown("行\n" * 5000).encode()) <= 4096


def test_webhook_url_forms():
    from ys1000.notify.wecom import WeComError, webhook_url

    assert webhook_url(None, "K") == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"
    assert (
        webhook_url("http://127.0.0.1:9/cgi-bin/webhook/send", "K") == "http://127.0.0.1:9/cgi-bin/webhook/send?key=K"
    )
    assert webhook_url("https://x/cgi-bin/webhook/send?key=A", None).endswith("?key=A")
    with pytest.raises(WeComError, match="no key"):
        webhook_url("qyapi.weixin.qq.com", None)


# -- end to end --------------------------------------------------------------------------------------

JOBS_DAGS = """
from datetime import datetime
from airflow.sdk import DAG, task
from ys1000.notify.report import failure_callbacks

CONFIG = {config!r}

with DAG("ys1000_backup__shop", schedule=None, start_date=datetime(2024, 1, 1)) as ok:
    @task
    def commit():
        return {{"backup_id": "shop-20250301003000", "plan": "shop", "status": "Completed", "cluster": "source",
                "objects": 42, "archive_bytes": 3145728, "volumes": 1}}
    commit()

with DAG("ys1000_backup__broken", schedule=None, start_date=datetime(2024, 1, 1),
         default_args={{"retries": 0, "on_failure_callback": failure_callbacks(CONFIG)}}) as broken:
    @task
    def capture():
        raise RuntimeError("planted failure: namespace shop-db is forbidden")
    capture()
"""


@pytest.mark.timeout(300)
def test_failure_alert_and_daily_report_delivered(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "reports.yaml").write_text(
        textwrap.dedent("""
        email: {connection_id: ys1000_smtp, recipients: [ops@example.com, dba@example.com]}
        wecom: {connection_id: ys1000_wecom, msgtype: markdown}
        daily: {at: "08:30", timezone: Asia/Shanghai, channels: [email, wecom]}
        failure_alerts: {channels: [email, wecom]}
        airflow_api: {connection_id: ys1000_airflow_api}
        """)
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "jobs_dags.py").write_text(JOBS_DAGS.format(config=str(config)))
    shutil.copy(REPO / "dags" / "ys1000_system_dags.py", dags)
    home = tmp_path / "airflow"
    with Mailbox() as mail, WebhookReceiver() as hook:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "YS1000_CONFIG"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "YS1000_CONFIG_DIR": str(config),
                "AIRFLOW_CONN_YS1000_SMTP": json.dumps(
                    {
                        "conn_type": "smtp",
                        "host": "127.0.0.1",
                        "port": mail.port,
                        "extra": {"from_email": "ys1000@example.com", "disable_tls": True, "disable_ssl": True},
                    }
                ),
                "AIRFLOW_CONN_YS1000_WECOM": json.dumps(
                    {
                        "conn_type": "http",
                        "password": "robot-key-123",
                        "host": f"http://127.0.0.1:{hook.port}/cgi-bin/webhook/send",
                    }
                ),
                "AIRFLOW_CONN_YS1000_AIRFLOW_API": json.dumps({"conn_type": "http", "extra": {"in_process": True}}),
            }
        )
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("history_script.py")), str(dags)],
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        assert [line for line in proc.stdout.splitlines() if line.startswith("RUN")] == [
            "RUN success",
            "RUN failed",
            "RUN success",
        ], out[-5000:]

    # the failure alert (on_failure_callback) and the daily report, by e-mail ...
    subjects = [m.get("Subject") for _, m in mail.messages]
    assert len(mail.messages) == 2, subjects
    (alert_to, alert), (report_to, report) = mail.messages
    assert sorted(alert_to) == ["dba@example.com", "ops@example.com"] and alert["From"] == "ys1000@example.com"
    assert alert["Subject"] == "[YS1000] YS1000 backup job of plan broken failed: ys1000_backup__broken / capture"
    body = Mailbox.body(alert)
    assert "RuntimeError: planted failure: namespace shop-db is forbidden" in body and "Task:    capture" in body

    assert report["Subject"].startswith("[YS1000] YS1000 daily report ") and report["Subject"].endswith(
        ": 2 jobs, 1 failed"
    )
    body = Mailbox.body(report)
    assert "Jobs: 2 (success 1, failed 1)" in body and "  backup: success 1, failed 1" in body
    # the reason recorded by the failure alert, read back through the REST API
    assert "ys1000_backup__broken run manual__" in body
    assert "capture: RuntimeError: planted failure: namespace shop-db is forbidden" in body
    # the commit task's XCom summary: size and duration
    assert "shop-20250301003000 (plan shop, cluster source): Completed, 42 objects, archive 3.0 MiB" in body
    assert "(Asia/Shanghai)" in body

    # ... and to the Work WeChat robot, in the documented format
    assert len(hook.requests) == 2
    for req in hook.requests:
        assert req["path"] == "/cgi-bin/webhook/send?key=robot-key-123"
        assert req["headers"]["Content-Type"].startswith("application/json")
        assert set(req["json"]) == {"msgtype", "markdown"} and req["json"]["msgtype"] == "markdown"
        assert set(req["json"]["markdown"]) == {"content"}
    alert_md, report_md = (r["json"]["markdown"]["content"] for r in hook.requests)
    assert "backup job of plan broken failed" in alert_md and "planted failure" in alert_md
    assert "daily report" in report_md and "failed 1" in report_md and "3.0 MiB" in report_md
    assert "robot-key-123" not in out  # the key never reaches the logs
