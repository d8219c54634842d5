"""Reports (F28): daily job summary and failure alerts by e-mail (SMTP provider) and Work
WeChat group-robot webhooks.

Airflow-free: ``config`` (``reports.yaml`` model), ``summary`` (texts from plain data),
``wecom`` (webhook transport). With Airflow: ``notifiers`` (``BaseNotifier`` classes),
``airflow_api`` (job history through the REST API), ``report`` (the daily report task and
``failure_callbacks``). Import those modules directly; this package imports no Airflow.
"""

from ys1000.notify.config import ReportsConfig, load_reports_config
from ys1000.notify.summary import FailureInfo, JobRecord, Message, daily_summary, failure_alert, wecom_payload


def failure_callbacks(config_dir=None, *, plan=None) -> list:
    """See ``ys1000.notify.report.failure_callbacks`` (imports Airflow's notifier base lazily)."""
    from ys1000.notify.report import failure_callbacks as _fc

    return _fc(config_dir, plan=plan)


__all__ = [
    "FailureInfo",
    "JobRecord",
    "Message",
    "ReportsConfig",
    "daily_summary",
    "failure_alert",
    "failure_callbacks",
    "load_reports_config",
    "wecom_payload",
]
