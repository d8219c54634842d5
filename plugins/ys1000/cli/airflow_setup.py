"""``ys1000 airflow pools``: prepare an Airflow installation for the ys1000 DAGs."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("airflow", help="Airflow setup: one pool per cluster")
    a = p.add_subparsers(dest="airflow_command", required=True, metavar="ACTION")
    pools = a.add_parser("pools", help="create the pool of every configured cluster (needs the Airflow DB)")
    pools.add_argument("--config-dir", type=Path, help="default: $YS1000_CONFIG_DIR or the repo's config/")
    pools.set_defaults(func=lambda args: _bootstrap().run_ensure_pools(args.config_dir))


def _bootstrap():
    # imported when used: the rest of the CLI works without Airflow installed
    from ys1000.airflow import bootstrap

    return bootstrap
