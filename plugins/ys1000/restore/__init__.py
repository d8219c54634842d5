"""Restore of Kubernetes resources and volume data: ordering, transforms, apply with an
existing-resource policy, PVCs filled before workloads, report (``pipeline.run_restore``)."""

from ys1000.restore.apply import (
    ConflictError,
    ItemResult,
    RestoreReport,
    RestoreSpec,
    check_no_conflicts,
    find_conflicts,
)
from ys1000.restore.pipeline import run_restore
from ys1000.restore.transforms import RestoreOptions

__all__ = [
    "RestoreSpec",
    "RestoreOptions",
    "RestoreReport",
    "ItemResult",
    "ConflictError",
    "run_restore",
    "find_conflicts",
    "check_no_conflicts",
]
