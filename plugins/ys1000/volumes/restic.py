"""restic, as the product uses it: where a volume's repository lives, and running restic with JSON.

restic does the volume-data work (chunking, dedup, encryption, incremental uploads); this module
only builds its environment and command lines and reads its ``--json`` output. One restic
repository per source cluster and namespace, under the backup repository's prefix
(``<prefix>/restic/<cluster>/<namespace>``): PVCs of a namespace deduplicate against each other
and against earlier backups, and a prune in one namespace never locks another.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # the mover imports this module; it must not load boto3 through the repository
    from ys1000.repository import RepositoryConfig


class ResticError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResticTarget:
    """Everything restic needs to reach one restic repository (secrets included: never log it)."""

    repository: str  # RESTIC_REPOSITORY
    password: str
    env: dict[str, str]  # credentials for the backend (AWS_*)

    def environment(self) -> dict[str, str]:
        return {"RESTIC_REPOSITORY": self.repository, "RESTIC_PASSWORD": self.password, **self.env}


def restic_path(cluster: str, namespace: str) -> str:
    """Key prefix of a namespace's restic repository, relative to the backup repository's prefix."""
    from ys1000.repository import layout  # engine side only (see the import note above)

    return (
        layout.restic_prefix() + f"{layout.check_segment(cluster, 'cluster name')}/"
        f"{layout.check_segment(namespace, 'namespace')}/"
    )


def target_for(config: RepositoryConfig, password: str, cluster: str, namespace: str) -> ResticTarget:
    return target_at(config, password, restic_path(cluster, namespace))


def target_at(config: RepositoryConfig, password: str, rel_path: str) -> ResticTarget:
    """The restic repository at ``rel_path`` (as recorded in a manifest) under the repository's prefix."""
    rel = rel_path.strip("/")
    prefix = config.prefix.strip("/")
    key = f"{prefix}/{rel}" if prefix else rel
    if config.type == "local":
        assert config.path is not None  # a local repository has one
        return ResticTarget(str(Path(config.path) / key), password, {})
    endpoint = (config.endpoint_url or f"https://s3.{config.region or 'us-east-1'}.amazonaws.com").rstrip("/")
    env = {"AWS_DEFAULT_REGION": config.region or "us-east-1"}
    if config.access_key:
        env["AWS_ACCESS_KEY_ID"] = config.access_key
    if config.secret_key is not None:
        env["AWS_SECRET_ACCESS_KEY"] = config.secret_key.get_secret_value()
    return ResticTarget(f"s3:{endpoint}/{config.bucket}/{key}", password, env)


def binary() -> str:
    found = os.environ.get("RESTIC_BINARY") or shutil.which("restic")
    if not found:
        raise ResticError("restic is not installed (PATH or $RESTIC_BINARY); `make restic` builds it into bin/")
    return found


# restic retries a failing backend for 15 minutes before it gives up (restic 0.18); a mover gives
# it this long instead, then fails naming the backend, so a PVC is reported in bounded time
BACKEND_RETRY_SECONDS = 300
# a failing streak ends when restic has had no backend error for this long (its longest backoff
# is about a minute) or its status shows progress
STREAK_QUIET_SECONDS = 90
_RETRYING = re.compile(r"returned error, retrying after")


