"""Volume data: a ys1000 file-copy backup and restore against raw restic, in the same run.

Dataset (issue 5): 1 GiB = 1 × 512 MiB + 400 × 1 MiB + 20,000 × 4 KiB (``YS1000_BENCH_SCALE``
shrinks it, e.g. 0.25 for a quick look). Floors: ``restic backup`` of the same directory to the
same S3 (its own repository), and ``restic restore`` of that snapshot. Targets: throughput ratio
≥ 0.9 for backup and restore; an incremental backup after a 1 % change sends ≤ 2 % of the bytes.

Method: each side runs ``YS1000_BENCH_REPEAT`` times (default 3), raw and ys1000 alternating
and each round into fresh repositories (no dedup across rounds); the best time of each side is
compared (as ``timeit`` does: noise only ever adds time), every sample is printed. ``restic init``
is a one-time step of a repository and is left out on both sides alike (raw: ``restic init``;
ys1000: the same init that a namespace's first backup does, ``ensure_restic_repository``); its
time is printed. Dirty pages are flushed before each timed step, so one step's writeback does not
land in the next.
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
from ys1000.repository import open_repository
from ys1000.restore import RestoreOptions, RestoreSpec
from ys1000_dev.sandbox.s3 import S3Endpoint
from ys1000.volumes import VolumeOptions, restic
from ys1000.volumes.backup import ensure_restic_repository
from ys1000.waiting import wait_until
from ys1000.backup import run_backup
from ys1000.restore import run_restore


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
    os.sync()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(sandbox: dict, workdir: Path) -> dict:
    scale = float(os.environ.get("YS1000_BENCH_SCALE", "1"))
    rounds = max(1, int(os.environ.get("YS1000_BENCH_REPEAT", "3")))
    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    bucket = s3.new_bucket("bench-volumes")
    kube = Kube.from_kubeconfig(sandbox["clusters"]["source"]["kubeconfig"], name="source")
    ns = "bench-vol"
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    kube.create(
        PVCS,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
        },
        ns,
    )
    wait_until(lambda: kube.get(PVCS.path(ns, "data"))["status"].get("phase") == "Bound", timeout=60, what="bound")
    pvc = kube.get(PVCS.path(ns, "data"))
    pv_dir = Path(
        kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")["spec"]["csi"]["volumeAttributes"]["path"]
    )
    total = make_dataset(pv_dir, scale)
    mib = total / 2**20
    print(f"dataset: {mib:.0f} MiB in {pv_dir}; {rounds} rounds", flush=True)

    def raw_env(i: int) -> dict:
        return {
            **os.environ,
            "RESTIC_REPOSITORY": f"s3:{s3.endpoint_url}/{bucket}/raw-{i}",
            "RESTIC_PASSWORD": "bench",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }

    def ys_repo(i: int):
        cfg = s3.repository_config(bucket, f"ys1000-{i}")
        return cfg, open_repository(cfg, "bench", create=True)

    def spec(bid: str) -> BackupSpec:
        return BackupSpec(backup_id=bid, plan="bench", namespaces=[ns], cluster_name="source")

    def restic_cmd(args: list[str], env: dict, cwd=None):
        return subprocess.run([restic.binary(), *args], cwd=cwd, env=env, check=True, capture_output=True)

    samples: dict[str, list[float]] = {
        "raw_backup": [],
        "ys_backup": [],
        "raw_restore": [],
        "ys_restore": [],
        "raw_init": [],
        "ys_init": [],
    }
    repos = []
    for i in range(rounds):
        cfg, repo = ys_repo(i)
        repos.append((cfg, repo))
        t, _ = timed(lambda: restic_cmd(["init"], raw_env(i)))
        samples["raw_init"].append(t)
        t, _ = timed(lambda: ensure_restic_repository(cfg, repo.restic_password(), "source", ns))
        samples["ys_init"].append(t)
        raw = lambda: samples["raw_backup"].append(timed(lambda: restic_cmd(["backup", "."], raw_env(i), pv_dir))[0])  # noqa: E731

        def ys():
            samples["ys_backup"].append(
                timed(lambda: run_backup(kube, repo, spec(f"b{i}"), volume_opts=VolumeOptions(run_id=f"b{i}")))[0]
            )

        for step in (raw, ys) if i % 2 == 0 else (ys, raw):
            step()
        print(
            f"  backup round {i}: raw {samples['raw_backup'][-1]:.2f} s, ys1000 {samples['ys_backup'][-1]:.2f} s",
            flush=True,
        )

    for i, (_cfg, repo) in enumerate(repos):
        target = workdir / f"raw-restore-{i}"

        def raw():
            samples["raw_restore"].append(
                timed(lambda: restic_cmd(["restore", "latest", "--target", str(target)], raw_env(i)))[0]
            )
            shutil.rmtree(target)

        def ys():
            t, report = timed(
                lambda: run_restore(
                    kube,
                    repo,
                    RestoreSpec(backup_id=f"b{i}", options=RestoreOptions(namespace_mapping={ns: f"{ns}-r{i}"})),
                    same_cluster=True,
                )
            )
            assert report.status == "Completed", report.failed
            samples["ys_restore"].append(t)

        for step in (raw, ys) if i % 2 == 0 else (ys, raw):
            step()
        print(
            f"  restore round {i}: raw {samples['raw_restore'][-1]:.2f} s, ys1000 {samples['ys_restore'][-1]:.2f} s",
            flush=True,
        )

    changed = change_one_percent(pv_dir, total)
    cfg, repo = repos[0]
    ys_incr, second = timed(lambda: run_backup(kube, repo, spec("incr"), volume_opts=VolumeOptions(run_id="incr")))
    added = second.manifest.volumes[0]["restic"]["bytes_added"]
    best = {k: min(v) for k, v in samples.items()}
    return {
        "dataset_mib": round(mib),
        "rounds": rounds,
        "raw_restic_backup_mib_s": round(mib / best["raw_backup"], 1),
        "ys1000_backup_mib_s": round(mib / best["ys_backup"], 1),
        "backup_throughput_ratio": round(best["raw_backup"] / best["ys_backup"], 2),
        "raw_restic_restore_mib_s": round(mib / best["raw_restore"], 1),
        "ys1000_restore_mib_s": round(mib / best["ys_restore"], 1),
        "restore_throughput_ratio": round(best["raw_restore"] / best["ys_restore"], 2),
        "incremental_changed_bytes": changed,
        "incremental_bytes_sent": added,
        "incremental_sent_ratio": round(added / total, 4),
        "incremental_seconds": round(ys_incr, 1),
        "samples_seconds": {k: [round(x, 2) for x in v] for k, v in samples.items()},
    }
