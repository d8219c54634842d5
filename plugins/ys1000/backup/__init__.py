"""Backup of Kubernetes resources and volume data: selection, preflight (limits), capture, and
the one pipeline (capture → volumes → verify → commit) every caller runs."""

from ys1000.backup.capture import BackupResult
from ys1000.backup.pipeline import run_backup, volume_failures
from ys1000.backup.preflight import Inventory, LimitExceeded, preflight
from ys1000.backup.selection import BackupSpec, Limits, SelectionError

__all__ = [
    "BackupSpec",
    "Limits",
    "BackupResult",
    "Inventory",
    "LimitExceeded",
    "SelectionError",
    "preflight",
    "run_backup",
    "volume_failures",
]
