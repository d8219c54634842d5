"""``ys1000 backup | restore | backups list/show | verify | repo test``: the engine without Airflow."""

from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ys1000.backup import BackupSpec, Limits, run_backup
from ys1000.kube import KubeError
from ys1000.cli.common import (
    UsageError,
    add_cluster_args,
    add_output_arg,
    add_repo_args,
    emit,
    kube_from,
    parse_mapping,
    permission_denied,
    repo_config,
    repo_from,
)
from ys1000.repository import check_connection, make_store
from ys1000.restore import RestoreOptions, RestoreSpec, check_no_conflicts, run_restore
from ys1000.units import human_size

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL, EXIT_SUSPICIOUS = 0, 1, 3, 4


def register(sub) -> None:
    b = sub.add_parser(
        "backup",
        help="back up namespaces' resources to a repository",
        epilog="exit codes: 0 Completed, 1 failed (nothing committed), 2 bad usage, 3 PartiallyFailed "
        "(a PVC's data is missing), 4 committed but suspicious: the anomaly guard found a change far "
        "outside the plan's history (reasons printed; `latest` skips it until a human confirms it)",
    )
    add_cluster_args(b)
    add_repo_args(b)
    add_output_arg(b)
    b.add_argument("-n", "--namespace", action="append", default=[], help="namespace name (repeatable)")
    b.add_argument("--namespace-glob", action="append", default=[], help="shell-style pattern, e.g. 'shop-*'")
    b.add_argument("--namespace-selector", help="label selector on namespaces")
    b.add_argument("--include-kind", action="append", default=[])
    b.add_argument("--exclude-kind", action="append", default=[])
    b.add_argument("-l", "--selector", help="label selector on the objects")
    b.add_argument("--scope", choices=["full", "volumes", "resources"], default="full")
    b.add_argument("--plan", default="adhoc", help="plan name the backup is catalogued under")
    b.add_argument("--id", help="backup id (default: <plan>-<UTC time>)")
    b.add_argument("--retention-days", type=float)
    b.add_argument("--max-namespaces", type=int, default=Limits.max_namespaces)
    b.add_argument("--max-pods", type=int, default=Limits.max_pods)
    b.add_argument("--max-pvcs", type=int, default=Limits.max_pvcs)
    b.add_argument(
        "--method",
        choices=["filecopy", "snapshot", "snapshot_export"],
        help="how PVC data is protected (default filecopy: a restic mover per PVC)",
    )
    b.add_argument(
        "--pvc-method",
        action="append",
        default=[],
        metavar="NS/PVC=METHOD",
        help="per-PVC method: filecopy, snapshot, snapshot_export or skip (repeatable)",
    )
    add_mover_args(b)
    b.set_defaults(func=_backup)

    r = sub.add_parser("restore", help="restore a backup's resources into a cluster")
    add_cluster_args(r)
    add_repo_args(r)
    add_output_arg(r)
    r.add_argument("backup", help="backup id, or 'latest' (with --plan)")
    r.add_argument("--plan", help="with backup 'latest': the plan whose newest backup to restore")
    add_allow_suspicious_arg(r)
    r.add_argument("--namespace-mapping", action="append", metavar="OLD=NEW")
    r.add_argument("--storage-class-mapping", action="append", metavar="OLD=NEW")
    r.add_argument("--image-registry-mapping", action="append", metavar="OLD=NEW")
    r.add_argument("-n", "--namespace", action="append", default=[], help="restore only these source namespaces")
    r.add_argument("--include-kind", action="append", default=[])
    r.add_argument("--exclude-kind", action="append", default=[])
    r.add_argument("--resource", action="append", default=[], help="Kind/namespace/name (repeatable)")
    r.add_argument("--remove-node-constraints", action="store_true", help="drop nodeSelector, nodeName, affinity")
    r.add_argument("--remove-tolerations", action="store_true")
    r.add_argument("--reset-node-ports", action="store_true", help="let the target allocate new nodePorts")
    r.add_argument(
        "--existing",
        choices=["skip", "update", "fail"],
        default="skip",
        help="what to do with objects that already exist (default skip)",
    )
    r.add_argument(
        "--refuse-conflicts",
        action="store_true",
        help="refuse before writing when the target has the namespaces or cluster objects",
    )
    r.add_argument("--dry-run", action="store_true", help="print what would be done; write nothing")
    r.add_argument(
        "--same-cluster",
        choices=["auto", "yes", "no"],
        default="auto",
        help="whether the target is the cluster the backup was taken in (CSI snapshots are usable only "
        "there); auto: the backup's cluster name equals --cluster-name",
    )
    add_mover_args(r)
    r.set_defaults(func=_restore)

    bl = sub.add_parser("backups", help="list backups, show one")
    bs = bl.add_subparsers(dest="backups_command", required=True, metavar="ACTION")
    ls = bs.add_parser("list", help="backups in the repository, newest first")
    add_repo_args(ls)
    add_output_arg(ls)
    ls.add_argument("--plan")
    ls.set_defaults(func=_list)
    sh = bs.add_parser("show", help="a backup's manifest and index, or the YAML of one resource")
    add_repo_args(sh)
    add_output_arg(sh)
    sh.add_argument("backup")
    sh.add_argument("--resource", metavar="KIND/[NAMESPACE/]NAME", help="print this resource's YAML")
    sh.add_argument("--kind", help="filter the index by kind")
    sh.add_argument("--show-secrets", action="store_true", help="do not mask Secret data")
    sh.set_defaults(func=_show)

    v = sub.add_parser(
        "verify",
        help="check a backup's checksums, decryption and documents (with --data: its volume data too)",
        epilog="exit codes: 0 verified, 1 the backup's resources fail a check (or a check could not run), "
        "2 bad usage, 3 volume data damaged: the restic repositories holding the backup's PVC data have "
        "damaged or missing pack files (each affected backup and PVC is named; restoring those PVCs fails)",
    )
    add_repo_args(v)
    add_output_arg(v)
    v.add_argument("backup")
    data = v.add_mutually_exclusive_group()
    data.add_argument(
        "--data",
        action="store_true",
        help="also read all volume data back (restic check --read-data on the restic repositories "
        "holding the backup's PVC snapshots) and name every backup and PVC a damaged pack affects",
    )
    data.add_argument(
        "--data-subset",
        metavar="N%|n/t",
        help="like --data, reading a subset of the pack files (restic --read-data-subset), e.g. 10%% or 1/5",
    )
    v.set_defaults(func=_verify)

    rp = sub.add_parser("repo", help="repository commands")
    rs = rp.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    t = rs.add_parser("test", help="write, read and delete a probe object")
    add_repo_args(t)
    add_output_arg(t)
    t.set_defaults(func=_repo_test)
    i = rs.add_parser("init", help="create the repository (its key parameters) if absent")
    add_repo_args(i)
    i.set_defaults(func=_repo_init)


