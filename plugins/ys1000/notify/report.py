"""The daily report (``ys1000_report`` DAG) and the failure callbacks of plan DAGs.

The daily report lists the window's jobs (through the Airflow REST API), each plan's recovery
objectives and the human decisions taken in the window (``approvals/<id>.json`` in the plans'
repositories: who approved or rejected which cutover, restore or suspicious backup, and why).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ys1000.notify.config import ReportsConfig, load_reports_config
from ys1000.notify.summary import JobRecord, Message, daily_summary

log = logging.getLogger(__name__)

REPORT_DAG_ID = "ys1000_report"


def _ts(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def collect_jobs(
    api: Any,
    since: dt.datetime,
    until: dt.datetime,
    *,
    ui_url: str | None = None,
    exclude: tuple[str, ...] = (REPORT_DAG_ID,),
) -> list[JobRecord]:
    """Every ys1000 DAG run that started or ended in [since, until] (the report's own runs
    excluded), with failure reasons and the backup summaries of ``commit`` tasks."""
    from ys1000.notify.notifiers import FAILURE_XCOM_KEY

    runs: dict[tuple[str, str], dict] = {}
    for flt in ({"run_after_gte": since, "run_after_lte": until}, {"end_date_gte": since, "end_date_lte": until}):
        for r in api.dag_runs(**flt):
            runs[(r["dag_id"], r["dag_run_id"])] = r
    jobs: list[JobRecord] = []
    for (dag_id, run_id), r in sorted(runs.items()):
        if dag_id in exclude:
            continue
        job = JobRecord(
            dag_id=dag_id,
            run_id=run_id,
            state=str(r.get("state")),
            start=_ts(r.get("start_date")) or _ts(r.get("run_after")),
            end=_ts(r.get("end_date")),
        )
        if ui_url:
            job.url = f"{ui_url.rstrip('/')}/dags/{dag_id}/runs/{run_id}"
        tis = api.task_instances(dag_id, run_id)
        by_id = {ti["task_id"]: ti for ti in tis if ti.get("map_index", -1) in (-1, None)}
        if "commit" in by_id and by_id["commit"].get("state") == "success":
            value = api.xcom(dag_id, run_id, "commit")
            if isinstance(value, dict):
                job.backup = value
        failed = [ti for ti in tis if ti.get("state") == "failed"]
        job.failed_tasks = [ti["task_id"] for ti in failed]
        if job.state == "failed":
            job.reason = _reason(api, dag_id, run_id, failed, FAILURE_XCOM_KEY)
        jobs.append(job)
    return jobs


def _reason(api: Any, dag_id: str, run_id: str, failed: list[dict], key: str) -> str:
    """Why a run failed: the reason its failure alert recorded (XCom), else the failed task's log
    tail, else the task states."""
    for ti in failed:
        rec = api.xcom(dag_id, run_id, ti["task_id"], key)
        if isinstance(rec, dict) and rec.get("reason"):
            return f"{ti['task_id']}: {rec['reason']}"
    for ti in failed:
        tail = api.log_tail(dag_id, run_id, ti["task_id"], int(ti.get("try_number") or 1))
        if tail:
            return f"{ti['task_id']}: {tail}"
    if failed:
        return "; ".join(f"task {ti['task_id']} {ti.get('state')}" for ti in failed)
    return "the run was marked failed (no task failed: cancelled or timed out)"


def send_message(config: ReportsConfig, channels: Sequence[str], message: Message) -> list[str]:
    """Send ``message`` to ``channels``; returns what was sent, raises after trying all if one failed."""
    from ys1000.notify.notifiers import EmailNotifier, WeComNotifier

    sent, errors = [], []
    for ch in channels:
        try:
            if ch == "email" and config.email:
                EmailNotifier(
                    to=config.email.recipients,
                    smtp_conn_id=config.email.connection_id,
                    from_email=config.email.sender,
                    subject_prefix=config.email.subject_prefix,
                ).send(message)
                sent.append(f"email to {', '.join(config.email.recipients)}")
            elif ch == "wecom" and config.wecom:
                WeComNotifier(
                    wecom_conn_id=config.wecom.connection_id,
                    msgtype=config.wecom.msgtype,
                    mentioned_mobile_list=config.wecom.mentioned_mobile_list,
                ).send(message)
                sent.append(f"Work WeChat ({config.wecom.connection_id})")
        except Exception as exc:
            log.error("sending the report by %s failed: %s", ch, exc)
            errors.append(f"{ch}: {exc}")
    if errors:
        raise RuntimeError("report not delivered on every channel: " + "; ".join(errors))
    return sent


def run_daily_report(config_dir: str | Path, *, until: dt.datetime | None = None, api: Any = None) -> dict:
    """The report task: collect the window's jobs and decisions, build the summary, send it."""
    from ys1000.notify.airflow_api import AirflowApiClient

    config = load_reports_config(config_dir)
    until = until or dt.datetime.now(dt.timezone.utc)
    since = until - config.daily.window
    channels = config.channels_for("daily")
    if not channels and api is None:
        log.warning("no report channel is configured in %s/reports.yaml (daily.channels): nothing to send", config_dir)
        return {"jobs": None, "failed": None, "sent": [], "subject": None}
    api = api or AirflowApiClient.from_connection(config.airflow_api.connection_id)
    jobs = collect_jobs(api, since, until, ui_url=config.ui_url)
    decisions = window_approvals(config_dir, since, until)
    message = daily_summary(
        jobs,
        since=since,
        until=until,
        timezone=config.daily.timezone,
        objectives=plans_objectives(config_dir, until),
        approvals=decisions,
    )
    log.info("%s\n%s", message.subject, message.text)
    sent = send_message(config, channels, message) if channels else []
    return {
        "jobs": len(jobs),
        "failed": sum(j.state == "failed" for j in jobs),
        "sent": sent,
        "subject": message.subject,
        "decisions": sum(not d.get("error") for d in decisions),
    }


