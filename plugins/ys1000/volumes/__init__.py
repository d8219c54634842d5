"""Volume data: restic mover Jobs (file copy), CSI snapshots, snapshot + export, restore with data.

Names are imported on first use (PEP 562): the mover process imports ``ys1000.volumes.restic``
alone and must not pay for the Kubernetes and S3 client libraries it never calls.
"""

from importlib import import_module

_EXPORTS = {
    "VolumeOptions": "backup",
    "backup_volumes": "backup",
    "export_later": "backup",
    "MoverError": "movers",
    "MoverRunner": "movers",
    "MoverSpec": "movers",
    "cleanup_run": "movers",
    "VolumeRestoreOptions": "restore",
    "VolumeRestorer": "restore",
    "SnapshotError": "snapshots",
    "ensure_snapshot_class": "snapshots",
    "take_snapshot": "snapshots",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ys1000.volumes' has no attribute {name!r}")
    value = getattr(import_module(f"ys1000.volumes.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
