"""Log collection (F31): ``ys1000 collect-logs`` against the sandbox's source cluster and a fake
AIRFLOW_HOME: the archive holds task logs, scheduler/dag-processor logs, the redacted config, the
ys1000 pods' logs and the protected namespace's events — and none of the planted secret values."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLANTED = {
    "config": "planted-config-secret-7f3a",
    "conn": "planted-conn-password-91bd",
    "scheduler": "planted-sched-token-55c1",
    "pod": "planted-pod-token-0e2f",
    "repo_key": "planted-repo-key-c4d8",
}


def _cli(argv: list[str]) -> int:
    from ys1000.cli import collect_logs

    p = argparse.ArgumentParser()
    collect_logs.register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return args.func(args)


def test_redactor_rules():
    from ys1000.diagnostics import Redactor

    r = Redactor(["s3cr3t-value"])
    text = r.text('url=postgresql://airflow:pw123@db/airflow token: abc.def password="x y" s3cr3t-value ok')
    assert "pw123" not in text and "abc.def" not in text and "s3cr3t-value" not in text and text.endswith(" ok")
    assert r.data({"smtp": {"password": "p", "host": "h"}, "key": {"variable": "k"}, "api_key": 5}) == {
        "smtp": {"password": "***", "host": "h"},
        "key": {"variable": "k"},
        "api_key": "***",
    }


@pytest.mark.timeout(300)
def test_collect_logs_archive(tmp_path, sandbox, source, make_namespace, monkeypatch, capsys):
    from ys1000_dev.sandbox.connections import sandbox_env

    ns = make_namespace(source, "diag")
    # a hook pod the sandbox executes: its log has a secret-looking assignment
    source.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "hook-pre", "labels": {"ys1000.io/component": "hook", "ys1000.io/executable": "true"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "hook",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            f"echo hook ran in {ns}; echo token={PLANTED['pod']}; echo key {PLANTED['repo_key']}",
                        ],
                    }
                ],
            },
        },
    )
    source.core.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "diag-event"},
            "type": "Warning",
            "reason": "YsDiagTest",
            "message": "planted event for collect-logs",
            "involvedObject": {"kind": "Pod", "name": "hook-pre", "namespace": ns},
            "firstTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lastTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    deadline = time.time() + 60
    while source.core.read_namespaced_pod("hook-pre", ns).status.phase not in ("Succeeded", "Failed"):
        assert time.time() < deadline, "the sandbox did not run the hook pod"
        time.sleep(0.5)

    # a config dir whose plan protects the namespace, and a planted secret in a config file
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "plans" / "diag.yaml").write_text(
        f"kind: BackupPlan\nname: diag\ncluster: source\nrepository: sandbox-s3\nnamespaces: {{names: [{ns}]}}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n"
    )
    (config / "notes.yaml").write_text(f"smtp:\n  host: mail.example.com\n  password: {PLANTED['config']}\n")

    # an AIRFLOW_HOME with task logs (ys1000 and other DAGs), scheduler and dag-processor logs
    home = tmp_path / "airflow"
    task_log = home / "logs" / "dag_id=ys1000_backup__diag" / "run_id=manual__1" / "task_id=capture" / "attempt=1.log"
    task_log.parent.mkdir(parents=True)
    task_log.write_text(
        json.dumps({"event": f"login with {PLANTED['conn']}", "level": "info"})
        + "\n"
        + json.dumps({"event": "capture done: 12 objects", "level": "info"})
        + "\n"
    )
    other = home / "logs" / "dag_id=someone_else" / "run_id=r" / "task_id=t" / "attempt=1.log"
    other.parent.mkdir(parents=True)
    other.write_text("not ours\n")
    sched = home / "logs" / "scheduler" / "2025-01-01" / "ys1000_dags.py.log"
    sched.parent.mkdir(parents=True)
    sched.write_text(f"scheduler started\nconnecting with api_token={PLANTED['scheduler']}\n")
    proc_log = home / "logs" / "dag_processor" / "latest" / "ys1000_dags.py.log"
    proc_log.parent.mkdir(parents=True)
    proc_log.write_text("dag processor parsed ys1000_dags.py\n")
    old = home / "logs" / "scheduler" / "old.log"
    old.write_text("ancient\n")
    os.utime(old, (time.time() - 3 * 86400,) * 2)

    for k, v in sandbox_env(sandbox["dir"]).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(
        "AIRFLOW_CONN_YS1000_SMTP", json.dumps({"conn_type": "smtp", "host": "mail", "password": PLANTED["conn"]})
    )
    monkeypatch.setenv("YS1000_REPO_KEY", PLANTED["repo_key"])

    out = tmp_path / "support" / "bundle.tar.gz"
    assert (
        _cli(
            [
                "collect-logs",
                "-o",
                str(out),
                "--cluster",
                "source",
                "--since",
                "24h",
                "--airflow-home",
                str(home),
                "--config-dir",
                str(config),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "airflow task logs: 1 files" in printed
    assert "cluster source: ys1000 pod logs" in printed and "config (redacted)" in printed

    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    names = set(files)
    assert "airflow/tasks/dag_id=ys1000_backup__diag/run_id=manual__1/task_id=capture/attempt=1.log" in names
    assert not any("someone_else" in n for n in names)
    assert "airflow/services/scheduler/2025-01-01/ys1000_dags.py.log" in names
    assert "airflow/services/dag_processor/latest/ys1000_dags.py.log" in names
    assert "airflow/services/scheduler/old.log" not in names  # older than --since
    assert {"config/clusters.yaml", "config/repositories.yaml", "config/plans/diag.yaml", "config/notes.yaml"} <= names
    assert f"clusters/source/pods/{ns}/hook-pre/hook.log" in names
    assert f"hook ran in {ns}" in files[f"clusters/source/pods/{ns}/hook-pre/hook.log"]
    assert json.loads(files[f"clusters/source/pods/{ns}/hook-pre/pod.json"])["phase"] == "Succeeded"
    assert "YsDiagTest" in files[f"clusters/source/events/{ns}.tsv"]
    assert (
        "capture done: 12 objects"
        in files["airflow/tasks/dag_id=ys1000_backup__diag/run_id=manual__1/task_id=capture/attempt=1.log"]
    )
    meta = json.loads(files["collected.json"])
    assert meta["clusters"] == ["source"] and len(meta["parts"]) == len(names) - 1

    # no planted secret anywhere (nor the sandbox's S3 secret key)
    from ys1000_dev.sandbox.s3 import S3Endpoint

    s3_secret = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"])).secret_key
    blob = out.read_bytes()
    import gzip

    raw = gzip.decompress(blob).decode(errors="replace")
    for what, value in [*PLANTED.items(), ("s3", s3_secret)]:
        assert value not in raw, f"planted {what} secret leaked"
    assert "***" in files["config/notes.yaml"] and "mail.example.com" in files["config/notes.yaml"]
