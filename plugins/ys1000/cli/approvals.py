"""``ys1000 approvals list``: the human decisions stored in a repository (``approvals/<id>.json``,
written by ``ys1000.airflow.approval``): which cutover, restore or suspicious backup was approved,
rejected or left unanswered, by whom, when and why — readable while Airflow is down."""

from __future__ import annotations

from ys1000.cli.common import add_output_arg, add_repo_args, emit, repo_from

KINDS = ("cutover", "restore", "anomaly")


def register(sub) -> None:
    p = sub.add_parser("approvals", help="human decisions (cutovers, restores, suspicious backups)")
    ps = p.add_subparsers(dest="approvals_command", required=True, metavar="ACTION")
    ls = ps.add_parser("list", help="decisions in the repository, newest first")
    add_repo_args(ls)
    add_output_arg(ls)
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--plan")
    ls.add_argument("--about", metavar="ID", help="only decisions about this restore, migration run or backup")
    ls.set_defaults(func=_list)


def _list(args) -> int:
    records = [
        r
        for r in repo_from(args).approvals(subject=args.about, kind=args.kind)
        if args.plan is None or r.get("plan") == args.plan
    ]
    lines = [f"{'DECIDED (UTC)':20} {'KIND':8} {'PLAN':18} {'DECISION':10} {'BY':12} {'ABOUT':44} COMMENT"]
    for r in records:
        at = str(r.get("at") or "")[:19].replace("T", " ")
        comment = " ".join(str(r.get("comment") or "").split())
        lines.append(
            f"{at:20} {r.get('kind') or '-':8} {r.get('plan') or '-':18} {r.get('decision') or '-':10} "
            f"{r.get('by') or '-':12} {r.get('about') or r.get('subject') or '-':44} {comment}".rstrip()
        )
    emit(args, records, "\n".join(lines) if records else "no decisions")
    return 0
