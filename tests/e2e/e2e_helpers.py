"""Helpers of the end-to-end tests (plans, planted data, repository access, REST API bits)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import yaml

SLOW_LIMIT_KIB = 256  # source cluster's mover bandwidth in the e2e config
SLOW_DATA_MIB = 4  # data planted in the slow plan's PVC: ~16 s of upload at the limit


def backup_plan(name: str, namespace: str, scope: str = "full", method: str = "filecopy") -> str:
    return (
        f"kind: BackupPlan\nname: {name}\ncluster: source\nrepository: sandbox-s3\n"
        f"namespaces: {{names: [{namespace}]}}\n"
        f"policy: {{scope: {scope}, method: {method}, schedule: {{type: on_demand}}, retention: 7d}}\n"
    )


def limit_bandwidth(config_dir: Path, cluster: str, kib_s: int) -> None:
    path = config_dir / "clusters.yaml"
    data = yaml.safe_load(path.read_text())
    data[cluster]["bandwidth"] = {"limit_kib_s": kib_s}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def pv_dir(kube, ns: str, pvc: str) -> Path:
    from ys1000.waiting import wait_until

    claim = wait_until(
        lambda: (
            (c := kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}"))["spec"].get("volumeName") and c
        ),
        timeout=60,
        what=f"PVC {ns}/{pvc} to be bound",
    )
    pv = kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])


def plant_data(root: Path, mib: int) -> None:
    rnd = random.Random(mib)  # incompressible: restic uploads all of it
    with open(root / "uploads.bin", "wb") as f:
        for _ in range(mib):
            f.write(rnd.randbytes(1 << 20))
    (root / "index.php").write_text("<?php // ys1000 e2e\n")


def create_pools(stack) -> None:
    """After ``db migrate``: the cluster pools, as a deployment creates them (``ys1000 airflow pools``)."""
    stack.procs.run("pools", [str(Path(sys.executable).parent / "ys1000"), "airflow", "pools"], timeout=120)


def open_repo(sandbox_s3, bucket: str):
    from ys1000_dev.sandbox.connections import SANDBOX_REPO_KEY
    from ys1000.repository import RepositoryConfig, open_repository

    cfg = RepositoryConfig(
        type="s3",
        bucket=bucket,
        endpoint_url=sandbox_s3.endpoint_url,
        access_key=sandbox_s3.access_key,
        secret_key=sandbox_s3.secret_key,
        region=sandbox_s3.region,
    )
    return open_repository(cfg, SANDBOX_REPO_KEY)


MOVERS = "ys1000.io/component=mover"


def movers_in(cluster, namespaces: tuple[str, ...] = ()) -> list[str]:
    """Mover Jobs and Secrets in ``cluster`` (only in ``namespaces`` when given)."""
    jobs = cluster.batch.list_job_for_all_namespaces(label_selector=MOVERS).items
    secrets = cluster.core.list_secret_for_all_namespaces(label_selector=MOVERS).items
    return [
        f"{kind}/{o.metadata.namespace}/{o.metadata.name}"
        for kind, objs in (("Job", jobs), ("Secret", secrets))
        for o in objs
        if not namespaces or o.metadata.namespace in namespaces
    ]


def all_tis(client, dag_id: str, run_id: str) -> list[dict]:
    """Every task instance of a run, mapped ones included (one per map index)."""
    return client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200})["task_instances"]


def xcom(client, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    """An XCom value through the REST API."""
    entry = client.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
        params={"deserialize": "true", "stringify": "false"},
    )
    return entry["value"]


def xcom_or_none(client, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    """The XCom value, or None while the task has not pushed it."""
    from ys1000_dev.processes import ApiError

    try:
        return xcom(client, dag_id, run_id, task_id, key)
    except ApiError:
        return None


def task_log(client, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
    """One try's log (a deferred task's trigger lines included) as text."""
    import json

    data = client.request(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
        params={"full_content": "true", "map_index": map_index},
        headers={"Accept": "application/json"},
    )
    return json.dumps(data.get("content") if isinstance(data, dict) else data)


def dump_logs(stack) -> None:
    """Print the components' log tails (pytest shows them for a failed test)."""
    for name in list(stack.procs.procs):
        print(f"----- {name} ({stack.procs.procs[name].log}) -----\n{stack.log_tail(name, 40)}")
