"""``ys1000 drill BACKUP``: prove a backup restores (``ys1000.drill``), as the drill DAG will.

Restores into scratch namespaces of the cluster (``--kubeconfig``), with PVC data read back and
checked, waits for the workloads, runs the checks (``--check-object``, and the plan's
``drill.checks`` with ``--config``), records the evidence in the repository and removes the
scratch namespaces. Exit 0 when verified, 1 when the drill failed (the reason is printed).
"""

from __future__ import annotations

import threading

from ys1000.cli.backup_restore import (
    EXIT_FAILED,
    EXIT_OK,
    _cluster_name,
    _cluster_settings,
    _resolve_backup,
    _restore_volume_options,
    add_allow_suspicious_arg,
    add_mover_args,
)
from ys1000.cli.common import UsageError, add_cluster_args, add_output_arg, add_repo_args, emit, kube_from, repo_from


def register(sub) -> None:
    d = sub.add_parser("drill", help="restore a backup into scratch namespaces and prove it works")
    add_cluster_args(d)
    add_repo_args(d)
    add_output_arg(d)
    d.add_argument("backup", help="backup id, or 'latest' (with --plan)")
    d.add_argument("--plan", help="with backup 'latest': the plan whose newest backup to drill")
    add_allow_suspicious_arg(d)
    d.add_argument("--namespace-suffix", help="scratch namespaces are <ns>-<suffix> (default drill-<hex>)")
    d.add_argument("--timeout", type=float, default=900, help="seconds for the whole drill (default 900)")
    d.add_argument(
        "--check-object",
        action="append",
        default=[],
        metavar="KIND/NAME",
        help="the restored object must exist (repeatable), e.g. Deployment/web",
    )
    add_mover_args(d)
    d.set_defaults(func=_drill)


def _checks(args, plan_name: str) -> list:
    checks: list = []
    if args.config:
        from ys1000.config import load_plans

        _, plans = load_plans(args.config)
        from ys1000.config import BackupPlan

        for plan in plans.values():
            if isinstance(plan, BackupPlan) and plan.name == plan_name and plan.drill is not None:
                checks += list(plan.drill.checks)
    for i, ref in enumerate(args.check_object, 1):
        kind, _, name = ref.partition("/")
        if not kind or not name:
            raise UsageError(f"--check-object {ref!r}: expected KIND/NAME, e.g. Deployment/web")
        checks.append({"name": f"object-cli-{i}", "type": "object", "kind": kind, "object": name})
    return checks


def _drill(args) -> int:
    from ys1000.drill.run import DrillSpec, run_drill

    _cluster_settings(args)
    repo = repo_from(args)
    kube = kube_from(args)
    backup_id = _resolve_backup(repo, args.backup, args.plan, args.allow_suspicious)
    manifest = repo.manifest(backup_id)
    spec = DrillSpec(
        backup_id=backup_id,
        suffix=args.namespace_suffix or "",
        timeout=args.timeout,
        checks=_checks(args, manifest.plan),
    )
    spec.same_cluster = manifest.cluster_name == _cluster_name(args, kube)
    spec.volume_opts = _restore_volume_options(args, run_id=f"cli/{spec.drill_id}")
    spec.volume_opts.same_cluster = spec.same_cluster
    result = run_drill(kube, repo, spec, cancel=threading.Event())
    ev = result.evidence
    lines = [
        f"drill {ev['drill_id']} of {backup_id}: "
        + (f"verified, RTO {ev['rto_seconds']:.1f}s" if result.verified else f"FAILED: {result.reason}")
    ]
    lines += [f"  step {k}: {v:.1f}s" for k, v in ev["steps"].items()]
    lines += [
        f"  volume {v['namespace']}/{v['pvc']}: {v['restored_bytes']} bytes, content verified"
        if v["ok"]
        else f"  volume {v['namespace']}/{v['pvc']}: FAILED {v['reason']}"
        for v in ev.get("volumes") or []
    ]
    lines += [f"  check {c['name']}: {'passed' if c['ok'] else 'FAILED'} ({c['detail']})" for c in ev["checks"]]
    lines.append(f"  scratch namespaces removed: {', '.join(ev.get('cleanup') or []) or 'none'}")
    lines.append(f"  evidence: {ev.get('evidence_key') or ev.get('evidence_error')}")
    emit(args, ev, "\n".join(lines))
    return EXIT_OK if result.verified else EXIT_FAILED
