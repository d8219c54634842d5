"""``config/self_backup.yaml``: where and when the product backs itself up (F29).

::

    repository: sandbox-s3          # a repository of repositories.yaml (its key encrypts the parts)
    schedule: {type: times_daily, times: ["01:00"], timezone: UTC}
    keep: 14                        # self-backups kept (older ones are deleted)
    metadata_db_connection_id: ys1000_metadata_db   # optional Airflow connection to the metadata DB

Without the file the ``ys1000_self_backup`` DAG exists with no schedule and fails with a clear
message naming this file when triggered.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from ys1000.config.errors import ConfigError, issues_from_validation_error
from ys1000.config.loader import read_yaml
from ys1000.config.schedules import OnDemand, Schedule
from ys1000.config.types import ConnId, DnsLabel, StrictModel

SELF_BACKUP_FILE = "self_backup.yaml"


class SelfBackupConfig(StrictModel):
    repository: DnsLabel
    schedule: Schedule = Field(default_factory=OnDemand)
    keep: int = Field(14, ge=1)
    metadata_db_connection_id: ConnId = "ys1000_metadata_db"


def load_self_backup_config(config_dir: str | Path) -> SelfBackupConfig | None:
    """The validated file, or None when it does not exist."""
    config_dir = Path(config_dir)
    path = config_dir / SELF_BACKUP_FILE
    if not path.exists():
        return None
    doc = read_yaml(path, config_dir)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([doc.issue((), "expected a mapping (repository, schedule, keep)")], path)
    try:
        return SelfBackupConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            issues_from_validation_error(exc, file=doc.display, data=data, line_of=doc.line_of), path
        ) from None
