"""Airflow at scale (issue 17), with a real Airflow (api-server, scheduler, dag-processor,
triggerer; LocalExecutor, PostgreSQL) against the sandbox, driven through REST API v2.

**Burst.** ``PLANS`` resources-only backup plans, alternately on the sandbox's two clusters
``source`` and ``target`` (two API servers; each plan its own small namespace: a few ConfigMaps
and a Secret), each cluster's pool sized by ``max_concurrent_movers`` (``SLOTS``).
``200 × YS1000_BENCH_SCALE`` runs are triggered at once through the REST API (round robin over
the plans; a plan runs one at a time, the others queue), then waited for. Reported: every run
succeeded, as many Completed backups in the repository, neither pool ever held more than its
slots (each sampled from ``/api/v2/pools`` every second: running + deferred + queued slots),
total time and runs per minute. A figure, not a test: ``none_lost`` says whether every
run succeeded with its backup Completed and the pool held (when not, the scheduler's log tail is
printed).

Every task of a plan but the per-PVC ``volumes`` takes all of the pool's slots (a second job on
the cluster waits for the first one's steps, ``dagfactory.pool_slots_for``), so a cluster runs one
job step at a time (two clusters: two at once): the rate is that of LocalExecutor task starts on
this machine (each task process parses the factory file: 5 tasks a run). One cluster ran 10 runs
at 3.8 runs/min on a quiet machine (1.4/min at load 8-12); ``YS1000_BENCH_SCALE=0.05`` gives 10
runs, 1 the issue's 200.

**Job monitor.** The finished runs are then cloned in the metadata DB (runs, task instances and
XComs, as the UI reads them) to ``RUNS`` = 10,000 runs, and the job monitor page
(``/ys1000/jobs``: first page, and page 100 of 50) is fetched through the api-server with the
admin's token. Floors in the same DB and run: Airflow's own ``/api/v2/dags/~/dagRuns?limit=50``
(newest first), and the bare SQL (``SELECT count(*)`` and one page of ``dag_run``). Target ≤ 1 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from ys1000.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
BURST = 200  # runs at YS1000_BENCH_SCALE=1
PLANS = 20
SLOTS = 4
RUNS = 10_000  # in the DB for the job monitor page
PAGE_TARGET = 1.0
CLUSTERS = ("source", "target")
POOL_PREFIX = "ys1000_cluster_"
PREFIX = "ys1000_backup__scale-"


def _config(cdir: Path, bucket: str, namespaces: list[tuple[str, str]]) -> None:
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    repos = yaml.safe_load((cdir / "repositories.yaml").read_text())
    repos["sandbox-s3"]["bucket"] = bucket
    (cdir / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    clusters = yaml.safe_load((cdir / "clusters.yaml").read_text())
    for name in CLUSTERS:
        clusters[name]["max_concurrent_movers"] = SLOTS
    (cdir / "clusters.yaml").write_text(yaml.safe_dump(clusters, sort_keys=False))
    for i, (cluster, ns) in enumerate(namespaces):
        (cdir / "plans" / f"scale-{i:03d}.yaml").write_text(
            f"kind: BackupPlan\nname: scale-{i:03d}\ncluster: {cluster}\nrepository: sandbox-s3\n"
            f"namespaces: {{names: [{ns}]}}\n"
            "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 30d}\n"
        )


def _namespaces(kube, names: list[str]) -> None:
    from ys1000.kube.discovery import NAMESPACES
    from ys1000.kube.jobs import CONFIGMAPS, SECRETS

    for ns in names:
        kube.create(NAMESPACES, {"metadata": {"name": ns, "labels": {"bench": "airflow-scale"}}})
        for j in range(5):
            kube.create(CONFIGMAPS, {"metadata": {"name": f"cm-{j}"}, "data": {"k": "v" * 64}}, ns)
        kube.create(SECRETS, {"metadata": {"name": "s"}, "stringData": {"p": "x"}}, ns)


def _env(sandbox: dict, cdir: Path) -> dict[str, str]:
    from ys1000.airflow.bootstrap import connection_env, kubernetes_connection, s3_connection
    from ys1000_dev.sandbox.connections import SANDBOX_KEY_VARIABLE, SANDBOX_REPO_KEY
    from ys1000_dev.sandbox.s3 import S3Endpoint

    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    conns = [kubernetes_connection("ys1000_source", sandbox["clusters"]["source"]["kubeconfig"])]
    if "target" in sandbox["clusters"]:
        conns.append(kubernetes_connection("ys1000_target", sandbox["clusters"]["target"]["kubeconfig"]))
    conns.append(
        s3_connection(
            "ys1000_s3",
            endpoint_url=s3.endpoint_url,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        )
    )
    return connection_env(conns, {SANDBOX_KEY_VARIABLE: SANDBOX_REPO_KEY}) | {"YS1000_CONFIG_DIR": str(cdir)}


class PoolSampler(threading.Thread):
    """Samples one cluster's pool every second: the most slots it ever held (running, deferred
    and queued task instances' slots) and the most task instances running at once."""

    def __init__(self, client, pool: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.pool = pool
        self.stopped = threading.Event()
        self.samples = 0
        self.slots = 0
        self.max_held = 0
        self.max_running_slots = 0
        self.max_running_tis = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                p = self.client.pool(self.pool)
                tis = self.client.get(
                    "/api/v2/dags/~/dagRuns/~/taskInstances",
                    params={"state": "running", "pool": self.pool, "limit": 1},
                )
            except Exception:
                self.errors += 1
                continue
            self.samples += 1
            self.slots = p["slots"]
            held = p.get("running_slots", 0) + p.get("deferred_slots", 0) + p.get("queued_slots", 0)
            self.max_held = max(self.max_held, held, p.get("occupied_slots", 0))
            self.max_running_slots = max(self.max_running_slots, p.get("running_slots", 0))
            self.max_running_tis = max(self.max_running_tis, tis.get("total_entries", 0))


def _run_states(client, dag_ids: list[str]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for dag_id in dag_ids:
        offset = 0
        while True:
            page = client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "offset": offset})
            for r in page["dag_runs"]:
                out[(dag_id, r["dag_run_id"])] = r["state"]
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                break
    return out


