"""``python -m ys1000.mover``: move one volume's data between a mounted directory and restic.

Runs inside a mover Job (or locally). The restic repository and its credentials come from the
environment (``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD``, ``AWS_*``), which the Job takes from a
Secret the run creates and deletes — never from the command line or the pod spec.

Output protocol (stdout, one JSON object per line, read back by the operator from the pod log):
``{"ys1000": "progress", "bytes_done": …, "bytes_total": …, "files_done": …, "files_total": …}``
at most every few seconds, and exactly one final ``{"ys1000": "result", "ok": true, …}`` (or
``"ok": false`` with ``"error"``). Exit code 0 only when the result is ok.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from ys1000.volumes import restic

PROGRESS_EVERY = 2.0


def emit(kind: str, **data) -> None:
    sys.stdout.write(json.dumps({"ys1000": kind, **data}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _progress_printer():
    last = [0.0]

    def on_message(msg: dict) -> None:
        if msg.get("message_type") != "status" or time.monotonic() - last[0] < PROGRESS_EVERY:
            return
        last[0] = time.monotonic()
        emit(
            "progress",
            bytes_done=msg.get("bytes_done", 0),
            bytes_total=msg.get("total_bytes", 0),
            files_done=msg.get("files_done", 0),
            files_total=msg.get("total_files", 0),
            percent=round(100 * msg.get("percent_done", 0), 1),
        )

    return on_message


def _limits(args) -> list[str]:
    out = []
    if args.limit_upload:
        out += ["--limit-upload", str(args.limit_upload)]
    if args.limit_download:
        out += ["--limit-download", str(args.limit_download)]
    return out


class Terminated(Exception):
    """The pod is being stopped (SIGTERM): restic is stopped cleanly and the result says so."""


def _terminated(signum, frame):
    raise Terminated("mover stopped by SIGTERM (pod deleted or task cancelled)")


def _environment() -> dict[str, str]:
    # restic's --json status comes 60 times a second by default; we report every PROGRESS_EVERY
    return {"RESTIC_PROGRESS_FPS": str(1 / PROGRESS_EVERY), **os.environ}


def identity_host(identity: list[str]) -> str:
    """restic's ``--host`` for a volume: its identity (namespace, pvc).

    restic picks a backup's parent (for change detection) as the newest snapshot with the same
    host and path; the path is always the mount point, so the host must name the volume — or
    two PVCs of one namespace would be each other's parents. Using restic's own lookup instead
    of a ``restic snapshots`` call first saves a whole repository open (a key derivation).
    """
    return "ys1000:" + ",".join(sorted(identity)) if identity else "ys1000"


def backup(args) -> dict:
    env = _environment()
    if not os.path.isdir(args.source):
        raise restic.ResticError(f"source {args.source} is not a directory (is the volume mounted?)")
    if not os.listdir(args.source):
        # restic refuses an empty snapshot; an empty volume is recorded as such and restores to empty
        return {
            "snapshot_id": None,
            "empty": True,
            "files_new": 0,
            "files_changed": 0,
            "files_unmodified": 0,
            "total_files": 0,
            "total_bytes": 0,
            "bytes_added": 0,
            "bytes_added_packed": 0,
        }
    cmd = ["backup", ".", "--host", args.host or identity_host(args.identity), *_limits(args)]
    for tag in [*args.identity, *args.tag]:
        cmd += ["--tag", tag]
    if args.parent:
        cmd += ["--parent", args.parent]
    # back up "." from inside the volume, so snapshot paths do not depend on the mount point
    try:
        messages = restic.run_json(
            cmd, env, _progress_printer(), cwd=args.source, backend_retry_seconds=args.backend_retry_seconds
        )
    except restic.ResticError as exc:
        if not restic.missing_repository(str(exc)):
            raise
        # the engine creates a repository before its movers run; a mover started on its own does it here
        restic.ensure_repository(env)
        messages = restic.run_json(
            cmd, env, _progress_printer(), cwd=args.source, backend_retry_seconds=args.backend_retry_seconds
        )
    s = restic.summary_of(messages)
    return {
        "snapshot_id": s["snapshot_id"],
        "files_new": s.get("files_new", 0),
        "files_changed": s.get("files_changed", 0),
        "files_unmodified": s.get("files_unmodified", 0),
        "total_files": s.get("total_files_processed", 0),
        "total_bytes": s.get("total_bytes_processed", 0),
        "bytes_added": s.get("data_added", 0),
        "bytes_added_packed": s.get("data_added_packed", 0),
    }


def restore(args) -> dict:
    env = _environment()
    os.makedirs(args.target, exist_ok=True)
    cmd = ["restore", f"{args.snapshot}:.", "--target", args.target, *_limits(args)]
    if args.delete:
        cmd.append("--delete")  # make an existing volume equal to the snapshot (incremental migration)
    if args.verify:
        # restic hashes every restored file's blobs again and compares them with the snapshot's
        # (content addresses recorded at backup time); a mismatch fails the restore
        cmd.append("--verify")
    messages = restic.run_json(cmd, env, _progress_printer(), backend_retry_seconds=args.backend_retry_seconds)
    s: dict[str, Any] = next((m for m in reversed(messages) if m.get("message_type") == "summary"), {})
    return {
        "snapshot_id": args.snapshot,
        "total_files": s.get("total_files", 0),
        "files_restored": s.get("files_restored", 0),
        "total_bytes": s.get("total_bytes", 0),
        "bytes_restored": s.get("bytes_restored", 0),
        "verified": bool(args.verify),
    }


def forget(args) -> dict:
    env = dict(os.environ)
    cmd = ["forget", *args.snapshot]
    if args.prune:
        cmd.append("--prune")
    restic.run_json(cmd, env)
    return {"forgotten": args.snapshot, "pruned": bool(args.prune)}


def check(args) -> dict:
    env = dict(os.environ)
    restic.run_json(["check"], env)
    return {"check": "ok"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ys1000.mover", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--source", required=True)
    b.add_argument("--tag", action="append", default=[], help="KEY=VALUE (plan, backup, namespace, pvc)")
    b.add_argument("--host", help="restic host (default: from --identity)")
    b.add_argument("--parent", help="snapshot to compare against (faster change detection)")
    b.add_argument(
        "--identity",
        action="append",
        default=[],
        help="KEY=VALUE naming the volume (namespace, pvc): becomes the restic host, so the "
        "volume's newest snapshot is the parent; also added as tags",
    )
    r = sub.add_parser("restore")
    r.add_argument("--target", required=True)
    r.add_argument("--snapshot", required=True)
    r.add_argument("--delete", action="store_true", help="remove files not in the snapshot")
    r.add_argument(
        "--verify", action="store_true", help="read the restored files back and check them against the snapshot"
    )
    for sp in (b, r):
        sp.add_argument("--limit-upload", type=int, help="KiB/s")
        sp.add_argument("--limit-download", type=int, help="KiB/s")
        sp.add_argument(
            "--backend-retry-seconds",
            type=int,
            default=restic.BACKEND_RETRY_SECONDS,
            help="give up when S3 keeps failing this long with no progress (restic alone: 15 min)",
        )
    f = sub.add_parser("forget")
    f.add_argument("snapshot", nargs="+")
    f.add_argument("--prune", action="store_true")
    sub.add_parser("check")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = {"backup": backup, "restore": restore, "forget": forget, "check": check}[args.command](args)
    except Exception as exc:
        emit("result", ok=False, command=args.command, error=str(exc))
        return 1
    emit("result", ok=True, command=args.command, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
