"""``ys1000 sandbox up|down|status``: local Kubernetes clusters and S3 for the demo and the tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ys1000.sandbox import supervisor


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


def _up(args) -> int:
    t0 = time.monotonic()
    info = supervisor.up(args.dir, clusters=args.clusters, nodes=args.nodes)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"sandbox up in {time.monotonic() - t0:.1f} s ({args.dir.resolve()})")
    for name, c in info["clusters"].items():
        print(f"  cluster {name:8} {c['server']}  kubectl --kubeconfig {c['kubeconfig']} get nodes")
    print(f"  s3       {info['s3']['endpoint_url']}  bucket {info['s3']['bucket']}  credentials: {info['s3']['env_file']}")
    print(f"stop it with: ys1000 sandbox down --dir {args.dir}")
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