def add_allow_suspicious_arg(p) -> None:
    p.add_argument(
        "--allow-suspicious",
        action="store_true",
        help="with 'latest': also pick a backup the anomaly guard marked suspicious (skipped by default)",
    )


def add_mover_args(p) -> None:
    """Where PVC data moves: the cluster's settings from ``--config`` or flags (flags win)."""
    p.add_argument(
        "--config",
        type=Path,
        metavar="DIR",
        help="ys1000 config dir: with --cluster, the cluster's mover image, concurrency and bandwidth window",
    )
    p.add_argument("--cluster", metavar="NAME", help="the cluster's name in --config clusters.yaml")
    p.add_argument(
        "--cluster-name",
        help="the cluster's name in the repository (default: --cluster, the kubeconfig "
        "context, else the kubeconfig file's name)",
    )
    p.add_argument("--mover-image", help="container image of the data movers")
    p.add_argument("--max-movers", type=int, help="movers running at once")
    p.add_argument("--limit-upload", type=int, metavar="KIB_S", help="movers' upload limit, KiB/s")
    p.add_argument("--limit-download", type=int, metavar="KIB_S", help="movers' download limit, KiB/s")
    p.add_argument("--no-progress", action="store_true", help="no progress line on the terminal")


def _cluster_settings(args):
    if not args.config and not args.cluster:
        return None
    if not (args.config and args.cluster):
        raise UsageError("--config and --cluster go together: the cluster's settings are read from DIR/clusters.yaml")
    from ys1000.config import load_config

    config = load_config(args.config)
    if args.cluster not in config.clusters:
        raise UsageError(
            f"cluster {args.cluster!r} is not defined in {args.config}/clusters.yaml; defined: "
            f"{', '.join(sorted(config.clusters)) or 'none'}"
        )
    return config.clusters[args.cluster]


def _cluster_name(args, kube) -> str:
    return args.cluster_name or args.cluster or kube.name


