"""DAG factory parse time: 1,000 generated backup plans (issue 17 target: under 2 s; issue 4 had 500).

Measured with imports warm (as in Airflow's dag-processor). Floor: loading the same config
without building DAGs (YAML and validation only), measured in the same run. Second reference:
Airflow itself building the same number of DAGs with as many plain ``EmptyOperator`` tasks each
(no YAML at all): what any DAG of that shape costs in this Airflow, on this machine.
"""

from __future__ import annotations

import shutil
import time
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLANS = 1000


def run(_sandbox: dict | None, workdir: Path) -> dict:
    cdir = workdir / "config"
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    for i in range(PLANS):
        (cdir / "plans" / f"p{i:04d}.yaml").write_text(
            f"kind: BackupPlan\nname: plan-{i:04d}\ncluster: {'source' if i % 2 else 'target'}\n"
            f"repository: sandbox-s3\nnamespaces: {{names: [ns-{i:04d}]}}\n"
            f"policy: {'full-filecopy-4x-daily' if i % 3 else 'resources-every-3h'}\n"
        )
    from ys1000.airflow.dagfactory import build_dags
    from ys1000.config import load_plans

    build_dags(REPO / "config")  # warm: in the dag-processor, Airflow and our modules are imported already

    t0, c0 = time.perf_counter(), time.process_time()
    load_plans(cdir)
    floor, floor_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    dags = build_dags(cdir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    backups = [d for name, d in dags.items() if name.startswith("ys1000_backup__")]
    assert len(backups) == PLANS
    tasks = max(len(d.tasks) for d in backups)
    bare = _bare_airflow(PLANS, tasks, backups[0].timetable)
    return {
        "plans": PLANS,
        "build_seconds": round(wall, 2),
        "build_cpu_seconds": round(cpu, 2),  # less sensitive than wall time to a shared machine
        "load_only_seconds": round(floor, 2),
        "load_only_cpu_seconds": round(floor_cpu, 2),
        "ratio_to_load_only": round(wall / floor, 1),
        "airflow_bare_seconds": round(bare, 2),
        "airflow_bare_shape": f"{PLANS} DAGs x {tasks} EmptyOperator",
        "target_seconds": 2.0,
    }


def _bare_airflow(n: int, tasks: int, timetable) -> float:
    """Seconds for Airflow to build ``n`` DAGs of ``tasks`` chained EmptyOperators (warm)."""
    from datetime import datetime, timezone

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    def build(count: int) -> None:
        for i in range(count):
            with DAG(
                dag_id=f"bare_{i}",
                schedule=timetable,
                start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                catchup=False,
                max_active_runs=1,
                auto_register=False,
                default_args={"owner": "bench", "retries": 3, "pool": "p", "pool_slots": 2},
            ):
                ops = [EmptyOperator(task_id=f"t{j}") for j in range(tasks)]
                for upstream, downstream in pairwise(ops):
                    upstream >> downstream

    build(10)
    t0 = time.perf_counter()
    build(n)
    return time.perf_counter() - t0
