"""ys1000 jobs (DAG runs) as the pages show them, read from Airflow's metadata database.

The UI plugin runs inside the api-server, where database access is the norm (Airflow's own
REST API routes do the same), so runs, task instances and XComs are read with Airflow's models
in the request's session. What each job shows:

- kind and plan from the DAG id (``ys1000_backup__<plan>``, ``ys1000_restore__<plan>``, the
  generic ``ys1000_restore``, ``ys1000_migrate__<plan>``, ``ys1000_self_backup``);
- cluster and repository from the plan in ``config/`` (for the generic restore: the run's conf);
- state, start/end, duration from the run; task states from its task instances;
- progress: the ``progress`` XCom an operator publishes while it runs (``objects_done``,
  ``objects_total``, ``bytes_done``, ``bytes_total``, ``phase``; the newest one wins), else the
  finished tasks' results (``commit``: objects and archive bytes; ``restore``: counts), else the
  share of finished tasks;
- backup id (``capture``/``preflight`` XCom ``backup_id``), restore id (``restore`` XCom
  ``restore_id``) and the tasks' results (``return_value``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, cast

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ys1000.config import Config, MigrationPlan, RestorePlan

BACKUP_PREFIX = "ys1000_backup__"
RESTORE_PREFIX = "ys1000_restore__"
MIGRATE_PREFIX = "ys1000_migrate__"
GENERIC_RESTORE = "ys1000_restore"
SELF_BACKUP = "ys1000_self_backup"

KINDS = ("backup", "restore", "migration")
RUN_STATES = ("queued", "running", "success", "failed")
FINISHED_TI = ("success", "skipped", "upstream_failed", "failed", "removed")
XCOM_KEYS = ("return_value", "backup_id", "restore_id", "progress")


def classify(dag_id: str) -> tuple[str, str | None] | None:
    """``(kind, plan)`` of a ys1000 DAG id; None for other DAGs."""
    if dag_id.startswith(BACKUP_PREFIX):
        return "backup", dag_id[len(BACKUP_PREFIX) :]
    if dag_id == SELF_BACKUP:
        return "backup", "self-backup"
    if dag_id.startswith(RESTORE_PREFIX):
        return "restore", dag_id[len(RESTORE_PREFIX) :]
    if dag_id == GENERIC_RESTORE:
        return "restore", None
    if dag_id.startswith(MIGRATE_PREFIX):
        return "migration", dag_id[len(MIGRATE_PREFIX) :]
    return None


def is_job_dag(dag_id: str) -> bool:
    return classify(dag_id) is not None


@dataclass
class TaskState:
    task_id: str
    state: str | None
    start: datetime | None
    end: datetime | None
    try_number: int
    map_index: int = -1


@dataclass
class Progress:
    tasks_done: int = 0
    tasks_total: int = 0
    objects_done: int | None = None
    objects_total: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    phase: str | None = None
    source: str = "tasks"  # "xcom" (live progress), "result" (finished tasks' results) or "tasks"

    @property
    def percent(self) -> int | None:
        for done, total in ((self.bytes_done, self.bytes_total), (self.objects_done, self.objects_total)):
            if done is not None and total:
                return max(0, min(100, int(100 * done / total)))
        if self.tasks_total:
            return int(100 * self.tasks_done / self.tasks_total)
        return None


@dataclass
class Job:
    dag_id: str
    run_id: str
    kind: str
    plan: str | None
    state: str
    run_type: str
    run_after: datetime | None
    start: datetime | None
    end: datetime | None
    conf: dict[str, Any]
    triggered_by: str | None = None
    cluster: str | None = None
    repository: str | None = None
    backup_id: str | None = None
    restore_id: str | None = None
    tasks: list[TaskState] = field(default_factory=list)
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)

    @property
    def duration(self) -> timedelta | None:
        if not self.start:
            return None
        end = self.end or (datetime.now(timezone.utc) if self.state in ("running", "queued") else None)
        return (end - self.start) if end else None

    @property
    def running(self) -> bool:
        return self.state in ("running", "queued")

    def result(self, task_id: str) -> Any:
        return self.xcoms.get((task_id, "return_value"))

    @property
    def results(self) -> list[tuple[str, Any]]:
        order = {t.task_id: i for i, t in enumerate(self.tasks)}
        items = [(task, v) for (task, key), v in self.xcoms.items() if key == "return_value"]
        return sorted(items, key=lambda kv: order.get(kv[0], 999))

    @property
    def failed_tasks(self) -> list[TaskState]:
        return [t for t in self.tasks if t.state in ("failed", "upstream_failed")]


# -- reading ---------------------------------------------------------------------------------------


def job_dag_ids(session: "Session", allowed: Iterable[str] | None = None) -> list[str]:
    """ys1000 DAG ids known to Airflow (optionally only those in ``allowed``)."""
    from sqlalchemy import select

    from airflow.models.dag import DagModel

    ids = [
        d
        for d in session.scalars(select(DagModel.dag_id).where(DagModel.dag_id.like("ys1000\\_%", escape="\\")))
        if is_job_dag(d)
    ]
    if allowed is not None:
        allowed = set(allowed)
        ids = [d for d in ids if d in allowed]
    return sorted(ids)


PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_jobs(
    session: "Session",
    dag_ids: Iterable[str],
    config: "Config | None" = None,
    *,
    kind: str | None = None,
    state: str | None = None,
    cluster: str | None = None,
    plan: str | None = None,
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> tuple[list[Job], bool]:
    """One page of jobs, newest first, and whether more follow.

    One query reads the page's runs (``LIMIT limit + 1 OFFSET offset``: the extra row says
    whether there is a next page; no count), one their task instances and one their XComs,
    whatever the number of runs in the database. The filters are all in that query: a DAG's
    kind, plan and cluster follow from its id and the config, so they become the list of DAG
    ids; only the generic restore's cluster and plan are in each run's conf: with such a filter,
    a light query of those runs' ids and confs picks the matching ones first.
    """
    from sqlalchemy import or_, select

    from airflow.models.dagrun import DagRun

    static: list[str] = []  # DAGs whose runs match by their DAG id alone
    by_conf: list[str] = []  # DAGs whose runs match by their conf (generic restore, with a filter)
    for d in dag_ids:
        c = classify(d)
        if c is None or (kind and c[0] != kind):
            continue
        if c[1] is None and (cluster or plan):
            by_conf.append(d)
            continue
        if plan and c[1] != plan:
            continue
        if cluster and not _matches(_probe(d, c, {}, config), cluster, plan):
            continue
        static.append(d)
    matched: list[int] = []
    if by_conf:
        conf_q = select(DagRun.id, DagRun.dag_id, DagRun.conf).where(DagRun.dag_id.in_(by_conf))
        if state:
            conf_q = conf_q.where(DagRun._state == state)
        for pk, dag_id, conf in session.execute(conf_q):
            c = classify(dag_id)
            if c is not None and _matches(_probe(dag_id, c, dict(conf or {}), config), cluster, plan):
                matched.append(pk)
    if not static and not matched:
        return [], False
    where = []
    if static:
        where.append(DagRun.dag_id.in_(static))
    if matched:
        where.append(DagRun.id.in_(matched))
    stmt = select(DagRun).where(or_(*where))
    if state:
        stmt = stmt.where(DagRun._state == state)
    limit = max(1, limit)
    stmt = stmt.order_by(DagRun.run_after.desc(), DagRun.id.desc()).offset(max(0, offset)).limit(limit + 1)
    runs = list(session.scalars(stmt))
    more = len(runs) > limit
    return _jobs_for(session, runs[:limit], config), more


def _probe(dag_id: str, c: tuple[str, str | None], conf: dict[str, Any], config: "Config | None") -> Job:
    """A job without a run: its cluster and plan as ``_describe`` finds them for ``conf``."""
    job = Job(dag_id, "", c[0], c[1], "", "", None, None, None, conf)
    _describe(job, config)
    return job


def _matches(job: Job, cluster: str | None, plan: str | None) -> bool:
    if cluster and not (job.cluster and cluster in job.cluster.split("→")):
        return False
    return not plan or job.plan == plan


def get_job(session: "Session", dag_id: str, run_id: str, config: "Config | None" = None) -> Job | None:
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun

    if not is_job_dag(dag_id):
        return None
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        return None
    return _jobs_for(session, [run], config)[0]


def backup_runs(session: "Session", dag_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """backup id → {dag_id, run_id, state, verified} for the runs of ``dag_ids`` that captured one
    (``verified``: the run's ``verify`` task result ``ok``, None when it did not run)."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel

    ids = [d for d in dag_ids if d.startswith(BACKUP_PREFIX)]
    if not ids:
        return {}
    rows = session.execute(
        select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.key, XComModel.value, DagRun._state)
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(
            XComModel.dag_id.in_(ids),
            ((XComModel.task_id == "capture") & (XComModel.key == "backup_id"))
            | ((XComModel.task_id == "verify") & (XComModel.key == "return_value")),
        )
    ).all()
    by_run: dict[tuple[str, str], dict[str, Any]] = {}
    for dag_id, run_id, task_id, _key, value, state in rows:
        rec = by_run.setdefault(
            (dag_id, run_id), {"dag_id": dag_id, "run_id": run_id, "state": state, "verified": None}
        )
        value = _decode(value)
        if task_id == "capture":
            rec["backup_id"] = value
        elif isinstance(value, dict):
            rec["verified"] = bool(value.get("ok"))
    return {rec["backup_id"]: rec for rec in by_run.values() if rec.get("backup_id")}


