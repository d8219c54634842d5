"""Restore of Kubernetes resources: ordering, transforms, apply with an existing-resource policy, report."""

from ys1000.restore.engine import (
    ConflictError, ItemResult, RestoreReport, RestoreSpec, check_no_conflicts, find_conflicts, run_restore,
)
from ys1000.restore.transforms import RestoreOptions

__all__ = ["RestoreSpec", "RestoreOptions", "RestoreReport", "ItemResult", "ConflictError",
           "run_restore", "find_conflicts", "check_no_conflicts"]