def _volume_options(args, kube, run_id: str):
    from ys1000.config.specs import cluster_volume_options
    from ys1000.volumes import VolumeOptions

    cluster = _cluster_settings(args)
    name = _cluster_name(args, kube)
    opts = (
        cluster_volume_options(cluster, name, run_id=run_id)
        if cluster
        else VolumeOptions(run_id=run_id, cluster_name=name)
    )
    if args.method:
        opts.method = args.method
    for pair in args.pvc_method:
        key, sep, method = pair.partition("=")
        if not sep or key.count("/") != 1 or method not in ("filecopy", "snapshot", "snapshot_export", "skip"):
            raise UsageError(f"--pvc-method {pair!r}: expected NAMESPACE/PVC=filecopy|snapshot|snapshot_export|skip")
        opts.per_pvc[key] = method  # type: ignore[assignment]
    if args.mover_image:
        opts.image = args.mover_image
    if args.max_movers:
        opts.max_concurrent = args.max_movers
    if args.limit_upload:
        opts.limit_upload_kib = args.limit_upload
    if args.limit_download:
        opts.limit_download_kib = args.limit_download
    return opts


def _restore_volume_options(args, run_id: str):
    from ys1000.config.specs import restore_volume_options_for
    from ys1000.volumes import VolumeRestoreOptions

    cluster = _cluster_settings(args)
    opts = restore_volume_options_for(cluster, run_id=run_id) if cluster else VolumeRestoreOptions(run_id=run_id)
    if args.mover_image:
        opts.image = args.mover_image
    if args.max_movers:
        opts.max_concurrent = args.max_movers
    if args.limit_download:
        opts.limit_download_kib = args.limit_download
    return opts


