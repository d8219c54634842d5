"""``python -m benchmarks [NAME ...]``: run the benchmarks on a fresh one-cluster sandbox."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ys1000.sandbox import supervisor

from benchmarks import dagparse, resources, volumes

BENCHMARKS = {"dagparse": dagparse.run, "resources": resources.run, "volumes": volumes.run}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="ys1000-bench-") as tmp:
        root = Path(tmp)
        info = supervisor.up(root / "sandbox", clusters=1) | {"dir": str(root / "sandbox")}
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