def failure_callbacks(config_dir: str | Path | None = None, *, plan: Any = None) -> list:
    """Notifiers for a DAG's (or ``default_args``') ``on_failure_callback``: the channels of
    ``reports.yaml`` ``failure_alerts``, plus the plan's own ``notify`` (extra e-mail recipients
    through the same SMTP connection; its own WeChat connection). Reads YAML only (parse-safe);
    an invalid ``reports.yaml`` raises ``ConfigError``."""
    from ys1000.config import default_config_dir
    from ys1000.notify.notifiers import EmailNotifier, WeComNotifier

    config = load_reports_config(Path(config_dir) if config_dir else default_config_dir())
    out: list = []
    channels = config.channels_for("failure_alerts")
    tz = config.daily.timezone
    recipients: list[str] = list(config.email.recipients) if (config.email and "email" in channels) else []
    notify = getattr(plan, "notify", None)
    if notify is not None and notify.email:
        recipients += [r for r in notify.email if r not in recipients]
    if recipients:
        email = config.email
        out.append(
            EmailNotifier(
                to=recipients,
                smtp_conn_id=email.connection_id if email else "smtp_default",
                from_email=email.sender if email else None,
                subject_prefix=email.subject_prefix if email else "[YS1000]",
                timezone=tz,
            )
        )
    wecoms: list[tuple[str, str]] = []
    if config.wecom and "wecom" in channels:
        wecoms.append((config.wecom.connection_id, config.wecom.msgtype))
    if notify is not None and notify.wechat and notify.wechat not in [c for c, _ in wecoms]:
        wecoms.append((notify.wechat, config.wecom.msgtype if config.wecom else "markdown"))
    for conn_id, msgtype in wecoms:
        out.append(WeComNotifier(wecom_conn_id=conn_id, msgtype=msgtype, timezone=tz))
    return out


def plans_objectives(config_dir: str | Path, now: dt.datetime) -> list[dict]:
    """RPO/RTO standing of every backup plan that declares an objective or a drill."""
    from ys1000.airflow.connections import open_repository_for
    from ys1000.config import BackupPlan, ConfigError, load_plans
    from ys1000.objectives import plan_objectives

    try:
        config, plans = load_plans(Path(config_dir))
    except ConfigError as exc:
        log.warning("recovery objectives left out of the report: %s", exc)
        return []
    out = []
    for plan in sorted((p for p in plans.values() if isinstance(p, BackupPlan)), key=lambda p: p.name):
        if plan.rpo is None and plan.rto is None and plan.drill is None:
            continue
        try:
            repo = open_repository_for(plan.repository, config.repositories[plan.repository])
            out.append(plan_objectives(repo, plan, now))
        except Exception as exc:  # one unreadable repository must not cost the whole report
            out.append({"plan": plan.name, "error": f"{type(exc).__name__}: {exc}"})
    return out