def _trigger(client, dag_id: str, run_id: str) -> str:
    """Trigger one run; a timed-out request is retried with the same run id (409: it was made)."""
    import httpx

    from ys1000_dev.processes import ApiError

    for attempt in range(5):
        try:
            return client.trigger(dag_id, unpause=False, run_id=run_id)["dag_run_id"]
        except httpx.TimeoutException:
            time.sleep(2)
        except ApiError as exc:
            if "HTTP 409" in str(exc) and attempt:
                return run_id
            raise
    raise RuntimeError(f"could not trigger {dag_id} {run_id}")


def burst(stack, dag_ids: list[str], count: int) -> dict:
    client = stack.client()
    for dag_id in dag_ids:
        client.unpause(dag_id)
    samplers = {c: PoolSampler(client, POOL_PREFIX + c) for c in CLUSTERS}
    for sampler in samplers.values():
        sampler.start()
    t0 = time.perf_counter()
    triggered = []
    for i in range(count):
        dag_id = dag_ids[i % len(dag_ids)]
        triggered.append((dag_id, _trigger(client, dag_id, f"burst_{i:04d}")))
    trigger_s = time.perf_counter() - t0
    print(f"  {count} runs triggered in {trigger_s:.1f} s", flush=True)
    last = [0.0]

    def done() -> bool:
        live = client.get("/api/v2/dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 1})
        left = live["total_entries"]
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  {time.perf_counter() - t0:.0f} s: {left} runs not finished", flush=True)
        return left == 0

    wait_until(done, timeout=max(1800, count * 300), what=f"{count} runs to finish", interval=2.0)
    total = time.perf_counter() - t0
    for sampler in samplers.values():
        sampler.stopped.set()
        sampler.join()
    states = _run_states(client, dag_ids)
    ours = [states.get(k) for k in triggered]
    return {
        "runs": count,
        "plans": len(dag_ids),
        "succeeded": sum(s == "success" for s in ours),
        "failed": sum(s == "failed" for s in ours),
        "lost": sum(s is None for s in ours),
        "seconds": round(total, 1),
        "trigger_seconds": round(trigger_s, 1),
        "runs_per_minute": round(count / total * 60, 1),
        "pools": {
            p.pool: {
                "slots": p.slots,
                "max_slots_held": p.max_held,
                "max_running_slots": p.max_running_slots,
                "max_running_task_instances": p.max_running_tis,
                "samples": p.samples,
                "sample_errors": p.errors,
            }
            for p in samplers.values()
        },
        "pool_within_slots": all(0 < p.slots and p.max_held <= p.slots for p in samplers.values()),
    }


def _completed_backups(sandbox: dict, bucket: str) -> int:
    from ys1000.repository import open_repository
    from ys1000_dev.sandbox.connections import SANDBOX_REPO_KEY
    from ys1000_dev.sandbox.s3 import S3Endpoint

    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    repo = open_repository(s3.repository_config(bucket, ""), SANDBOX_REPO_KEY)
    return sum(str(getattr(e.status, "value", e.status)) == "Completed" for e in repo.list_backups())


# -- job monitor -------------------------------------------------------------------------------


def fill(url: str, total: int) -> int:
    """Clone the finished ys1000 backup runs in the metadata DB (each with its task instances and
    XComs, new ids) until ``total`` runs exist; returns how many were added."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    meta = sa.MetaData()
    dag_run, ti, xcom = (sa.Table(n, meta, autoload_with=engine) for n in ("dag_run", "task_instance", "xcom"))
    with engine.begin() as con:
        have = con.execute(sa.select(sa.func.count()).select_from(dag_run)).scalar_one()
        templates = [
            dict(r._mapping)
            for r in con.execute(
                sa.select(dag_run).where(
                    dag_run.c.dag_id.like(f"{PREFIX}%"), dag_run.c.state.in_(["success", "failed"])
                )
            )
        ]
        if not templates or have >= total:
            return 0
        tis = {
            t["id"]: [
                dict(r._mapping)
                for r in con.execute(sa.select(ti).where(ti.c.dag_id == t["dag_id"], ti.c.run_id == t["run_id"]))
            ]
            for t in templates
        }
        xcoms = {
            t["id"]: [dict(r._mapping) for r in con.execute(sa.select(xcom).where(xcom.c.dag_run_id == t["id"]))]
            for t in templates
        }
        n = total - have
        tag = uuid.uuid4().hex[:6]
        runs = []
        for i in range(n):
            row = dict(templates[i % len(templates)])
            del row["id"]
            row["run_id"], row["logical_date"] = f"filler_{tag}_{i:05d}", None
            runs.append(row)
        for chunk in range(0, n, 1000):
            con.execute(dag_run.insert(), runs[chunk : chunk + 1000])
        ids = dict(
            con.execute(sa.select(dag_run.c.run_id, dag_run.c.id).where(dag_run.c.run_id.like(f"filler_{tag}_%"))).all()
        )
        ti_rows, x_rows = [], []
        for i in range(n):
            tpl, run_id = templates[i % len(templates)], f"filler_{tag}_{i:05d}"
            for t in tis[tpl["id"]]:
                ti_rows.append(
                    t | {"id": uuid.uuid4() if isinstance(t["id"], uuid.UUID) else str(uuid.uuid4()), "run_id": run_id}
                )
            for x in xcoms[tpl["id"]]:
                x_rows.append(x | {"dag_run_id": ids[run_id], "run_id": run_id})
        for chunk in range(0, len(ti_rows), 2000):
            con.execute(ti.insert(), ti_rows[chunk : chunk + 2000])
        for chunk in range(0, len(x_rows), 2000):
            con.execute(xcom.insert(), x_rows[chunk : chunk + 2000])
    engine.dispose()
    return n


def _timed_get(http, path: str, token: str, **params: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    wall = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"GET {path}: HTTP {r.status_code}: {r.text[:300]}")
    return wall, r


def _best(samples: list[float]) -> float:
    return round(min(samples), 3)


def page_figures(stack, url: str, rounds: int) -> dict:
    import httpx
    import sqlalchemy as sa

    client = stack.client()
    token = client.token()
    http = httpx.Client(base_url=stack.url, timeout=120)
    engine = sa.create_engine(url)
    con = engine.connect()
    runs = con.execute(sa.text("SELECT count(*) FROM dag_run")).scalar_one()
    t: dict[str, list[float]] = {"first": [], "later": [], "api_first": [], "airflow_api": [], "sql": []}
    later_page = 100
    rows = {}
    for _ in range(rounds):
        wall, r = _timed_get(http, "/ys1000/jobs", token)
        t["first"].append(wall)
        rows["first"] = r.text.count('<tr class="job ')
        wall, r = _timed_get(http, "/ys1000/jobs", token, page=later_page)
        t["later"].append(wall)
        rows["later"] = r.text.count('<tr class="job ')
        wall, r = _timed_get(http, "/ys1000/api/jobs", token)
        t["api_first"].append(wall)
        wall, r = _timed_get(http, "/api/v2/dags/~/dagRuns", token, limit=50, order_by="-run_after")
        t["airflow_api"].append(wall)
        t0 = time.perf_counter()
        con.execute(sa.text("SELECT count(*) FROM dag_run")).scalar_one()
        con.execute(sa.text("SELECT * FROM dag_run ORDER BY run_after DESC, id DESC LIMIT 51")).all()
        t["sql"].append(time.perf_counter() - t0)
    con.close()
    engine.dispose()
    first, later, floor = _best(t["first"]), _best(t["later"]), _best(t["airflow_api"])
    return {
        "runs_in_db": runs,
        "rows_per_page": rows["first"],
        "rows_on_page_100": rows["later"],
        "first_page_seconds": first,
        f"page_{later_page}_seconds": later,
        "json_first_page_seconds": _best(t["api_first"]),
        "airflow_dagruns_api_seconds": floor,
        "bare_sql_seconds": round(min(t["sql"]), 4),
        "ratio_first_to_airflow_api": round(first / floor, 1) if floor else None,
        "target_seconds": PAGE_TARGET,
        "rounds": rounds,
    }


def run(sandbox: dict, workdir: Path) -> dict:
    import httpx

    from ys1000.kube import Kube
    from ys1000.kube.discovery import NAMESPACES
    from ys1000_dev.processes import AirflowStack, PostgresServer
    from ys1000_dev.sandbox.s3 import S3Endpoint

    scale = float(os.environ.get("YS1000_BENCH_SCALE", "1"))
    rounds = max(1, int(os.environ.get("YS1000_BENCH_REPEAT", "3")))
    count = max(1, round(BURST * scale))
    plans = min(PLANS, count)
    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    bucket = s3.new_bucket(f"bench-af-{uuid.uuid4().hex[:8]}")
    kubes = {c: Kube.from_kubeconfig(sandbox["clusters"][c]["kubeconfig"], name=c) for c in CLUSTERS}
    tag = uuid.uuid4().hex[:5]
    namespaces = [(CLUSTERS[i % len(CLUSTERS)], f"scale-{tag}-{i:03d}") for i in range(plans)]
    for cluster, kube in kubes.items():
        _namespaces(kube, [ns for c, ns in namespaces if c == cluster])
    cdir = workdir / "config"
    _config(cdir, bucket, namespaces)
    # PostgreSQL: with SQLite, the scheduler dies of "database is locked" under a burst
    stack = AirflowStack.standalone(workdir / "airflow", _env(sandbox, cdir))
    stack.extra = [PostgresServer(stack.procs)]
    stack._wire_services()
    t0 = time.perf_counter()

    def pools(s) -> None:
        s.procs.run("pools", [str(Path(sys.executable).parent / "ys1000"), "airflow", "pools"], timeout=120)

    stack.start(on_migrated=pools)
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    try:
        print(f"  Airflow healthy at {stack.url} in {time.perf_counter() - t0:.0f} s", flush=True)
        client = stack.client()
        client.http.timeout = httpx.Timeout(120)  # a 2-core machine under load
        dag_ids = [f"{PREFIX}{i:03d}" for i in range(plans)]
        for dag_id in dag_ids:
            client.wait_for_dag(dag_id, timeout=300)
        out["burst"] = b = burst(stack, dag_ids, count)
        b["completed_backups_in_repository"] = _completed_backups(sandbox, bucket)
        b["none_lost"] = b["succeeded"] == count == b["completed_backups_in_repository"] and b["pool_within_slots"]
        print(f"  burst: {json.dumps(b)}", flush=True)
        url = stack.sql_alchemy_conn or ""
        # the page reads a still DB: the scheduler and the others stop, the api-server serves
        stack.procs.kill(["scheduler", "triggerer", "dag-processor"])
        t1 = time.perf_counter()
        added = fill(url, RUNS)
        print(f"  {added} runs cloned in {time.perf_counter() - t1:.1f} s", flush=True)
        out["job_monitor"] = page_figures(stack, url, rounds)
        out["load_after"] = os.getloadavg()[0]
    finally:
        stack.stop()
        for cluster, ns in namespaces:
            try:
                kubes[cluster].delete(NAMESPACES, ns)
            except Exception:  # pragma: no cover - cleanup only
                pass
    if not out["burst"]["none_lost"]:
        log = subprocess.run(["tail", "-50", str(stack.procs.logs / "scheduler.log")], capture_output=True, text=True)
        print(log.stdout, flush=True)
    return out
