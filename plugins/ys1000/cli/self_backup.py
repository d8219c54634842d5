"""``ys1000 self-restore``: restore the product's own state from a self-backup onto a fresh
install (metadata DB, config directory, connections, variables); ``ys1000 self-backups``: list.

Run it with the new install's Airflow environment (AIRFLOW_HOME / AIRFLOW__DATABASE__SQL_ALCHEMY_CONN),
``airflow db migrate`` done, and the scheduler, dag-processor, workers and api-server stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

from ys1000.cli.common import KEY_ENV, UsageError, emit


def register(sub) -> None:
    for name, func, helptext in (
        ("self-restore", cmd_self_restore, "restore a self-backup onto this (fresh) install"),
        ("self-backups", cmd_list, "list the self-backups of a repository"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument(
            "--repository",
            required=True,
            metavar="NAME|URL",
            help="a repository of repositories.yaml, or s3://BUCKET[/PREFIX] / local:///DIR / a directory",
        )
        p.add_argument(
            "--config-dir",
            type=Path,
            default=None,
            help="the ys1000 config directory (default $YS1000_CONFIG_DIR or the shipped config/); "
            "restored files are written here",
        )
        p.add_argument(
            "--endpoint-url",
            default=os.environ.get("AWS_ENDPOINT_URL"),
            help="S3 endpoint for a URL repository (default $AWS_ENDPOINT_URL)",
        )
        p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        p.add_argument("--key-file", type=Path, help=f"file holding the repository key (default ${KEY_ENV})")
        if name == "self-restore":
            p.add_argument("--backup", default="latest", metavar="ID", help="self-backup id (default: latest)")
            p.add_argument("--skip-db", action="store_true", help="do not restore the metadata DB")
            p.add_argument("--skip-config", action="store_true", help="do not restore the config directory")
            p.add_argument("--skip-connections", action="store_true", help="do not restore connections and variables")
        else:
            p.add_argument("-o", "--output", choices=["text", "json"], default="text")
        p.set_defaults(func=func)


def _config_dir(args) -> Path:
    from ys1000.config import default_config_dir

    return args.config_dir or default_config_dir()


def open_repo(args):
    """The repository by URL (credentials from AWS_* env, key from --key-file/$YS1000_REPO_KEY) or
    by name (repositories.yaml; credentials from its Airflow connection when it resolves, e.g.
    AIRFLOW_CONN_<ID>, else AWS_* env)."""
    from ys1000.cli.common import passphrase, repo_config
    from ys1000.repository import open_repository

    value = args.repository
    if "://" in value or value.startswith(("/", ".")):
        args.repo = value
        return open_repository(repo_config(args), passphrase(args))
    from ys1000.config import load_config

    cdir = _config_dir(args)
    config = load_config(cdir)
    spec = config.repositories.get(value)
    if spec is None:
        raise UsageError(
            f"--repository {value!r} is not defined in {cdir}/repositories.yaml; defined: "
            f"{', '.join(sorted(config.repositories)) or 'none'} (or give a URL)"
        )
    try:
        from ys1000.airflow.connections import repository_config_for

        cfg = repository_config_for(value, spec)
    except Exception:  # no Airflow connection on a fresh install: fall back to the environment
        cfg = (
            spec.to_repository_config(
                endpoint_url=args.endpoint_url,
                access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                region=args.region or spec.region,
            )
            if spec.type == "s3"
            else spec.to_repository_config()
        )
    if args.key_file or os.environ.get(KEY_ENV):
        key = passphrase(args)
    else:
        var = spec.key.variable
        key = os.environ.get(f"AIRFLOW_VAR_{var.upper()}") if var else None
        if not key:
            raise UsageError(f"the repository key is needed: set ${KEY_ENV} or give --key-file")
    return open_repository(cfg, key)


def cmd_list(args) -> int:
    from ys1000.selfbackup.archive import list_self_backups

    backups = list_self_backups(open_repo(args))
    data = [
        {
            "id": b.backup_id,
            "created": b.created.isoformat(),
            **b.meta,
            "bytes": sum(p.get("stored", 0) for p in b.parts.values()),
        }
        for b in backups
    ]
    text = (
        "\n".join(
            f"{d['id']}  {d['created']}  {d.get('db_kind', '?')}  {d['bytes']} bytes  "
            f"{d.get('dag_runs', '?')} runs, {d.get('connections', '?')} connections"
            for d in data
        )
        or "no self-backups"
    )
    emit(args, data, text)
    return 0


def cmd_self_restore(args) -> int:
    from ys1000.selfbackup.airflow_side import self_restore

    repo = open_repo(args)
    self_restore(
        repo,
        args.backup,
        config_dir=_config_dir(args),
        restore_db=not args.skip_db,
        restore_config=not args.skip_config,
        restore_secrets=not args.skip_connections,
    )
    print("done: start Airflow again (scheduler, dag-processor, api-server, workers)")
    return 0
