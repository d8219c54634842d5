"""``ys1000 test-connection``: cluster and repository connections through Airflow, from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ys1000_dev.sandbox.connections import sandbox_env

YS1000 = str(Path(sys.executable).parent / "ys1000")


def run(env, *args):
    return subprocess.run(
        [YS1000, "test-connection", *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_cluster_and_repository_connections(sandbox, tmp_path):
    env = {**sandbox_env(sandbox["dir"]), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    ok = run(env, "--cluster", "source")
    assert ok.returncode == 0 and "cluster source: connected through connection ys1000_source" in ok.stdout
    assert "Kubernetes v1.36" in ok.stdout
    repo = run(env, "--repository", "sandbox-s3")
    assert repo.returncode == 0 and "write, read and delete probe OK" in repo.stdout, repo.stdout + repo.stderr
    broken = run(
        {**env, "AIRFLOW_CONN_YS1000_TARGET": '{"conn_type": "kubernetes", "extra": {"kube_config_path": "/nope"}}'},
        "--cluster",
        "target",
    )
    assert broken.returncode == 1 and "cluster target: NOT connected" in broken.stdout
    bad_secret = dict(env)
    bad_secret["AIRFLOW_CONN_YS1000_S3"] = env["AIRFLOW_CONN_YS1000_S3"].replace('"password": "', '"password": "x')
    denied = run(bad_secret, "--repository", "sandbox-s3")
    assert denied.returncode == 1 and "secret key is wrong" in denied.stdout, denied.stdout
    unknown = run(env, "--cluster", "nope")
    assert unknown.returncode == 1 and "defined: source, target" in unknown.stdout