def run_json(
    args: list[str],
    env: dict[str, str],
    on_message: Callable[[dict], None] | None = None,
    cwd: str | None = None,
    backend_retry_seconds: float | None = None,
) -> list[dict]:
    """Run ``restic --json ARGS``; feed each JSON message to ``on_message``; return them all.

    Non-JSON output (restic prints some plain lines even with --json) is kept for the error text.
    With ``backend_retry_seconds`` (the movers' backup and restore): when restic keeps retrying
    its backend (S3 unreachable) that long with no progress in between, it is stopped and the
    error names the repository and the last failure. (forget, prune and check show no byte
    progress, so they keep restic's own 15 minutes.)
    """
    cmd = [binary(), "--json", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}, cwd=cwd
    )
    messages: list[dict] = []
    stderr: deque[str] = deque(maxlen=200)  # the tail is what an error shows
    # the current failing streak: "since" its first backend error, "last" error time, "error"
    retrying: dict[str, float | str] = {}
    gave_up = threading.Event()

    def read_stderr() -> None:  # read as it comes: minutes of retry warnings would fill the pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line)
            if _RETRYING.search(line):
                now = time.monotonic()
                last = retrying.get("last")
                if isinstance(last, float) and now - last > STREAK_QUIET_SECONDS:
                    retrying.pop("since", None)  # an earlier, recovered streak
                retrying.setdefault("since", now)
                retrying.update(last=now, error=line.strip())

    def watchdog() -> None:
        while proc.poll() is None:
            since, last, now = retrying.get("since"), retrying.get("last"), time.monotonic()
            if isinstance(since, float) and isinstance(last, float) and now - last <= STREAK_QUIET_SECONDS:
                if backend_retry_seconds is not None and now - since > backend_retry_seconds:
                    gave_up.set()
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:  # e.g. stuck removing its lock from a dead S3
                        proc.kill()
                    return
            time.sleep(0.5)

    reader = threading.Thread(target=read_stderr, name="restic-stderr", daemon=True)
    reader.start()
    if backend_retry_seconds is not None:
        threading.Thread(target=watchdog, name="restic-watchdog", daemon=True).start()
    assert proc.stdout is not None
    done = -1
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            progress = msg.get("bytes_done", msg.get("bytes_restored", -1))
            if progress > done:  # progress: the backend answers again
                done = progress
                retrying.pop("since", None)
            messages.append(msg)
            if on_message:
                on_message(msg)
    except BaseException:
        # stopped (the mover's SIGTERM): let restic remove its lock before we go, or the
        # container's end kills it mid-way and leaves a stale lock that blocks check and prune
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if proc.wait() != 0:
        reader.join(timeout=5)
        if gave_up.is_set():
            where = env.get("RESTIC_REPOSITORY", "the repository")
            raise ResticError(
                f"restic {args[0]} gave up: the backend of {where} kept failing for "
                f"{backend_retry_seconds:.0f} s with no progress (S3 unreachable?); last: {retrying.get('error')}"
            )
        # with --json, restic reports a fatal error as an exit_error message on stdout
        fatal = " ".join(m.get("message", "") for m in messages if m.get("message_type") == "exit_error")
        err = "".join(stderr)
        detail = "\n".join(t for t in (fatal.strip(), err.strip()) if t)
        raise ResticError(f"restic {args[0]} failed (exit {proc.returncode}): {detail[-1500:]}")
    return messages


def ensure_repository(env: dict[str, str]) -> None:
    """``restic init`` unless the repository already exists (concurrent movers may race here)."""
    probe = subprocess.run([binary(), "cat", "config"], env={**os.environ, **env}, capture_output=True, text=True)
    if probe.returncode == 0:
        return
    init = subprocess.run([binary(), "init"], env={**os.environ, **env}, capture_output=True, text=True)
    if init.returncode != 0 and "already" not in init.stderr and "exists" not in init.stderr:
        raise ResticError(f"restic init failed: {init.stderr.strip()[-1500:]}")


def missing_repository(error: str) -> bool:
    """Whether a restic error says there is no repository at the location (vs. any other failure)."""
    return "Is there a repository at the following location" in error or "repository does not exist" in error


def summary_of(messages: list[dict]) -> dict:
    for msg in reversed(messages):
        if msg.get("message_type") == "summary":
            return msg
    raise ResticError("restic printed no summary")


def snapshots(env: dict[str, str], tags: list[str] | None = None) -> Iterator[dict]:
    args = ["snapshots"]
    for t in tags or []:
        args += ["--tag", t]
    out = subprocess.run([binary(), "--json", *args], env={**os.environ, **env}, capture_output=True, text=True)
    if out.returncode != 0:
        raise ResticError(f"restic snapshots failed: {out.stderr.strip()[-1500:]}")
    yield from json.loads(out.stdout or "[]")


