"""DAG factory parse time: 500 generated backup plans (issue 4 target: under 2 s).

Measured with imports warm (as in Airflow's dag-processor). Floor: loading the same config
without building DAGs (YAML and validation only), measured in the same run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLANS = 500


def run(_sandbox: dict | None, workdir: Path) -> dict:
    cdir = workdir / "config"
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    for i in range(PLANS):
        (cdir / "plans" / f"p{i:03d}.yaml").write_text(
            f"kind: BackupPlan\nname: plan-{i:03d}\ncluster: {'source' if i % 2 else 'target'}\n"
            f"repository: sandbox-s3\nnamespaces: {{names: [ns-{i:03d}]}}\n"
            f"policy: {'full-filecopy-4x-daily' if i % 3 else 'resources-every-3h'}\n"
        )
    from ys1000.airflow.dagfactory import build_dags
    from ys1000.config import load_plans

    build_dags(REPO / "config")  # warm: in the dag-processor, Airflow and our modules are imported already

    t0 = time.perf_counter()
    load_plans(cdir)
    floor = time.perf_counter() - t0
    t0 = time.perf_counter()
    dags = build_dags(cdir)
    wall = time.perf_counter() - t0
    assert len([d for d in dags if d.startswith("ys1000_backup__")]) == PLANS
    return {
        "plans": PLANS,
        "build_seconds": round(wall, 2),
        "load_only_seconds": round(floor, 2),
        "ratio_to_load_only": round(wall / floor, 1),
        "target_seconds": 2.0,
    }
