"""Volume data: restic mover Jobs (file copy), CSI snapshots, snapshot + export, restore with data."""

from ys1000.volumes.backup import VolumeOptions, backup_volumes, export_later
from ys1000.volumes.jobs import MoverError, MoverRunner, MoverSpec, cleanup_run
from ys1000.volumes.restore import VolumeRestoreOptions, VolumeRestorer
from ys1000.volumes.snapshots import SnapshotError, ensure_snapshot_class, take_snapshot

__all__ = ["VolumeOptions", "backup_volumes", "export_later", "MoverError", "MoverRunner", "MoverSpec",
           "cleanup_run", "VolumeRestoreOptions", "VolumeRestorer", "SnapshotError", "ensure_snapshot_class",
           "take_snapshot"]