class _Progress:
    """One updating line on stderr while a terminal watches (never into -o json's stdout)."""

    def __init__(self, args):
        self.on = not args.no_progress and sys.stderr.isatty()
        self.volumes: dict[str, str] = {}
        self.last = ""

    def __call__(self, info: dict) -> None:
        if not self.on:
            return
        phase = info.get("phase")
        if phase in ("resources", "restore"):
            total = info.get("objects_total")
            line = f"{phase}: {info.get('objects_done', 0)}{'/' + str(total) if total else ''} objects"
        elif phase == "volumes" and "volumes_total" in info:
            line = f"volumes: {info['volumes_done']}/{info['volumes_total']} PVCs done (last {info.get('last')})"
        else:
            return
        self.show(line)

    def mover(self, key: str, progress: dict) -> None:
        if self.on:
            self.volumes[key] = (
                f"{human_size(progress.get('bytes_done'), missing='?')}/{human_size(progress.get('bytes_total'), missing='?')}"
            )
            self.show("volumes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.volumes.items())))

    def show(self, line: str) -> None:
        self.last = line
        sys.stderr.write("\r\033[K" + line[:200])
        sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _explain_forbidden(command):
    """A request the cluster refuses (403) ends the command with the API server's message and a
    pointer to the roles, instead of a client error dump (``-v`` still shows the traceback)."""

    @functools.wraps(command)
    def run(args) -> int:
        try:
            return command(args)
        except KubeError as exc:
            if exc.status != 403:
                raise
            raise permission_denied(exc) from exc

    return run


@_explain_forbidden
def _backup(args) -> int:
    from ys1000.volumes.steps import Driver

    _cluster_settings(args)  # bad flags or config fail before anything is opened or written
    guard = _plan_guard(args)
    kube = kube_from(args)
    bid = args.id or f"{args.plan}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    opts = _volume_options(args, kube, run_id=f"cli/{bid}")
    repo = repo_from(args, create=True)
    spec = BackupSpec(
        backup_id=bid,
        plan=args.plan,
        namespaces=args.namespace,
        namespace_globs=args.namespace_glob,
        namespace_selector=args.namespace_selector,
        include_kinds=args.include_kind,
        exclude_kinds=args.exclude_kind,
        label_selector=args.selector,
        scope=args.scope,
        limits=Limits(args.max_namespaces, args.max_pods, args.max_pvcs),
        retention_days=args.retention_days,
        cluster_name=opts.cluster_name,
        anomaly=guard,
    )
    progress = _Progress(args)
    driver = Driver(kube, opts.max_concurrent, on_progress=progress.mover)
    try:
        result = run_backup(kube, repo, spec, volume_opts=opts, driver=driver, progress=progress)
    finally:
        progress.done()
    s = result.summary()
    m = result.manifest
    s["volumes"] = m.volumes
    text = (
        f"backup {s['backup_id']} {s['status']}: {s['objects']} objects ({s['restorable']} restorable) "
        f"from {', '.join(s['namespaces'])}, archive {s['archive_bytes']} bytes"
    )
    for v in m.volumes:
        data = v.get("restic") or {}
        if v.get("error"):
            how = f"FAILED: {v['error']}"
        elif v.get("method") == "skip":
            how = "skipped (method skip)"
        else:
            how = "+".join(k for k in ("csi", "restic") if k in v)
            if data:
                how += f", {data.get('total_files', 0)} files, {human_size(data.get('total_bytes'))}"
        text += f"\n  PVC {v['namespace']}/{v['pvc']}: {how}"
    if m.api_retries:
        text += f"\n  {m.api_retries} API request(s) throttled (429) and sent again"
    if m.scope == "resources" and result.inventory.pvcs:
        text += f"\n  {len(result.inventory.pvcs)} PVC(s) without data: scope 'resources'"
    for w in s["warnings"]:
        text += f"\n  warning: {w}"
    anomaly = m.anomaly or {}
    s["anomaly"] = anomaly
    s["suspicious"] = bool(anomaly.get("suspicious"))
    if s["suspicious"]:
        text += (
            "\n  SUSPICIOUS: this backup's change is far outside the plan's normal range (committed, "
            "but `latest` skips it and retention keeps the newest clean backup until a human confirms it):"
        )
        text += "".join(f"\n    - {r}" for r in anomaly.get("reasons") or [])
    elif anomaly.get("error"):
        text += f"\n  note: anomaly guard: {anomaly['error']}"
    emit(args, s, text)
    if s["suspicious"]:
        return EXIT_SUSPICIOUS  # committed, but neither a plain success nor a failure
    return EXIT_OK if s["status"] == "Completed" else EXIT_PARTIAL


def _plan_guard(args):
    """The anomaly guard of the BackupPlan named ``--plan`` in ``--config`` (defaults otherwise)."""
    if not args.config:
        return None
    from ys1000.config import BackupPlan, load_plans

    _, plans = load_plans(args.config)
    for plan in plans.values():
        if isinstance(plan, BackupPlan) and plan.name == args.plan:
            return plan.anomaly
    return None


def _resolve_backup(repo, backup: str, plan: str | None, allow_suspicious: bool = False) -> str:
    """The backup id; for ``latest``, the suspicious backups passed over are named on stderr."""
    from ys1000.config.specs import resolve_latest

    resolved = resolve_latest(repo, backup, plan, allow_suspicious=allow_suspicious)
    for note in resolved.notes():
        print(f"ys1000: {note}", file=sys.stderr)
    return resolved.backup_id


@_explain_forbidden
def _restore(args) -> int:
    _cluster_settings(args)
    repo = repo_from(args)
    kube = kube_from(args)
    spec = RestoreSpec(
        backup_id=_resolve_backup(repo, args.backup, args.plan, args.allow_suspicious),
        options=RestoreOptions(
            namespace_mapping=parse_mapping(args.namespace_mapping, "--namespace-mapping"),
            storage_class_mapping=parse_mapping(args.storage_class_mapping, "--storage-class-mapping"),
            image_registry_mapping=parse_mapping(args.image_registry_mapping, "--image-registry-mapping"),
            remove_node_constraints=args.remove_node_constraints,
            remove_tolerations=args.remove_tolerations,
            preserve_node_ports=not args.reset_node_ports,
        ),
        namespaces=args.namespace,
        include_kinds=args.include_kind,
        exclude_kinds=args.exclude_kind,
        resources=args.resource,
        existing_policy=args.existing,
        dry_run=args.dry_run,
    )
    if args.refuse_conflicts:
        check_no_conflicts(kube, repo, spec)
    opts = _restore_volume_options(args, run_id=f"cli/{spec.restore_id}")
    same = None if args.same_cluster == "auto" else args.same_cluster == "yes"
    if same is None:
        same = repo.manifest(spec.backup_id).cluster_name == _cluster_name(args, kube)
    progress = _Progress(args)
    try:
        report = run_restore(kube, repo, spec, same_cluster=same, volume_opts=opts, progress=progress)
    finally:
        progress.done()
    lines = [
        f"restore {report.restore_id} of {report.backup_id}{' (dry run)' if report.dry_run else ''}: "
        f"{report.status} " + ", ".join(f"{n} {a}" for a, n in sorted(report.counts.items()))
    ]
    if report.api_retries:
        lines.append(f"  {report.api_retries} API request(s) throttled or failing transiently, sent again")
    for i in report.items:
        where = f"{i.namespace}/" if i.namespace else ""
        lines.append(f"  {i.action:13} {i.kind} {where}{i.name}" + (f"  ({i.reason})" if i.reason else ""))
    for v in report.volumes:
        detail = v.get("reason") or (
            f"from {v.get('from')}"
            + (f", {human_size(v['bytes_restored'])}" if v.get("bytes_restored") is not None else "")
        )
        lines.append(f"  PVC {v['namespace']}/{v['pvc']}: {v['status']} ({detail})")
    emit(args, report.to_json(), "\n".join(lines))
    if report.status == "Completed":
        return EXIT_OK
    return EXIT_FAILED if report.status == "Failed" else EXIT_PARTIAL


def _list(args) -> int:
    entries = repo_from(args).list_backups(args.plan)
    lines = [
        f"{'BACKUP':40} {'PLAN':16} {'CREATED':20} {'STATUS':16} {'ANOMALY':10} {'DRILL':18} {'OBJECTS':>7} "
        f"{'BYTES':>10}  NAMESPACES"
    ]
    for e in entries:
        lines.append(
            f"{e.backup_id:40} {e.plan:16} {e.created:%Y-%m-%d %H:%M:%S} {e.status:16} {anomaly_state(e):10} "
            f"{_drill_state(e.drill):18} {e.total:7} {e.archive_size:10}  {','.join(e.namespaces)}"
        )
    emit(args, [e.model_dump(mode="json") for e in entries], "\n".join(lines) if entries else "no backups")
    return EXIT_OK


def anomaly_state(entry) -> str:
    """``suspicious`` (the anomaly guard marked it, no human confirmed it), ``confirmed`` (a human
    said the change was expected) or ``-``."""
    if entry.suspicious:
        return "suspicious"
    if (entry.anomaly or {}).get("suspicious"):
        return "confirmed"
    return "-"


def _drill_state(drill: dict | None) -> str:
    """``verified (RTO 42s)`` / ``drill failed`` / ``-`` (never drilled)."""
    if not drill:
        return "-"
    if drill.get("state") == "verified":
        return f"verified (RTO {drill.get('rto_seconds') or 0:.0f}s)"
    return "drill failed"


def mask_secret(obj: dict) -> dict:
    if obj.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if obj.get(key):
                obj[key] = {k: "***" for k in obj[key]}
    return obj


def _show(args) -> int:
    repo = repo_from(args)
    if args.resource:
        parts = args.resource.split("/")
        if len(parts) not in (2, 3):
            raise UsageError("--resource KIND/NAME or KIND/NAMESPACE/NAME")
        kind, ns, name = (parts[0], None, parts[1]) if len(parts) == 2 else parts
        entry = next(
            (
                e
                for e in repo.read_index(args.backup)
                if e.kind.lower() == kind.lower() and e.namespace == ns and e.name == name
            ),
            None,
        )
        if entry is None:
            raise LookupError(f"{args.resource} is not in backup {args.backup}")
        obj = repo.get_resource(args.backup, entry.group_resource, ns, name)
        if not args.show_secrets:
            obj = mask_secret(obj)
        emit(args, obj, yaml.safe_dump(obj, sort_keys=False))
        return EXIT_OK
    m = repo.manifest(args.backup)
    index = [e for e in repo.read_index(args.backup) if not args.kind or e.kind.lower() == args.kind.lower()]
    lines = [
        f"backup {m.backup_id} (plan {m.plan}) {m.status}, cluster {m.cluster_name} {m.kubernetes_version}",
        f"  created {m.created:%Y-%m-%d %H:%M:%S}, scope {m.scope}, {m.total} objects, archive {m.archive.size} bytes",
        f"  namespaces: {', '.join(m.namespaces)}",
    ]
    anomaly = m.anomaly or {}
    if anomaly.get("suspicious"):
        review = repo.anomaly_reviews({m.backup_id}).get(m.backup_id) or {}
        state = "confirmed (the change was expected)" if review.get("decision") == "approved" else "SUSPICIOUS"
        if review:
            state += f"; {review.get('decision')} by {review.get('by') or '-'} at {review.get('at')}"
        lines.append(f"  anomaly guard: {state}")
        lines += [f"    - {r}" for r in anomaly.get("reasons") or []]
    lines.append("")
    for e in index:
        where = f"{e.namespace}/" if e.namespace else ""
        lines.append(f"  {e.kind:28} {where}{e.name}" + ("" if e.restore else f"  [not restored: {e.reason}]"))
    emit(args, {"manifest": m.model_dump(mode="json"), "index": [e.to_json() for e in index]}, "\n".join(lines))
    return EXIT_OK


def _verify(args) -> int:
    if args.data_subset:
        from ys1000.volumes.verify import check_subset

        try:
            check_subset(args.data_subset)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    repo = repo_from(args)
    result = repo.verify(args.backup)
    data = {"backup_id": result.backup_id, "objects": result.objects, "ok": result.ok, "checks": result.checks}
    text = (
        f"backup {result.backup_id}: OK ({result.objects} objects, archive {result.archive_size} bytes; "
        f"checksums, decryption and documents verified)"
    )
    if not (args.data or args.data_subset):
        emit(args, data, text)
        return EXIT_OK if result.ok else EXIT_FAILED
    from ys1000.volumes.verify import verify_volume_data

    vr = verify_volume_data(repo, args.backup, subset=args.data_subset)
    data["data"] = vr.to_json()
    data["ok"] = result.ok and vr.ok
    emit(args, data, text + "\n" + _data_text(vr))
    if not result.ok:
        return EXIT_FAILED
    return EXIT_OK if vr.ok else EXIT_PARTIAL


def _data_text(vr) -> str:
    """``verify --data``: one line per PVC of the backup, then every damaged backup/PVC by name."""
    read = "all data read" if vr.read == "all" else f"subset {vr.read} of the pack files read"
    checked = [v for v in vr.volumes if v["status"] != "not-checked"]
    if not vr.repositories:
        lines = [f"volume data: nothing in restic to read ({len(vr.volumes)} PVC(s))"]
    else:
        state = "OK" if vr.ok else "DAMAGED"
        lines = [
            f"volume data: {state} ({len(checked)} PVC(s) in {len(vr.repositories)} restic repository(ies); {read})"
        ]
    for v in vr.volumes:
        key = f"{v['namespace']}/{v['pvc']}"
        sid = (v.get("snapshot_id") or "")[:8]
        if v["status"] == "ok":
            lines.append(f"  PVC {key}: ok (restic snapshot {sid})")
        elif v["status"] == "damaged":
            lines.append(
                f"  PVC {key}: DAMAGED (restic snapshot {sid} needs damaged pack(s) "
                f"{', '.join(p[:12] for p in v['packs'])}; files: {', '.join(v['files'][:5])})"
            )
        else:
            lines.append(f"  PVC {key}: {v['status']} ({v.get('reason', '')})")
    for d in vr.damaged:
        packs = ", ".join(p[:12] for p in d.packs)
        if d.backup_id is None:
            lines.append(
                f"  damaged: restic snapshot {d.snapshot_id[:8]} in {d.repository} (pack(s) {packs}) "
                "belongs to no committed backup"
            )
        else:
            lines.append(
                f"  damaged: backup {d.backup_id} PVC {d.namespace}/{d.pvc} "
                f"(restic snapshot {d.snapshot_id[:8]}, pack(s) {packs}): restoring this PVC fails"
            )
    for r in vr.repositories:
        if r.unreferenced:
            lines.append(
                f"  restic repository {r.repository}: damaged pack(s) {', '.join(p[:12] for p in r.unreferenced)} "
                "referenced by no snapshot (no backup needs them; a prune removes them)"
            )
        if r.unattributed:
            lines.append(
                f"  restic repository {r.repository}: errors not tied to a known pack, so the PVCs "
                f"they affect cannot be named: {'; '.join(e.splitlines()[0] for e in r.errors[:3])}"
            )
    if not vr.ok:
        lines.append(
            "  the damaged PVCs' data cannot be restored from these snapshots; the other PVCs restore; "
            "see `restic repair packs` / `repair snapshots` in restic's troubleshooting guide"
        )
    return "\n".join(lines)


def _repo_init(args) -> int:
    repo = repo_from(args, create=True)
    print(f"repository {repo.store.describe()} ready")
    return EXIT_OK


def _repo_test(args) -> int:
    report = check_connection(make_store(repo_config(args)))
    data = {
        "ok": report.ok,
        "store": report.store,
        "object_lock": report.object_lock,
        "steps_ms": report.steps,
        "warnings": report.warnings,
    }
    emit(
        args,
        data,
        f"repository {report.store}: OK (write, read, delete probe"
        f"{'; Object Lock enabled' if report.object_lock else ''})",
    )
    return EXIT_OK
