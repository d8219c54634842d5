"""Backup of Kubernetes resources: selection, preflight (limits), capture into the repository."""

from ys1000.backup.capture import BackupResult, run_backup
from ys1000.backup.preflight import Inventory, LimitExceeded, preflight
from ys1000.backup.selection import BackupSpec, Limits, SelectionError

__all__ = ["BackupSpec", "Limits", "BackupResult", "Inventory", "LimitExceeded", "SelectionError",
           "preflight", "run_backup"]