def _decode(value: Any) -> Any:
    import json

    from airflow.models.xcom import XComModel

    class _Row:  # deserialize_value wants an object with .value
        value: Any = None

    row = _Row()
    row.value = value
    try:
        return XComModel.deserialize_value(row)
    except Exception:  # pragma: no cover - a value we cannot decode is shown raw
        try:
            return json.loads(value)
        except Exception:
            return value


def _jobs_for(session: "Session", runs: list, config: "Config | None") -> list[Job]:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.xcom import XComModel

    if not runs:
        return []
    pks = [r.id for r in runs]
    keys = {(r.dag_id, r.run_id): r for r in runs}
    tis: dict[tuple[str, str], list[TaskState]] = {}
    dag_ids = sorted({r.dag_id for r in runs})
    run_ids = sorted({r.run_id for r in runs})
    for dag_id, run_id, task_id, state, start, end, try_number, map_index in session.execute(
        select(
            TI.dag_id, TI.run_id, TI.task_id, TI.state, TI.start_date, TI.end_date, TI.try_number, TI.map_index
        ).where(TI.dag_id.in_(dag_ids), TI.run_id.in_(run_ids))
    ):
        if (dag_id, run_id) in keys:
            tis.setdefault((dag_id, run_id), []).append(
                TaskState(task_id, str(state) if state else None, start, end, try_number or 0, map_index)
            )
    xcoms: dict[int, dict[tuple[str, str], Any]] = {}
    stamps: dict[int, dict[str, datetime]] = {}
    for run_pk, task_id, key, value, ts in session.execute(
        select(XComModel.dag_run_id, XComModel.task_id, XComModel.key, XComModel.value, XComModel.timestamp).where(
            XComModel.dag_run_id.in_(pks), XComModel.key.in_(XCOM_KEYS), XComModel.map_index == -1
        )
    ):
        xcoms.setdefault(run_pk, {})[(task_id, key)] = _decode(value)
        if key == "progress":
            stamps.setdefault(run_pk, {})[task_id] = ts
    jobs = []
    for r in runs:
        kind, plan = classify(r.dag_id)  # type: ignore[misc]
        tasks = sorted(
            tis.get((r.dag_id, r.run_id), []),
            key=lambda t: (t.start or datetime.max.replace(tzinfo=timezone.utc), t.task_id),
        )
        job = Job(
            dag_id=r.dag_id,
            run_id=r.run_id,
            kind=kind,
            plan=plan,
            state=str(r.state or "queued"),
            run_type=str(r.run_type),
            run_after=r.run_after,
            start=r.start_date,
            end=r.end_date,
            conf=dict(r.conf or {}),
            triggered_by=getattr(r, "triggering_user_name", None),
            tasks=tasks,
            xcoms=xcoms.get(r.id, {}),
        )
        _describe(job, config)
        job.progress = _progress(job, stamps.get(r.id, {}))
        jobs.append(job)
    return jobs


