"""Issue 16, fault matrix — network faults between the product and S3, made by a real TCP fault
proxy (toxiproxy) in front of the sandbox's S3.

"Mid-upload" is deterministic: a ``limit_data`` toxic closes every connection once N bytes went
up it, so an upload larger than N is cut mid-way on every attempt while small requests pass; the
test waits (``wait_until`` on toxiproxy's byte counters) until a connection was cut, then takes
the proxy down (connection refused from then on) or heals it. No sleeps.

Each test ends with the proxy healthy again and shows the next run succeeding."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest

from ys1000.backup import BackupSpec, run_backup
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES, core
from ys1000.kube.jobs import JOBS, SECRETS
from ys1000.repository import StorageError
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore
from ys1000.volumes import VolumeOptions
from ys1000.volumes import restic as resticmod
from ys1000.waiting import wait_until
from ys1000_dev.toxiproxy import Proxy

from volumes.volume_helpers import bound_pvc, pv_dir, tree_digest

PLAN = "faults"
MOVERS = "ys1000.io/component=mover"
CONFIGMAPS = core("configmaps", "ConfigMap")


class Background:
    """``fn()`` in a thread; ``outcome()`` waits and returns ``(result, exception)``."""

    def __init__(self, fn: Callable[[], Any]):
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def done(self) -> bool:
        return not self.thread.is_alive()

    def outcome(self, timeout: float) -> tuple[Any, BaseException | None]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        return self.result, self.error


def cut(proxy: Proxy, nbytes: int) -> Callable[[Background], None]:
    """Arm a cut: from now on every connection through ``proxy`` is closed once ``nbytes`` went
    up it (a ``limit_data`` toxic), so an upload larger than that is cut mid-way, every
    attempt. Returns ``until_cut(job)``: waits until a connection was cut — toxiproxy counts a
    connection's bytes when it ends, and only the cut one can carry ``nbytes`` — while ``job``
    runs (or has already failed on its own)."""
    start = proxy.traffic()
    proxy.limit_data(nbytes)

    def until_cut(job: Background) -> None:
        wait_until(lambda: proxy.traffic() - start >= nbytes or job.done(), timeout=120, interval=0.05, what="the cut")

    return until_cut


def keys(sandbox_s3, bucket: str, prefix: str) -> list[str]:
    """What S3 itself holds under ``prefix`` (a direct client, not through the proxy)."""
    pages = sandbox_s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def spec(bid: str, ns: str) -> BackupSpec:
    return BackupSpec(backup_id=bid, plan=PLAN, namespaces=[ns], cluster_name="source")


def random_file(path: Path, mib: int, seed: int) -> None:
    rnd = random.Random(seed)  # incompressible, so the bytes on the wire are the bytes on disk
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(rnd.randbytes(1 << 20))


# --------------------------------------------------------------------------------------- (a)


def test_s3_down_mid_archive_upload_fails_naming_s3_and_keeps_nothing(
    source, namespace, proxied_repo, s3_proxy, sandbox_s3
):
    repo, cfg, bucket = proxied_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    rnd = random.Random(16)
    for i in range(3):  # ≈ 2 MiB of incompressible documents: the archive is ≈ 2 MiB too
        data = {f"k{j}": rnd.randbytes(96 << 10).hex() for j in range(4)}
        kube.create(CONFIGMAPS, {"metadata": {"name": f"big-{i}"}, "data": data}, namespace)
    until_cut = cut(s3_proxy, 256 << 10)  # the archive (≈ 1 MiB) is cut after its first 256 KiB
    job = Background(lambda: run_backup(kube, repo, spec("a-1", namespace)))
    until_cut(job)
    s3_proxy.down()  # and S3 stays unreachable: the engine's retries and its clean-up find it down
    _, error = job.outcome(timeout=120)

    # the user sees S3 named: endpoint and bucket, and what was being written
    assert isinstance(error, StorageError), repr(error)
    assert error.kind == "unreachable"
    message = str(error)
    assert message.startswith("write 'backups/a-1/resources.tar.gz.enc' failed: "), message
    assert f"S3 endpoint {s3_proxy.url} (bucket {bucket!r}) is unreachable" in message, message
    # nothing committed, nothing half-written kept
    assert keys(sandbox_s3, bucket, "r/backups/") == []
    assert keys(sandbox_s3, bucket, "r/catalog/") == []

    # S3 back: nothing to clean, and the next backup succeeds
    s3_proxy.clear()
    assert repo.list_backups(PLAN) == []
    assert repo.cleanup_incomplete(timedelta(0)).deleted == []
    result = run_backup(kube, repo, spec("a-2", namespace))
    assert result.manifest.status == "Completed"
    assert result.manifest.counts.get("ConfigMap", 0) >= 3
    assert repo.verify("a-2").ok
    assert [e.backup_id for e in repo.list_backups(PLAN)] == ["a-2"]


def test_s3_down_after_capture_keeps_no_manifest_and_the_pending_backup_is_cleaned_later(
    source, namespace, proxied_repo, s3_proxy, sandbox_s3
):
    """S3 goes away right after the resources were uploaded (the pipeline's ``captured`` step),
    so neither the commit nor the clean-up can reach it: the backup fails with its own error
    naming S3 (the failed clean-up is a note, not the error), no manifest, and the pending
    backup left in the bucket is removed by the incomplete-backup cleanup once S3 is back."""
    repo, cfg, bucket = proxied_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    kube.create(CONFIGMAPS, {"metadata": {"name": "settings"}, "data": {"a": "b"}}, namespace)

    def progress(p: dict) -> None:
        if p.get("phase") == "captured":
            s3_proxy.down()

    with pytest.raises(StorageError) as caught:
        run_backup(kube, repo, spec("a2-1", namespace), progress=progress)
    error = caught.value
    assert error.kind == "unreachable"
    assert error.operation == "read" and error.key == "backups/a2-1/pending.json", str(error)  # the verify step
    assert f"S3 endpoint {s3_proxy.url} (bucket {bucket!r}) is unreachable" in str(error)
    (note,) = error.__notes__
    assert "incomplete backup a2-1 could not be removed now" in note and "removes it later" in note, note
    kept = keys(sandbox_s3, bucket, "r/backups/a2-1/")
    names = ("index-map.json", "index.jsonl.gz", "pending.json", "resources.tar.gz.enc")
    assert kept == [f"r/backups/a2-1/{n}" for n in names]
    assert keys(sandbox_s3, bucket, "r/catalog/") == []

    s3_proxy.up()
    assert repo.list_backups(PLAN) == []  # never listed, never restorable
    assert repo.cleanup_incomplete(timedelta(0)).deleted == ["a2-1"]
    assert keys(sandbox_s3, bucket, "r/backups/") == []
    result = run_backup(kube, repo, spec("a2-2", namespace))
    assert result.manifest.status == "Completed" and repo.verify("a2-2").ok
    assert [e.backup_id for e in repo.list_backups(PLAN)] == ["a2-2"]


# --------------------------------------------------------------------------------------- (b)


def test_s3_cut_mid_volume_upload_restic_retries_and_next_backup_dedups(
    source, namespace, proxied_repo, s3_proxy, sandbox_s3
):
    """S3 drops every connection while the mover's restic uploads the PVC's data, then comes
    back: restic's own retry re-sends the cut pack, the backup is Completed and consistent, no
    restic lock is left, and the next backup uploads (almost) nothing."""
    repo, cfg, bucket = proxied_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    data = bound_pvc(kube, namespace, "data")
    random_file(data / "blob.bin", 3, seed=161)
    size = 3 << 20

    first_sent = s3_proxy.traffic()
    until_cut = cut(s3_proxy, 1536 << 10)  # restic's pack (≈ 3 MiB) is cut half-way
    job = Background(lambda: run_backup(kube, repo, spec("b-1", namespace), volume_opts=VolumeOptions(run_id="b1")))
    until_cut(job)
    assert not job.done(), repr(job.error)
    s3_proxy.clear()  # S3 whole again: restic's next attempt goes through
    result, error = job.outcome(timeout=300)
    assert error is None, repr(error)
    sent = s3_proxy.traffic() - first_sent
    assert sent >= size + (1536 << 10) - (256 << 10), f"only {sent} bytes went up: was the pack really re-sent?"

    assert result.manifest.status == "Completed", result.manifest.warnings
    (vol,) = result.manifest.volumes
    assert vol.get("error") is None and vol["restic"]["total_bytes"] >= size
    assert size <= vol["restic"]["bytes_added"] < size + (64 << 10)  # counted once, not per attempt
    assert list(kube.list(JOBS, namespace, label_selector=MOVERS)) == []
    assert list(kube.list(SECRETS, namespace, label_selector=MOVERS)) == []
    restic_repo = f"r/restic/source/{namespace}/"
    assert keys(sandbox_s3, bucket, restic_repo + "locks/") == []
    direct = cfg.model_copy(update={"endpoint_url": sandbox_s3.endpoint_url})
    check = subprocess.run(
        [resticmod.binary(), "check"],
        env={**os.environ, **resticmod.target_for(direct, repo.restic_password(), "source", namespace).environment()},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr

    s3_proxy.clear()
    second = run_backup(kube, repo, spec("b-2", namespace), volume_opts=VolumeOptions(run_id="b2"))
    (vol2,) = second.manifest.volumes
    assert second.manifest.status == "Completed"
    assert vol2["restic"]["bytes_added"] < 64 << 10, vol2["restic"]  # the data is there already
    assert [e.backup_id for e in repo.list_backups(PLAN)] == ["b-2", "b-1"]


def test_s3_down_mid_volume_upload_fails_naming_s3_and_the_pvc(source, namespace, proxied_repo, s3_proxy, sandbox_s3):
    repo, cfg, bucket = proxied_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    data = bound_pvc(kube, namespace, "data")
    random_file(data / "blob.bin", 3, seed=162)
    until_cut = cut(s3_proxy, 1536 << 10)
    # restic alone retries S3 for 15 min; the mover gives it backend_retry_seconds with no progress
    opts = VolumeOptions(run_id="bh1", backend_retry_seconds=10)
    job = Background(lambda: run_backup(kube, repo, spec("bh-1", namespace), volume_opts=opts))
    until_cut(job)
    s3_proxy.down()
    _, error = job.outcome(timeout=300)  # S3 stays down: nothing can be committed
    assert error is not None
    said = "\n".join([str(error), *getattr(error, "__notes__", [])])  # what the CLI and the task log print
    assert "S3 endpoint" in str(error) and f"PVC {namespace}/data: " in said and "kept failing" in said, said
    assert keys(sandbox_s3, bucket, "r/backups/bh-1/manifest.json") == []
    assert keys(sandbox_s3, bucket, "r/catalog/") == []
    s3_proxy.clear()
    assert repo.cleanup_incomplete(timedelta(0)).errors == {}
    assert keys(sandbox_s3, bucket, "r/backups/") == []
    second = run_backup(kube, repo, spec("bh-2", namespace), volume_opts=VolumeOptions(run_id="bh2"))
    (vol,) = second.manifest.volumes
    assert second.manifest.status == "Completed"
    # restic indexes its packs every 10 minutes of upload and at the end: what an abandoned attempt
    # sent before its last index write is reused, this small attempt's packs were never indexed,
    # so the data is sent once more — and counted once
    assert (3 << 20) <= vol["restic"]["bytes_added"] < (3 << 20) + (64 << 10), vol["restic"]


# --------------------------------------------------------------------------------------- (c)


def test_slow_s3_backup_completes_and_restores_byte_identical(source, namespace, proxied_repo, s3_proxy):
    repo, cfg, bucket = proxied_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    data = bound_pvc(kube, namespace, "data")
    random_file(data / "blob.bin", 2, seed=163)
    (data / "notes").mkdir()
    (data / "notes" / "a.txt").write_text("slow but sure\n")
    digest = tree_digest(data)
    s3_proxy.latency(500)  # every answer of S3 half a second late
    s3_proxy.bandwidth(1024, stream="upstream")  # 1 MiB/s each way
    s3_proxy.bandwidth(1024, stream="downstream")

    before = s3_proxy.traffic()
    result = run_backup(kube, repo, spec("c-1", namespace), volume_opts=VolumeOptions(run_id="c1"))
    assert result.manifest.status == "Completed", result.manifest.warnings
    assert s3_proxy.traffic() - before >= 2 << 20  # the data went up through the slow link

    restored = f"{namespace}-r"
    try:
        report = run_restore(
            kube,
            repo,
            RestoreSpec(backup_id="c-1", options=RestoreOptions(namespace_mapping={namespace: restored})),
            same_cluster=True,
        )
        assert report.status == "Completed", report.failed
        assert tree_digest(pv_dir(kube, restored, "data")) == digest
    finally:
        s3_proxy.clear()
        kube.delete(NAMESPACES, restored)
