"""``ys1000-dev sandbox up|down|status|env``: local Kubernetes clusters and S3 for the demo and the
tests (development only; the product's command is ``ys1000``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ys1000_dev.sandbox import supervisor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ys1000-dev", description="development tools of ys1000: the local sandbox")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


def register(sub) -> None:
    p = sub.add_parser("sandbox", help="local control planes + S3 on loopback")
    s = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    u = s.add_parser("up", help="start N clusters and S3 in the background; return when ready")
    u.add_argument("--dir", type=Path, required=True, help="where state, kubeconfigs and s3.env go")
    u.add_argument("--clusters", type=int, default=2, help="number of clusters (default 2: source, target)")
    u.add_argument("--nodes", type=int, default=1, help="nodes per cluster (default 1)")
    u.add_argument("--json", action="store_true", help="print sandbox.json instead of a summary")
    u.set_defaults(func=_up)
    d = s.add_parser("down", help="stop everything the sandbox started")
    d.add_argument("--dir", type=Path, required=True)
    d.set_defaults(func=_down)
    st = s.add_parser("status", help="print sandbox.json when the sandbox is up (exit 1 if not)")
    st.add_argument("--dir", type=Path, required=True)
    st.set_defaults(func=_status)
    e = s.add_parser("env", help="print AIRFLOW_CONN_*/AIRFLOW_VAR_* exports of the sandbox's clusters, S3 and key")
    e.add_argument("--dir", type=Path, required=True)
    e.set_defaults(func=_env)


def _up(args) -> int:
    t0 = time.monotonic()
    info = supervisor.up(args.dir, clusters=args.clusters, nodes=args.nodes)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"sandbox up in {time.monotonic() - t0:.1f} s ({args.dir.resolve()})")
    for name, c in info["clusters"].items():
        print(f"  cluster {name:8} {c['server']}  kubectl --kubeconfig {c['kubeconfig']} get nodes")
    print(
        f"  s3       {info['s3']['endpoint_url']}  bucket {info['s3']['bucket']}  credentials: {info['s3']['env_file']}"
    )
    print(f"stop it with: ys1000-dev sandbox down --dir {args.dir}")
    return 0


def _down(args) -> int:
    pids = supervisor.down(args.dir)
    print(f"sandbox stopped ({len(pids)} processes)" if pids else "sandbox was not running")
    return 0


def _status(args) -> int:
    info = supervisor.status(args.dir.resolve())
    if not info:
        print("sandbox is not running")
        return 1
    print(json.dumps(info, indent=2))
    return 0


def _env(args) -> int:
    from ys1000.airflow.bootstrap import shell_exports
    from ys1000_dev.sandbox.connections import sandbox_env

    print(shell_exports(sandbox_env(args.dir.resolve())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
