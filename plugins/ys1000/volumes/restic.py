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
import shutil
import subprocess
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


def run_json(
    args: list[str], env: dict[str, str], on_message: Callable[[dict], None] | None = None, cwd: str | None = None
) -> list[dict]:
    """Run ``restic --json ARGS``; feed each JSON message to ``on_message``; return them all.

    Non-JSON output (restic prints some plain lines even with --json) is kept for the error text.
    """
    cmd = [binary(), "--json", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}, cwd=cwd
    )
    messages: list[dict] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
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
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0:
        # with --json, restic reports a fatal error as an exit_error message on stdout
        fatal = " ".join(m.get("message", "") for m in messages if m.get("message_type") == "exit_error")
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
