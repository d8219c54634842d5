"""``ys1000 collect-logs``: one tarball for a support case (see ``ys1000.diagnostics``)."""

from __future__ import annotations

import os
from pathlib import Path

from ys1000.cli.common import UsageError


def register(sub) -> None:
    p = sub.add_parser(
        "collect-logs",
        help="collect Airflow and cluster logs, events and the redacted config into a tar.gz",
        description="Airflow task logs of ys1000 DAGs, scheduler/dag-processor logs, the product config "
        "(secrets redacted), and per cluster the mover/hook pods' logs and the protected "
        "namespaces' events.",
    )
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE.tar.gz")
    p.add_argument(
        "--cluster",
        action="append",
        default=None,
        metavar="NAME",
        help="a cluster of clusters.yaml (through its Airflow connection); repeatable; "
        "default: every configured cluster",
    )
    p.add_argument(
        "--kubeconfig",
        action="append",
        default=[],
        metavar="FILE[=NAME]",
        help="also a cluster by kubeconfig (name: NAME or the file's stem); repeatable",
    )
    p.add_argument("--no-clusters", action="store_true", help="collect no cluster data")
    p.add_argument("--since", default="24h", help="only logs/events newer than this (e.g. 2h, 24h, 7d)")
    p.add_argument("--airflow-home", type=Path, default=None, help="default $AIRFLOW_HOME (or ~/airflow)")
    p.add_argument("--logs-dir", type=Path, default=None, help="Airflow's log folder (default AIRFLOW_HOME/logs)")
    p.add_argument("--config-dir", type=Path, default=None, help="default $YS1000_CONFIG_DIR or the shipped config/")
    p.set_defaults(func=cmd_collect_logs)


def _since(text: str):
    from ys1000.config import parse_duration

    try:
        return parse_duration(text)
    except Exception:
        raise UsageError(f"--since {text!r}: expected a duration like 30m, 24h, 7d") from None


def cmd_collect_logs(args) -> int:
    from ys1000 import diagnostics
    from ys1000.config import default_config_dir

    since = _since(args.since)
    home = args.airflow_home or Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    cdir = args.config_dir or default_config_dir()
    config = None
    try:
        from ys1000.config import load_config

        config = load_config(cdir)
    except Exception as exc:  # a broken config is worth collecting too
        print(f"note: config not loaded ({str(exc).splitlines()[0]}); collecting it as is")
    kubes, errors = {}, {}
    if not args.no_clusters:
        names = args.cluster if args.cluster is not None else sorted(config.clusters) if config else []
        for name in names:
            spec = config.clusters.get(name) if config else None
            if spec is None:
                raise UsageError(f"--cluster {name!r} is not defined in {cdir}/clusters.yaml")
            try:
                from ys1000.airflow.connections import kube_for_cluster

                kubes[name] = kube_for_cluster(name, spec)
            except Exception as exc:
                errors[name] = f"no client (connection {spec.connection_id}): {exc}"
        for item in args.kubeconfig:
            path, _, name = item.partition("=")
            if not Path(path).is_file():
                raise UsageError(f"--kubeconfig {path}: no such file")
            from ys1000.kube import Kube

            name = name or Path(path).stem
            kubes[name] = Kube.from_kubeconfig(path, name=name)
    got = diagnostics.collect(
        args.output,
        airflow_home=home,
        logs_dir=args.logs_dir,
        config_dir=cdir,
        clusters=kubes,
        cluster_errors=errors,
        since=since,
        config=config,
    )
    print(f"wrote {args.output}")
    for category, s in sorted(got.summary().items()):
        print(f"  {category}: {s['files']} files, {s['bytes']} bytes")
    for err in got.errors:
        print(f"  not collected: {err}")
    return 0
