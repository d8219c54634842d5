"""The operator's CLI, run as a person runs it (the installed console script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ys1000_dev.ports import free_port

YS1000 = str(Path(sys.executable).parent / "ys1000")


def run(*args, env_extra=None, check_rc=None):
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([YS1000, *args], capture_output=True, text=True, env=env, timeout=120)
    if check_rc is not None:
        assert out.returncode == check_rc, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return out


@pytest.fixture
def s3env(sandbox_s3):
    return {**sandbox_s3.env(), "YS1000_REPO_KEY": "cli-test-key"}


def test_repo_test_distinguishes_failures(sandbox_s3, s3env):
    bucket = sandbox_s3.new_bucket(f"cli-{uuid.uuid4().hex[:8]}")
    ok = run("repo", "test", "--repo", f"s3://{bucket}/x", "-o", "json", env_extra=s3env, check_rc=0)
    assert json.loads(ok.stdout)["ok"] is True
    wrong_secret = run(
        "repo",
        "test",
        "--repo",
        f"s3://{bucket}/x",
        env_extra={**s3env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
        check_rc=1,
    )
    no_bucket = run("repo", "test", "--repo", "s3://no-such-bucket-here/x", env_extra=s3env, check_rc=1)
    unreachable = run(
        "repo",
        "test",
        "--repo",
        f"s3://{bucket}/x",
        env_extra={**s3env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
        check_rc=1,
    )
    assert "secret key is wrong" in wrong_secret.stderr
    assert "bucket 'no-such-bucket-here' does not exist" in no_bucket.stderr
    assert "unreachable" in unreachable.stderr
    # and nothing secret is printed
    for out in (wrong_secret, no_bucket, unreachable):
        assert sandbox_s3.secret_key not in out.stderr + out.stdout


def test_backup_list_show_verify_restore(source, target, make_namespace, sandbox_s3, s3env):
    ns = make_namespace(source)
    source.core.create_namespaced_secret(ns, {"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}})
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    bucket = sandbox_s3.new_bucket(f"cli-{uuid.uuid4().hex[:8]}")
    repo = ["--repo", f"s3://{bucket}/cli"]
    b = run(
        "backup",
        "--kubeconfig",
        source.kubeconfig,
        *repo,
        "-n",
        ns,
        "--plan",
        "cli",
        "-o",
        "json",
        env_extra=s3env,
        check_rc=0,
    )
    backup_id = json.loads(b.stdout)["backup_id"]
    listed = run("backups", "list", *repo, "-o", "json", env_extra=s3env, check_rc=0)
    assert [e["backup_id"] for e in json.loads(listed.stdout)] == [backup_id]
    shown = run("backups", "show", *repo, backup_id, "--resource", f"Secret/{ns}/db", env_extra=s3env, check_rc=0)
    assert "password: '***'" in shown.stdout and "aHVudGVyMg" not in shown.stdout
    revealed = run(
        "backups",
        "show",
        *repo,
        backup_id,
        "--resource",
        f"Secret/{ns}/db",
        "--show-secrets",
        env_extra=s3env,
        check_rc=0,
    )
    assert "aHVudGVyMg==" in revealed.stdout
    run("verify", *repo, backup_id, env_extra=s3env, check_rc=0)
    wrong_key = run("verify", *repo, backup_id, env_extra={**s3env, "YS1000_REPO_KEY": "wrong"}, check_rc=1)
    assert "key" in wrong_key.stderr.lower()
    new_ns = ns + "-cli"
    dry = run(
        "restore",
        "latest",
        "--plan",
        "cli",
        "--kubeconfig",
        target.kubeconfig,
        *repo,
        "--namespace-mapping",
        f"{ns}={new_ns}",
        "--dry-run",
        env_extra=s3env,
        check_rc=0,
    )
    assert "would-create  ConfigMap" in dry.stdout
    r = run(
        "restore",
        backup_id,
        "--kubeconfig",
        target.kubeconfig,
        *repo,
        "--namespace-mapping",
        f"{ns}={new_ns}",
        "-o",
        "json",
        env_extra=s3env,
        check_rc=0,
    )
    report = json.loads(r.stdout)
    assert report["status"] == "Completed" and report["counts"]["created"] >= 3
    assert target.core.read_namespaced_config_map("cfg", new_ns).data == {"a": "1"}
    # existing-resource policy fail: partial failure has its own exit code
    partial = run(
        "restore",
        backup_id,
        "--kubeconfig",
        target.kubeconfig,
        *repo,
        "--namespace-mapping",
        f"{ns}={new_ns}",
        "--existing",
        "fail",
        env_extra=s3env,
    )
    assert partial.returncode in (1, 3) and "exists (existing-resource policy: fail)" in partial.stdout
    conflict = run(
        "restore",
        backup_id,
        "--kubeconfig",
        target.kubeconfig,
        *repo,
        "--namespace-mapping",
        f"{ns}={new_ns}",
        "--refuse-conflicts",
        env_extra=s3env,
        check_rc=1,
    )
    assert f"Namespace {new_ns}" in conflict.stderr
    target.core.delete_namespace(new_ns)


def test_usage_errors_are_clear(s3env):
    out = run("restore", "latest", "--kubeconfig", "/nonexistent", "--repo", "ftp://x", env_extra=s3env)
    assert out.returncode == 2 and "expected s3://BUCKET" in out.stderr
    out = run("restore", "latest", "--kubeconfig", "/nonexistent", "--repo", "s3://b", env_extra=s3env)
    assert out.returncode in (1, 2) and out.stderr.startswith("ys1000:")


def test_taken_node_port_gets_a_new_one(source, make_namespace, sandbox_s3, s3env):
    """Restoring a NodePort Service next to the original (another namespace, same cluster)."""
    ns = make_namespace(source)
    source.core.create_namespaced_service(
        ns,
        {"metadata": {"name": "np"}, "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}},
    )
    port = source.core.read_namespaced_service("np", ns).spec.ports[0].node_port
    bucket = sandbox_s3.new_bucket(f"np-{uuid.uuid4().hex[:8]}")
    repo = ["--repo", f"s3://{bucket}/np"]
    b = run("backup", "--kubeconfig", source.kubeconfig, *repo, "-n", ns, "-o", "json", env_extra=s3env, check_rc=0)
    bid = json.loads(b.stdout)["backup_id"]
    r = run(
        "restore",
        bid,
        "--kubeconfig",
        source.kubeconfig,
        *repo,
        "--namespace-mapping",
        f"{ns}={ns}-2",
        "-o",
        "json",
        env_extra=s3env,
        check_rc=0,
    )
    item = next(i for i in json.loads(r.stdout)["items"] if i["kind"] == "Service")
    assert item["action"] == "created" and f"nodePort {port} is taken" in item["reason"]
    assert source.core.read_namespaced_service("np", ns + "-2").spec.ports[0].node_port != port
    source.core.delete_namespace(ns + "-2")