# -- checking a repository's data (``ys1000 verify --data``; engine side, see ys1000.volumes.verify)

PACK_IN_ERROR = re.compile(r"\bpack ([0-9a-f]{64})\b")


@dataclass
class CheckResult:
    """What ``restic check`` found: damaged (or missing) pack files and the errors it printed."""

    ok: bool
    damaged_packs: list[str]
    errors: list[str]  # restic's error lines (its repair advice left out)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary(), "--json", *args], env={**os.environ, **env}, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _fatal(what: str, proc: subprocess.CompletedProcess) -> ResticError:
    msgs = _json_lines(proc.stdout) + _json_lines(proc.stderr)
    fatal = " ".join(m.get("message", "") for m in msgs if m.get("message_type") == "exit_error").strip()
    plain = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.lstrip().startswith("{")).strip()
    return ResticError(f"restic {what} failed (exit {proc.returncode}): {(fatal or plain)[-1500:]}")


def check(env: dict[str, str], read_data: str | None = None) -> CheckResult:
    """``restic check``: the structure always; with ``read_data`` "all" every pack file is
    downloaded and every blob decrypted and hashed, otherwise the subset restic's
    ``--read-data-subset`` takes ("n/t", "x%" or a size such as "500M").

    Damage is a result, not an exception; a check that could not run (no repository, locked by a
    running backup or prune, wrong password, unreachable) raises ``ResticError``.
    """
    args = ["check"]
    if read_data == "all":
        args.append("--read-data")
    elif read_data:
        args.append(f"--read-data-subset={read_data}")
    proc = _run(args, env)
    out, err = _json_lines(proc.stdout), _json_lines(proc.stderr)
    summary = next((m for m in reversed(out + err) if m.get("message_type") == "summary"), None)
    if proc.returncode == 0:
        return CheckResult(True, [], [])
    if summary is None or not summary.get("num_errors"):
        raise _fatal("check", proc)
    packs = list(summary.get("broken_packs") or [])
    errors = []
    for m in err + out:
        if m.get("message_type") != "error":
            continue
        text = (m.get("message") or "").strip()
        # restic's advice (troubleshooting guide, "restic repair …") names no new damage
        if not text or "restic repair" in text or "troubleshooting" in text or "can be caused by" in text:
            continue
        errors.append(text)
        packs += PACK_IN_ERROR.findall(text)  # e.g. "pack <id>: does not exist" (not in broken_packs)
    return CheckResult(False, sorted(set(packs)), errors)


def pack_blobs(env: dict[str, str], packs: set[str]) -> dict[str, list[tuple[str, str]]]:
    """pack id → its blobs as ``(type, blob id)``, from the repository's index (not from the pack
    files: a damaged pack's own header may not be readable)."""
    proc = _run(["list", "index"], env)
    if proc.returncode != 0:
        raise _fatal("list index", proc)
    found: dict[str, list[tuple[str, str]]] = {}
    for index_id in proc.stdout.split():
        if len(found) == len(packs):
            break
        cat = _run(["cat", "index", index_id], env)
        if cat.returncode != 0:
            raise _fatal("cat index", cat)
        for pack in json.loads(cat.stdout).get("packs") or []:
            if pack["id"] in packs:
                found.setdefault(pack["id"], []).extend((b["type"], b["id"]) for b in pack.get("blobs") or [])
    return found


def find_blobs(env: dict[str, str], ids: list[str], kind: str = "blob") -> list[dict]:
    """``restic find --blob`` (data blobs) or ``--tree`` (tree blobs): where each is referenced,
    ``{"snapshot", "path", "id", …}`` per match, in every snapshot of the repository."""
    out: list[dict] = []
    for i in range(0, len(ids), 500):  # keep command lines short
        proc = _run(["find", f"--{kind}", *ids[i : i + 500]], env)
        text = proc.stdout.strip()
        if proc.returncode != 0 and not text.startswith("["):
            raise _fatal("find", proc)
        out += json.loads(text or "[]")
    return out
