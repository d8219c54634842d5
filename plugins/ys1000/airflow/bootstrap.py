"""Airflow objects ys1000 needs besides DAGs: one pool per cluster, and connections and Variables
as environment variables.

- ``ensure_pools(config)``: one pool per configured cluster (``ys1000_cluster_<name>``) so
  jobs on the same cluster queue visibly instead of colliding (F32). Needs an initialised
  metadata database (``airflow db migrate``); a pool whose size or deferred counting differs is corrected.
- ``kubernetes_connection`` / ``s3_connection`` / ``connection_env``: clusters (``kubernetes`` with
  ``kube_config_path``) and repositories (``aws`` with keys, ``endpoint_url`` and ``region_name``)
  as ``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<NAME>`` environment variables, which need no database
  writes (the development sandbox builds its own connections from these).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ys1000.config import Config


def pool_name(cluster: str) -> str:
    from ys1000.airflow.dagfactory import pool_for

    return pool_for(cluster)


def ensure_pools(config: "Config") -> list[str]:
    """Create or correct the cluster pools: ``max_concurrent_movers`` slots each, deferred tasks
    counted (a volume task waiting in the triggerer still holds its slot, so a second job on the
    cluster still queues). Returns the names created or changed."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    changed: list[str] = []
    with create_session() as session:
        existing = {p.pool: p for p in session.query(Pool).all()}
        for cluster, spec in config.clusters.items():
            name = pool_name(cluster)
            slots = spec.max_concurrent_movers
            description = (
                f"ys1000: jobs on cluster {cluster} (connection {spec.connection_id}) queue here; "
                f"{slots} volume task(s) at a time, deferred ones counted"
            )
            pool = existing.get(name)
            if pool is None:
                session.add(Pool(pool=name, slots=slots, include_deferred=True, description=description))
            elif pool.slots != slots or not pool.include_deferred:
                pool.slots, pool.include_deferred, pool.description = slots, True, description
            else:
                continue
            changed.append(name)
    return changed


@dataclass(frozen=True)
class ConnectionDef:
    """An Airflow connection as data (``to_env`` gives the ``AIRFLOW_CONN_<ID>`` JSON form)."""

    conn_id: str
    conn_type: str
    login: str | None = None
    password: str | None = None
    extra: dict[str, Any] | None = None
    description: str = ""

    def to_json(self) -> str:
        data: dict[str, Any] = {"conn_type": self.conn_type}
        if self.login is not None:
            data["login"] = self.login
        if self.password is not None:
            data["password"] = self.password
        if self.extra:
            data["extra"] = self.extra
        if self.description:
            data["description"] = self.description
        return json.dumps(data)

    @property
    def env_name(self) -> str:
        return f"AIRFLOW_CONN_{self.conn_id.upper()}"


def kubernetes_connection(conn_id: str, kubeconfig: str | Path, context: str | None = None) -> ConnectionDef:
    extra: dict[str, Any] = {"kube_config_path": str(kubeconfig)}
    if context:
        extra["cluster_context"] = context
    return ConnectionDef(conn_id, "kubernetes", extra=extra, description="ys1000 cluster")


def s3_connection(
    conn_id: str, *, endpoint_url: str | None, access_key: str, secret_key: str, region: str
) -> ConnectionDef:
    extra: dict[str, Any] = {"region_name": region}
    if endpoint_url:
        extra["endpoint_url"] = endpoint_url
    return ConnectionDef(
        conn_id, "aws", login=access_key, password=secret_key, extra=extra, description="ys1000 repository"
    )


def connection_env(connections: list[ConnectionDef], variables: dict[str, str]) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<NAME>`` entries for connections and Variables."""
    env = {c.env_name: c.to_json() for c in connections}
    env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in variables.items()})
    return env


def apply_env(env: dict[str, str]) -> None:
    """Export ``env`` into this process (children inherit it)."""
    os.environ.update(env)


def shell_exports(env: dict[str, str]) -> str:
    """``export NAME='value'`` lines (for ``eval`` in a shell)."""
    import shlex

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))


def run_ensure_pools(config_dir: str | Path | None = None) -> int:
    """CLI logic (``ys1000 airflow pools``): create the cluster pools of the configuration."""
    from ys1000.config import default_config_dir, load_config

    config = load_config(Path(config_dir) if config_dir else default_config_dir())
    created = ensure_pools(config)
    for name in sorted(pool_name(c) for c in config.clusters):
        print(f"pool {name}: {'created' if name in created else 'exists'}")
    return 0
