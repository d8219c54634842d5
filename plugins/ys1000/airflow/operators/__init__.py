"""ys1000 operators, by what they hold: ``base`` (what every operator shares, the one cancel
protocol, deferring waits), ``backup`` and ``restore`` (one engine step each). Migration and plan
hook operators live in ``ys1000.airflow.migration`` and ``ys1000.airflow.hook_operators``."""

from ys1000.airflow.operators.backup import (
    BackupPreflightOperator,
    CaptureResourcesOperator,
    CommitBackupOperator,
    RetentionOperator,
    VerifyBackupOperator,
    VolumeDataOperator,
)
from ys1000.airflow.operators.base import (
    CLEANUP_GRACE,
    Ys1000Operator,
    backup_id_for,
    restore_id_for,
    run_ref,
    run_stamp,
    run_time,
)
from ys1000.airflow.operators.restore import (
    RestoreOperator,
    RestorePreflightOperator,
    RestoreVolumeOperator,
    RestoreWorkloadsOperator,
    resolve_backup,
)

__all__ = [
    "BackupPreflightOperator",
    "CaptureResourcesOperator",
    "CommitBackupOperator",
    "RetentionOperator",
    "VerifyBackupOperator",
    "VolumeDataOperator",
    "CLEANUP_GRACE",
    "Ys1000Operator",
    "backup_id_for",
    "restore_id_for",
    "run_ref",
    "run_stamp",
    "run_time",
    "RestoreOperator",
    "RestorePreflightOperator",
    "RestoreVolumeOperator",
    "RestoreWorkloadsOperator",
    "resolve_backup",
]
