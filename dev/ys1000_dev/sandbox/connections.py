"""The sandbox as Airflow connections and Variables, for tests and the demo.

``sandbox_connections(sandbox_dir)`` / ``sandbox_env(sandbox_dir)``: the sandbox's clusters and S3
as Airflow connections (``kubernetes`` with ``kube_config_path``; ``aws`` with keys,
``endpoint_url`` and ``region_name``) and the repository key Variable, as ``AIRFLOW_CONN_<ID>`` /
``AIRFLOW_VAR_<NAME>`` environment variables: tests and the demo need no database writes for them.
``ys1000-dev sandbox env --dir DIR`` prints them as shell exports.
"""

from __future__ import annotations

from pathlib import Path

from ys1000.airflow.bootstrap import ConnectionDef, connection_env, kubernetes_connection, s3_connection
from ys1000_dev.sandbox import supervisor
from ys1000_dev.sandbox.s3 import S3Endpoint

SANDBOX_REPO_KEY = "ys1000-sandbox-demo-key"  # the sandbox only; real repositories use their own
SANDBOX_KEY_VARIABLE = "ys1000_repo_key"
SANDBOX_CLUSTER_CONNECTIONS = {"source": "ys1000_source", "target": "ys1000_target"}
SANDBOX_S3_CONNECTION = "ys1000_s3"


def sandbox_connections(sandbox_dir: str | Path) -> tuple[list[ConnectionDef], dict[str, str]]:
    """Connections (``ys1000_source``, ``ys1000_target``, ``ys1000_s3``) and Variables
    (``ys1000_repo_key``) for the sandbox running in ``sandbox_dir``."""
    root = Path(sandbox_dir)
    info = supervisor.status(root)
    if not info:
        raise RuntimeError(f"no sandbox is running in {root} (start one with `ys1000-dev sandbox up`)")
    conns = [
        kubernetes_connection(conn_id, info["clusters"][name]["kubeconfig"])
        for name, conn_id in SANDBOX_CLUSTER_CONNECTIONS.items()
    ]
    s3 = S3Endpoint.from_env_file(Path(info["s3"]["env_file"]))
    conns.append(
        s3_connection(
            SANDBOX_S3_CONNECTION,
            endpoint_url=s3.endpoint_url,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        )
    )
    return conns, {SANDBOX_KEY_VARIABLE: SANDBOX_REPO_KEY}


def sandbox_env(sandbox_dir: str | Path) -> dict[str, str]:
    """The environment that makes the sandbox's connections and Variable visible to Airflow."""
    return connection_env(*sandbox_connections(sandbox_dir))