def _describe(job: Job, config: "Config | None") -> None:
    """Cluster, repository, plan, backup and restore ids of a job."""
    conf = job.conf
    plan = config.plans.get(job.plan) if (config is not None and job.plan) else None
    if job.kind == "backup":
        if plan is not None:
            job.cluster, job.repository = getattr(plan, "cluster", None), getattr(plan, "repository", None)
        commit = job.result("commit")
        job.backup_id = job.xcoms.get(("capture", "backup_id")) or (
            commit.get("backup_id") if isinstance(commit, dict) else None
        )
    elif job.kind == "restore":
        if plan is not None:
            job.cluster, job.repository = cast("RestorePlan", plan).target_cluster, plan.repository
        else:
            job.cluster = conf.get("target_cluster")
            job.repository = conf.get("repository")
            job.plan = conf.get("plan") or None
            if config is not None:  # the trigger form's defaults when the conf leaves them out
                job.cluster = job.cluster or next(iter(config.clusters), None)
                job.repository = job.repository or next(iter(config.repositories), None)
        job.backup_id = job.xcoms.get(("preflight", "backup_id")) or (
            conf.get("backup") if conf.get("backup") not in (None, "", "latest") else None
        )
        job.restore_id = job.xcoms.get(("restore", "restore_id"))
    elif job.kind == "migration" and plan is not None:
        migration = cast("MigrationPlan", plan)
        job.cluster = f"{migration.source_cluster}→{migration.target_cluster}"
        job.repository = plan.repository
        job.backup_id = job.xcoms.get(("capture", "backup_id"))
        job.restore_id = job.xcoms.get(("restore", "restore_id"))


