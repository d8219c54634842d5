"""The product's own DAGs (``dags/ys1000_system_dags.py``):

- ``ys1000_report``: at ``reports.yaml`` ``daily.at`` in ``daily.timezone``
  (``CronTriggerTimetable``), a summary of every ys1000 job of the last ``daily.window`` (24 h)
  by e-mail and/or Work WeChat (job history through the Airflow REST API; see
  ``ys1000.notify.airflow_api``).
- ``ys1000_self_backup``: on ``self_backup.yaml``'s schedule, the metadata DB, ``config/``,
  connections and variables, encrypted into the configured repository under ``self-backups/``;
  then keeps the newest ``keep``.
- ``ys1000_objectives``: every minute, each plan's newest good backup against its ``rpo``; a
  breach alerts once through the plan's failure-alert channels (``ys1000.objectives``; deadline
  alerts cannot do it: a paused or unscheduled DAG has no run to miss a deadline).

Parse-time work is YAML only. An invalid ``reports.yaml``/``self_backup.yaml`` raises here (this
file's import error names file, field and value); plan DAGs are built by another file and are
unaffected.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPORT_DAG_ID = "ys1000_report"
OBJECTIVES_DAG_ID = "ys1000_objectives"
SELF_BACKUP_DAG_ID = "ys1000_self_backup"
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _cdir(config_dir: str | Path | None) -> Path:
    from ys1000.config import default_config_dir

    return Path(config_dir) if config_dir else default_config_dir()


def report_dag(config_dir: str | Path | None = None):
    from airflow.sdk import DAG, task
    from airflow.timetables.trigger import CronTriggerTimetable

    from ys1000.notify.config import load_reports_config

    cdir = _cdir(config_dir).resolve()
    config = load_reports_config(cdir)
    schedule = (
        CronTriggerTimetable(config.cron(), timezone=config.daily.timezone)
        if config.daily.enabled and config.channels_for("daily")
        else None
    )
    with DAG(
        dag_id=REPORT_DAG_ID,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["ys1000", "report"],
        description=f"Daily job report at {config.daily.at:%H:%M} ({config.daily.timezone})",
        doc_md=__doc__,
        default_args={"owner": "ys1000", "retries": 2, "retry_delay": timedelta(minutes=2)},
    ) as dag:

        @task(task_id="send_report", execution_timeout=timedelta(minutes=15))
        def send_report(**context: Any) -> dict:
            from ys1000.notify.report import run_daily_report

            until = context.get("logical_date") or context["dag_run"].run_after
            return run_daily_report(cdir, until=until)

        send_report()
    return dag


def self_backup_dag(config_dir: str | Path | None = None):
    from airflow.sdk import DAG, task

    from ys1000.config import to_timetable
    from ys1000.notify.report import failure_callbacks
    from ys1000.selfbackup.config import load_self_backup_config

    cdir = _cdir(config_dir).resolve()
    sb = load_self_backup_config(cdir)
    with DAG(
        dag_id=SELF_BACKUP_DAG_ID,
        schedule=to_timetable(sb.schedule) if sb else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["ys1000", "self-backup"],
        description=(
            f"Back up ys1000's own state to repository {sb.repository}"
            if sb
            else "Self-backup (configure config/self_backup.yaml)"
        ),
        doc_md=__doc__,
        default_args={
            "owner": "ys1000",
            "retries": 2,
            "retry_delay": timedelta(minutes=1),
            "on_failure_callback": failure_callbacks(cdir),
        },
    ) as dag:

        @task(task_id="self_backup", execution_timeout=timedelta(hours=2))
        def self_backup(**context: Any) -> dict:
            from ys1000.selfbackup.airflow_side import run_self_backup

            return run_self_backup(cdir)

        self_backup()
    return dag


def objectives_dag(config_dir: str | Path | None = None):
    from airflow.sdk import DAG, task

    cdir = _cdir(config_dir).resolve()
    with DAG(
        dag_id=OBJECTIVES_DAG_ID,
        schedule=timedelta(minutes=1),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["ys1000", "objectives"],
        description="Recovery point objectives: alert when a plan has no backup within its rpo",
        doc_md=__doc__,
        default_args={"owner": "ys1000", "retries": 0},
    ) as dag:

        @task(task_id="check_rpo", execution_timeout=timedelta(minutes=5))
        def check_rpo(**context: Any) -> list:
            from ys1000.notify.report import run_rpo_watch

            return run_rpo_watch(cdir)

        check_rpo()
    return dag


def register(globals_dict: dict[str, Any], config_dir: str | Path | None = None) -> None:
    from airflow.sdk import get_parsing_context

    wanted = get_parsing_context().dag_id
    for dag_id, build in (
        (REPORT_DAG_ID, report_dag),
        (SELF_BACKUP_DAG_ID, self_backup_dag),
        (OBJECTIVES_DAG_ID, objectives_dag),
    ):
        if wanted and wanted != dag_id:
            continue
        globals_dict[dag_id] = build(config_dir)
