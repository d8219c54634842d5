"""Volume data: a ys1000 file-copy backup and restore against raw restic, in the same run.

Dataset (issue 5): 1 GiB = 1 × 512 MiB + 400 × 1 MiB + 20,000 × 4 KiB (``YS1000_BENCH_SCALE``
shrinks it, e.g. 0.25 for a quick look). Floors: ``restic backup`` of the same directory to the
same S3 (its own repository), and ``restic restore`` of that snapshot. Targets: throughput ratio
≥ 0.9 for backup and restore; an incremental backup after a 1 % change sends ≤ 2 % of the bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from ys1000.backup import BackupSpec
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES, PVCS
from ys1000.repository import RepositoryConfig, open_repository
from ys1000.restore import RestoreOptions, RestoreSpec
from ys1000.sandbox.s3 import S3Endpoint
from ys1000.volumes import VolumeOptions, restic
from ys1000.waiting import wait_until
from ys1000.workflows import backup_with_volumes, restore_with_volumes


def make_dataset(root: Path, scale: float) -> int:
    rnd = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(int(512 * scale)):
            f.write(rnd.randbytes(1 << 20))
    (root / "mid").mkdir(exist_ok=True)
    for i in range(int(400 * scale)):
        (root / "mid" / f"m{i:04d}").write_bytes(rnd.randbytes(1 << 20))
    for i in range(int(20000 * scale)):
        d = root / "small" / f"d{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"s{i:05d}").write_bytes(rnd.randbytes(4096))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def change_one_percent(root: Path, total: int) -> int:
    changed = 0
    for p in sorted((root / "mid").iterdir()):
        if changed >= total // 100:
            break
        p.write_bytes(os.urandom(p.stat().st_size))
        changed += p.stat().st_size
    return changed


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(sandbox: dict, workdir: Path) -> dict:
    scale = float(os.environ.get("YS1000_BENCH_SCALE", "1"))
    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    bucket = s3.new_bucket("bench-volumes")
    kube = Kube.from_kubeconfig(sandbox["clusters"]["source"]["kubeconfig"], name="source")
    ns = "bench-vol"
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    kube.create(PVCS, {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                              "resources": {"requests": {"storage": "2Gi"}}}}, ns)
    wait_until(lambda: kube.get(PVCS.path(ns, "data"))["status"].get("phase") == "Bound", timeout=60, what="bound")
    pvc = kube.get(PVCS.path(ns, "data"))
    pv_dir = Path(kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")["spec"]["csi"]["volumeAttributes"]["path"])
    total = make_dataset(pv_dir, scale)
    print(f"dataset: {total / 2**20:.0f} MiB in {pv_dir}", flush=True)

    # floor: raw restic into its own repository on the same S3
    raw_env = {**os.environ, "RESTIC_REPOSITORY": f"s3:{s3.endpoint_url}/{bucket}/raw", "RESTIC_PASSWORD": "bench",
               "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    subprocess.run([restic.binary(), "init"], env=raw_env, check=True, capture_output=True)
    raw_backup, _ = timed(lambda: subprocess.run([restic.binary(), "backup", "."], cwd=pv_dir, env=raw_env,
                                                 check=True, capture_output=True))
    raw_target = workdir / "raw-restore"
    raw_restore, _ = timed(lambda: subprocess.run([restic.binary(), "restore", "latest", "--target", str(raw_target)],
                                                  env=raw_env, check=True, capture_output=True))
    shutil.rmtree(raw_target)

    cfg = RepositoryConfig(type="s3", bucket=bucket, prefix="ys1000", endpoint_url=s3.endpoint_url,
                           access_key=s3.access_key, secret_key=s3.secret_key, region=s3.region)
    repo = open_repository(cfg, "bench", create=True)
    spec = lambda bid: BackupSpec(backup_id=bid, plan="bench", namespaces=[ns], cluster_name="source")  # noqa: E731
    ys_backup, first = timed(lambda: backup_with_volumes(kube, repo, cfg, spec("b1"), VolumeOptions(run_id="b1")))
    changed = change_one_percent(pv_dir, total)
    ys_incr, second = timed(lambda: backup_with_volumes(kube, repo, cfg, spec("b2"), VolumeOptions(run_id="b2")))
    added = second.manifest.volumes[0]["restic"]["bytes_added"]
    ys_restore, report = timed(lambda: restore_with_volumes(
        kube, repo, cfg, RestoreSpec(backup_id="b1", options=RestoreOptions(namespace_mapping={ns: ns + "-r"})),
        same_cluster=True))
    assert report.status == "Completed", report.failed
    mib = total / 2**20
    return {
        "dataset_mib": round(mib),
        "raw_restic_backup_mib_s": round(mib / raw_backup, 1), "ys1000_backup_mib_s": round(mib / ys_backup, 1),
        "backup_throughput_ratio": round(raw_backup / ys_backup, 2),
        "incremental_changed_bytes": changed, "incremental_bytes_sent": added,
        "incremental_sent_ratio": round(added / total, 4), "incremental_seconds": round(ys_incr, 1),
        "raw_restic_restore_mib_s": round(mib / raw_restore, 1), "ys1000_restore_mib_s": round(mib / ys_restore, 1),
        "restore_throughput_ratio": round(raw_restore / ys_restore, 2),
    }