def _progress(job: Job, stamps: dict[str, datetime]) -> Progress:
    p = Progress(tasks_total=len(job.tasks), tasks_done=sum(1 for t in job.tasks if t.state in ("success", "skipped")))
    running = [t.task_id for t in job.tasks if t.state == "running"]
    p.phase = running[0] if running else None
    live = [
        (stamps.get(task) or datetime.min.replace(tzinfo=timezone.utc), task, value)
        for (task, key), value in job.xcoms.items()
        if key == "progress" and isinstance(value, dict)
    ]
    if live and (job.running or not _final_counts(job, p)):
        _, task, info = max(live, key=lambda x: (x[0], x[1]))
        p.source = "xcom"
        p.phase = f"{task}: {info['phase']}" if info.get("phase") else task
        for name in ("objects_done", "objects_total", "bytes_done", "bytes_total"):
            if isinstance(info.get(name), (int, float)):
                setattr(p, name, int(info[name]))
        return p
    if not job.running:
        _final_counts(job, p)
    return p


def _final_counts(job: Job, p: Progress) -> bool:
    """Fill done/total from the results of finished tasks; False when there are none."""
    commit = job.result("commit")
    restore = job.result("workloads") or job.result("restore")  # the restore's last part, else its first
    if isinstance(commit, dict) and "objects" in commit:
        p.objects_done = p.objects_total = int(commit.get("objects") or 0)
        if commit.get("archive_bytes") is not None:
            p.bytes_done = p.bytes_total = int(commit["archive_bytes"])
        p.source = "result"
        return True
    if isinstance(restore, dict) and isinstance(restore.get("counts"), dict):
        total = sum(int(v) for v in restore["counts"].values() if isinstance(v, (int, float)))
        p.objects_total = total
        p.objects_done = total - int(restore.get("failed") or 0)
        p.source = "result"
        return True
    capture = job.result("capture")
    if isinstance(capture, dict) and "objects" in capture:
        p.objects_done = p.objects_total = int(capture.get("objects") or 0)
        p.source = "result"
        return True
    return False
