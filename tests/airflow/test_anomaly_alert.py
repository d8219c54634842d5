"""A suspicious backup is alerted at once: the backup DAG (``dag.test()``, the sandbox, the
loopback S3) runs twice for a namespace of thirty ConfigMaps; before the second run a third of them
are deleted. The second backup is committed, marked suspicious with the reason, its ``commit``
task's summary says so, and the plan's failure-alert channel (a real SMTP receiver) has the alert
before the run ends — not in the next morning's report."""

from __future__ import annotations

import json
import uuid

import pytest
from af_helpers import copy_config, set_bucket, write_plan

from reports.receivers import Mailbox

PLAN = "guarded"
CONFIGMAPS = 30


@pytest.fixture
def guarded(sandbox, sandbox_s3, source, tmp_path, airflow_db, monkeypatch):
    from ys1000.airflow.bootstrap import ensure_pools
    from ys1000.config import load_config
    from ys1000_dev.sandbox.connections import sandbox_env

    for key, value in sandbox_env(sandbox["dir"]).items():
        monkeypatch.setenv(key, value)
    bucket = sandbox_s3.new_bucket(f"guard-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(tmp_path / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    (cdir / "reports.yaml").write_text(
        "email: {connection_id: ys1000_smtp, recipients: [ops@example.com]}\nfailure_alerts: {channels: [email]}\n"
    )
    ns = f"guard-{uuid.uuid4().hex[:8]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    for i in range(CONFIGMAPS):
        source.core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i:02d}"}, "data": {"v": str(i)}})
    write_plan(
        cdir,
        f"{PLAN}.yaml",
        f"kind: BackupPlan\nname: {PLAN}\ncluster: source\nrepository: sandbox-s3\n"
        f"namespaces: {{names: [{ns}]}}\nnotify: {{email: [dba@example.com]}}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n",
    )
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(cdir))
    ensure_pools(load_config(cdir))
    yield cdir, ns
    source.core.delete_namespace(ns)


def test_suspicious_backup_is_alerted_by_the_commit_task(guarded, source, monkeypatch):
    from airflow.utils.state import DagRunState

    from ys1000.airflow.dagfactory import build_dags

    cdir, ns = guarded
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
        dag = build_dags(cdir)[f"ys1000_backup__{PLAN}"]
        first = dag.test()
        assert first.state == DagRunState.SUCCESS
        assert mail.messages == []  # the first backup of a plan is never judged

        for i in range(0, CONFIGMAPS, 3):  # a third of the ConfigMaps gone
            source.core.delete_namespaced_config_map(f"cm-{i:02d}", ns)
        second = dag.test()
        assert second.state == DagRunState.SUCCESS  # committed: a suspicious backup is still a backup

        commit = next(ti for ti in second.get_task_instances() if ti.task_id == "commit")
        summary = commit.xcom_pull(task_ids="commit")
        assert summary["anomaly"]["suspicious"] is True
        [reason] = [r for r in summary["anomaly"]["reasons"] if "configmaps" in r]
        assert f"10 of {CONFIGMAPS}" in reason, summary["anomaly"]

        [(envelope_to, msg)] = mail.messages
        assert msg["Subject"] == f"[YS1000] suspicious backup {summary['backup_id']} of plan {PLAN}"
        assert {"ops@example.com", "dba@example.com"} <= set(envelope_to)
        body = Mailbox.body(msg)
        assert reason in body and "newest clean backup" in body
