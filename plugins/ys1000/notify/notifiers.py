"""Airflow notifiers (``BaseNotifier``) for ys1000 reports and failure alerts.

- ``EmailNotifier``: e-mail through the SMTP provider's ``SmtpHook`` and an Airflow ``smtp``
  connection (host, port, login/password, ``from_email``; TLS/SSL per the provider's extras).
- ``WeComNotifier``: Work WeChat group-robot webhook from an Airflow ``http`` connection (host =
  webhook URL or host name; key in the password or the extra ``key``).

Both send ``subject``/``text``/``markdown`` when given (templated); otherwise they build the
failure alert from the callback's context, so ``on_failure_callback=[EmailNotifier(...),
WeComNotifier(...)]`` alerts with the DAG, run, task, exception and log link. A failure alert
also records its reason as XCom ``ys1000_failure`` on the failed task, so the daily report can
show it even when the task log cannot be read.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from ys1000.notify.summary import FailureInfo, Message, failure_alert, wecom_payload

FAILURE_XCOM_KEY = "ys1000_failure"


def failure_info(context: Any) -> FailureInfo:
    """A ``FailureInfo`` from a task (or DAG) failure callback's context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    exc = context.get("exception")
    reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else (exc or context.get("reason"))
    when = getattr(ti, "end_date", None) or getattr(dag_run, "end_date", None)
    if when is None:
        import datetime as dt

        when = dt.datetime.now(dt.timezone.utc)
    log_url = None
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # pragma: no cover - log_url needs the webserver config
        log_url = None
    return FailureInfo(
        dag_id=str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "?")),
        run_id=str(getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "?")),
        task_id=getattr(ti, "task_id", None) or "(dag)",
        try_number=getattr(ti, "try_number", None),
        reason=str(reason) if reason else None,
        when=when,
        log_url=log_url,
    )


def record_failure(context: Any, info: FailureInfo) -> None:
    """Leave the reason on the failed task (XCom), for the daily report; best effort."""
    ti = context.get("ti")
    if ti is None or not hasattr(ti, "xcom_push") or not info.reason:
        return
    try:
        ti.xcom_push(key=FAILURE_XCOM_KEY, value={"reason": info.reason[:4000], "task_id": info.task_id})
    except Exception:  # the alert matters more than the record
        pass


class _Ys1000Notifier(BaseNotifier):
    template_fields: Sequence[str] = ("subject", "text", "markdown")

    def __init__(
        self,
        *,
        subject: str | None = None,
        text: str | None = None,
        markdown: str | None = None,
        timezone: str = "UTC",
        record: bool = True,
    ) -> None:
        super().__init__()
        self.subject = subject
        self.text = text
        self.markdown = markdown
        self.timezone = timezone
        self.record = record

    def message(self, context: Any) -> Message:
        if self.subject or self.text or self.markdown:
            text = self.text or self.markdown or ""
            return Message(self.subject or "YS1000", text, self.markdown or text)
        info = failure_info(context)
        if self.record:
            record_failure(context, info)
        return failure_alert(info, timezone=self.timezone)


class EmailNotifier(_Ys1000Notifier):
    """E-mail through the SMTP provider (``SmtpHook``, Airflow ``smtp`` connection)."""

    template_fields: Sequence[str] = ("to", "subject", "text", "markdown")

    def __init__(
        self,
        *,
        to: str | list[str],
        smtp_conn_id: str = "smtp_default",
        from_email: str | None = None,
        subject_prefix: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email
        self.subject_prefix = subject_prefix

    def send(self, message: Message) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        subject = f"{self.subject_prefix} {message.subject}".strip() if self.subject_prefix else message.subject
        body = '<html><body><pre style="font-family: monospace">' + html.escape(message.text) + "</pre></body></html>"
        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=self.to,
                subject=subject,
                html_content=body,
                from_email=self.from_email,
                custom_headers={"X-YS1000": "report"},
            )

    def notify(self, context: Any) -> None:
        self.send(self.message(context))


class WeComNotifier(_Ys1000Notifier):
    """Work WeChat group-robot webhook (Airflow ``http`` connection)."""

    def __init__(
        self,
        *,
        wecom_conn_id: str = "ys1000_wecom",
        msgtype: str = "markdown",
        mentioned_mobile_list: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wecom_conn_id = wecom_conn_id
        self.msgtype = msgtype
        self.mentioned_mobile_list = mentioned_mobile_list or []

    def url(self) -> str:
        from airflow.sdk import BaseHook

        from ys1000.airflow.connections import _mask
        from ys1000.notify.wecom import webhook_url

        conn = BaseHook.get_connection(self.wecom_conn_id)
        extra = conn.extra_dejson or {}
        key = conn.password or extra.get("key")
        if key:
            _mask(key)
        return webhook_url(extra.get("url") or conn.host, key, schema=conn.schema, port=conn.port)

    def send(self, message: Message) -> None:
        from ys1000.notify.wecom import send

        send(self.url(), wecom_payload(message, self.msgtype, self.mentioned_mobile_list))

    def notify(self, context: Any) -> None:
        self.send(self.message(context))
