"""``python -m benchmarks [NAME ...]``: run the benchmarks on a fresh sandbox (one cluster; two
when ``airflow`` runs: its burst spreads over two clusters' pools)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ys1000_dev.sandbox import supervisor

from benchmarks import airflow_scale, dagparse, resources, scale, volume_scale, volumes

# the first three take ~12 min on 2 cores; the scale ones (issue 17) much longer at full size
# (YS1000_BENCH_SCALE scales them down): `make bench BENCH="dagparse resources volumes"`
BENCHMARKS = {
    "dagparse": dagparse.run,
    "resources": resources.run,
    "volumes": volumes.run,
    "scale": scale.run,
    "volume-scale": volume_scale.run,
    "airflow": airflow_scale.run,
}


def bench_dir() -> str | None:
    """Where the sandbox (etcd, volumes, restores) lives: ``$YS1000_BENCH_DIR``, else tmpfs.

    On tmpfs, because the ratios compare ys1000 with its floors, and a VM's disk under 1 GiB
    bursts of writes varies by ±50 % from one minute to the next (both sides would suffer it,
    but not equally within one run). Set ``YS1000_BENCH_DIR=/tmp`` to measure on disk.
    """
    if os.environ.get("YS1000_BENCH_DIR"):
        return os.environ["YS1000_BENCH_DIR"]
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 12 << 30:
        return str(shm)
    return None


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="ys1000-bench-", dir=bench_dir()) as tmp:
        root = Path(tmp)
        print(f"sandbox in {root}", flush=True)
        clusters = 2 if "airflow" in names else 1
        info = supervisor.up(root / "sandbox", clusters=clusters) | {"dir": str(root / "sandbox")}
        try:
            for name in names:
                work = root / name
                work.mkdir()
                print(f"== {name}", flush=True)
                print(json.dumps(BENCHMARKS[name](info, work), indent=2), flush=True)
        finally:
            supervisor.down(root / "sandbox")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