def window_approvals(config_dir: str | Path, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """The human decisions taken in [since, until) (``ys1000.airflow.approval``), oldest first,
    from the repositories the configured plans use (each read once), each with its ``repository``;
    a repository that cannot be read is one ``{"repository", "error"}`` entry (the report goes on)."""
    from ys1000.airflow.connections import open_repository_for
    from ys1000.config import ConfigError, load_plans

    try:
        config, plans = load_plans(Path(config_dir))
    except ConfigError as exc:
        log.warning("decisions left out of the report: %s", exc)
        return []
    names = sorted({str(r) for p in plans.values() if (r := getattr(p, "repository", None))})  # errors have none
    out: list[dict] = []
    errors: list[dict] = []
    for name in names:
        if name not in config.repositories:
            continue
        try:
            repo = open_repository_for(name, config.repositories[name])
            records = _decisions_between(repo, since, until)
        except Exception as exc:  # one unreadable repository must not cost the whole report
            errors.append({"repository": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        out += [{**rec, "repository": name} for rec in records]
    out.sort(key=lambda r: (_decided_at(r) or since, str(r.get("approval_id") or "")))
    return out + errors


def _decided_at(rec: dict) -> dt.datetime | None:
    """When a decision was taken: its ``at``, else the UTC time its id starts with."""
    try:
        when = _ts(rec.get("at"))
    except (TypeError, ValueError, AttributeError):
        when = None
    if when is None:
        try:
            when = dt.datetime.strptime(str(rec.get("approval_id") or "")[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when


def _decisions_between(repo: Any, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Decision records of ``repo`` taken in [since, until). Approval ids start with the UTC time
    of the decision (``%Y%m%d%H%M%S``), so only records whose name is in the window (a second of
    slack each side) are read: years of decisions are listed, not fetched, every day."""
    import json

    from ys1000.repository import ObjectNotFound, layout

    lo = (since - dt.timedelta(seconds=1)).astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    hi = (until + dt.timedelta(seconds=1)).astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    out = []
    for obj in repo.store.list(layout.APPROVALS):
        name = obj.key[len(layout.APPROVALS) :]
        stamp = name[:14]
        if not name.endswith(".json") or (stamp.isdigit() and not lo <= stamp <= hi):
            continue
        try:
            rec = json.loads(repo.store.get(obj.key))
        except (ObjectNotFound, ValueError):
            continue
        when = _decided_at(rec) if isinstance(rec, dict) else None
        if when is not None and since <= when < until:
            out.append(rec)
    return out


def alert_plan(config_dir: str | Path, plan: Any, subject: str, text: str, *, what: str = "alert") -> list[str]:
    """Send an alert about ``plan`` at once through its failure-alert channels (the global ones
    and the plan's ``notify``); returns the channels reached. One channel down does not silence
    the others; raises only when none was reached."""
    notifiers = failure_callbacks(config_dir, plan=plan)
    if not notifiers:
        log.warning("%s of plan %s: no failure-alert channel is configured", what, plan.name)
        return []
    sent, errors = [], []
    for notifier in notifiers:
        try:
            notifier.send(Message(subject, text, text))
            sent.append(type(notifier).__name__)
        except Exception as exc:
            log.error("%s of plan %s by %s failed: %s", what, plan.name, type(notifier).__name__, exc)
            errors.append(exc)
    if not sent:
        raise RuntimeError(f"the {what} of plan {plan.name} reached no channel: {errors[0]}")
    return sent


def run_rpo_watch(config_dir: str | Path, *, now: dt.datetime | None = None) -> list[dict]:
    """The ``ys1000_objectives`` task: every plan with an ``rpo`` checked against its repository;
    a breach is alerted once through the plan's failure-alert channels (``ys1000.objectives``)."""
    from ys1000.airflow.connections import open_repository_for
    from ys1000.config import BackupPlan, load_plans
    from ys1000.objectives import watch_rpo

    now = now or dt.datetime.now(dt.timezone.utc)
    config, plans = load_plans(Path(config_dir))
    out = []
    for plan in plans.values():
        if not isinstance(plan, BackupPlan) or plan.rpo is None:
            continue
        # create=True: a plan that never ran has no repository yet, and that is a breach to report
        repo = open_repository_for(plan.repository, config.repositories[plan.repository], create=True)

        def send(subject: str, text: str, plan: BackupPlan = plan) -> None:
            alert_plan(config_dir, plan, subject, text, what="RPO alert")

        status = watch_rpo(repo, plan, now, send)
        log.info(
            "plan %s: RPO %s, newest backup %s (%s)",
            plan.name,
            status.get("rpo_state"),
            status.get("last_backup"),
            "alerted " + status["alerted"] if status.get("alerted") else "no alert",
        )
        out.append(status)
    return out
