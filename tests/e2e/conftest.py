"""Fixtures of the end-to-end tier: real Airflow processes (``ys1000_dev.processes``) against
the session's sandbox, each with its own config directory, bucket and namespace."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airflow"))  # af_helpers

from af_helpers import copy_config, set_bucket, write_plan  # noqa: E402
from e2e_helpers import (
    SLOW_DATA_MIB,
    SLOW_LIMIT_KIB,
    backup_plan,
    limit_bandwidth,  # noqa: E402
    plant_data,
    pv_dir,
)


@pytest.fixture(scope="module")
def e2e_env(sandbox, sandbox_s3, source, tmp_path_factory):
    """A config dir (plans ``slow-backup`` — sample app + planted PVC data, bandwidth-limited —
    and ``quick-backup`` — resources only, same cluster), a fresh bucket, the sandbox's
    connections as env, and the namespace (deleted afterwards)."""
    from kubernetes import client

    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.kube import Kube
    from ys1000_dev.sandbox import sampleapp

    base = tmp_path_factory.mktemp("e2e")
    bucket = sandbox_s3.new_bucket(f"e2e-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(base / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    limit_bandwidth(cdir, "source", SLOW_LIMIT_KIB)
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    sampleapp.deploy(kube, ns)
    plant_data(pv_dir(kube, ns, "wp-content"), SLOW_DATA_MIB)
    # a database volume is never empty (and restic refuses an empty snapshot: see the report)
    (pv_dir(kube, ns, "data-mysql-0") / "ibdata1").write_bytes(b"\0" * 65536)
    write_plan(cdir, "slow-backup.yaml", backup_plan("slow-backup", ns))
    write_plan(cdir, "quick-backup.yaml", backup_plan("quick-backup", ns, scope="resources"))
    env = sandbox_env(sandbox["dir"]) | {"YS1000_CONFIG_DIR": str(cdir)}
    yield SimpleNamespace(config_dir=cdir, bucket=bucket, namespace=ns, env=env, base=base, kube=kube)
    try:
        source.core.delete_namespace(ns)
    except client.exceptions.ApiException:
        pass
