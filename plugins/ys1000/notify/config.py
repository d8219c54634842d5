"""``config/reports.yaml``: where job reports and failure alerts go (F28).

Credentials are never here: ``email.connection_id`` names an Airflow ``smtp`` connection (host,
port, login/password, ``from_email``, ``disable_tls``/``disable_ssl`` in its extra) and
``wecom.connection_id`` an Airflow ``http`` connection holding the Work WeChat group-robot webhook
(host = webhook URL or ``qyapi.weixin.qq.com``; the robot key in the password or in the extra as
``key``). The daily report reads job history through the Airflow REST API (connection
``airflow_api.connection_id``). A missing file means: no channel configured (nothing is sent).

Example::

    email:
      connection_id: ys1000_smtp
      recipients: [ops@example.com]
    wecom:
      connection_id: ys1000_wecom
      msgtype: markdown
    daily:
      at: "08:30"
      timezone: Asia/Shanghai
      channels: [email, wecom]
    failure_alerts:
      channels: [email, wecom]
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ys1000.config.errors import ConfigError, issues_from_validation_error
from ys1000.config.loader import read_yaml
from ys1000.config.types import ClockTime, ConnId, Duration, StrictModel, TimeZoneName, invalid

REPORTS_FILE = "reports.yaml"

Channel = Literal["email", "wecom"]
_ALL_CHANNELS: list[Channel] = ["email", "wecom"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EmailChannel(StrictModel):
    """E-mail through the SMTP provider (an Airflow ``smtp`` connection)."""

    connection_id: ConnId = "smtp_default"
    recipients: list[str] = Field(min_length=1)
    sender: str | None = Field(None, description="From address; default: the connection's from_email")
    subject_prefix: str = "[YS1000]"

    @field_validator("recipients")
    @classmethod
    def _emails(cls, emails: list[str]) -> list[str]:
        for e in emails:
            if not isinstance(e, str) or not _EMAIL.match(e):
                raise invalid(f"lists {e!r}, not an e-mail address")
        return emails

    @field_validator("sender")
    @classmethod
    def _sender(cls, sender: str | None) -> str | None:
        if sender is not None and not _EMAIL.search(sender.strip("<>").split("<")[-1]):
            raise invalid("is not an e-mail address")
        return sender


class WeComChannel(StrictModel):
    """Work WeChat (企业微信) group robot webhook (an Airflow ``http`` connection)."""

    connection_id: ConnId = "ys1000_wecom"
    msgtype: Literal["markdown", "text"] = "markdown"
    mentioned_mobile_list: list[str] = Field(
        default_factory=list, description="text messages only: mobiles to @ (or '@all')"
    )


class DailyReport(StrictModel):
    enabled: bool = True
    at: ClockTime = dt.time(8, 0)
    timezone: TimeZoneName = "UTC"
    window: Duration = dt.timedelta(hours=24)
    channels: list[Channel] = Field(default_factory=lambda: list(_ALL_CHANNELS))


class FailureAlerts(StrictModel):
    enabled: bool = True
    channels: list[Channel] = Field(default_factory=lambda: list(_ALL_CHANNELS))


class AirflowApi(StrictModel):
    """How the report task reads job history: the Airflow REST API (api-server)."""

    connection_id: ConnId = "ys1000_airflow_api"


class ReportsConfig(StrictModel):
    email: EmailChannel | None = None
    wecom: WeComChannel | None = None
    daily: DailyReport = Field(default_factory=DailyReport)
    failure_alerts: FailureAlerts = Field(default_factory=FailureAlerts)
    airflow_api: AirflowApi = Field(default_factory=AirflowApi)
    ui_url: str | None = Field(None, description="Airflow UI base URL for links in reports")

    @model_validator(mode="after")
    def _channels_configured(self) -> "ReportsConfig":
        # listing a channel without its section is only an error when the user listed it explicitly
        for section in ("daily", "failure_alerts"):
            sec = getattr(self, section)
            if section not in self.model_fields_set or "channels" not in sec.model_fields_set:
                continue
            for i, ch in enumerate(sec.channels):
                if getattr(self, ch) is None:
                    raise invalid(
                        f"is listed but there is no '{ch}' section configuring it",
                        field=(section, "channels", i),
                        value=ch,
                    )
        return self

    def channels_for(self, what: Literal["daily", "failure_alerts"]) -> list[Channel]:
        """The configured channels a report kind goes to (those listed and configured)."""
        sec = getattr(self, what)
        if not sec.enabled:
            return []
        return [ch for ch in dict.fromkeys(sec.channels) if getattr(self, ch) is not None]

    def cron(self) -> str:
        return f"{self.daily.at.minute} {self.daily.at.hour} * * *"


def load_reports_config(config_dir: str | Path) -> ReportsConfig:
    """``<config_dir>/reports.yaml`` validated; ``ConfigError`` naming file, field and value.

    Read once per file version: the DAG factory asks for it once per plan."""
    path = Path(config_dir) / REPORTS_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return ReportsConfig()
    return _load_reports_config(path, stamp)


@functools.lru_cache(maxsize=16)
def _load_reports_config(path: Path, _stamp: int) -> ReportsConfig:
    config_dir = path.parent
    doc = read_yaml(path, config_dir)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                doc.issue(
                    (), f"expected a mapping (email, wecom, daily, failure_alerts, ...), got {type(data).__name__}"
                )
            ],
            path,
        )
    try:
        return ReportsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            issues_from_validation_error(exc, file=doc.display, data=data, line_of=doc.line_of), path
        ) from None
