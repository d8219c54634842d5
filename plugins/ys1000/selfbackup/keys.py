"""Object keys of self-backups under a repository prefix (beside ``backups/``, never mixed)::

self-backups/<id>/manifest.json            written last; parts, sizes, checksums (no secrets)
self-backups/<id>/<part>.enc               encrypted parts: metadata-db, config, connections, variables
"""

from __future__ import annotations

from ys1000.repository.layout import check_segment

SELF_BACKUPS = "self-backups/"
MANIFEST_NAME = "manifest.json"


def self_backup_prefix(backup_id: str | None = None) -> str:
    return SELF_BACKUPS if backup_id is None else f"{SELF_BACKUPS}{check_segment(backup_id, 'self-backup id')}/"


def part_key(backup_id: str, part: str) -> str:
    return f"{self_backup_prefix(backup_id)}{check_segment(part, 'self-backup part')}.enc"


def manifest_key(backup_id: str) -> str:
    return self_backup_prefix(backup_id) + MANIFEST_NAME


def self_backup_id_of(key: str) -> str | None:
    if not key.startswith(SELF_BACKUPS):
        return None
    rest = key[len(SELF_BACKUPS) :]
    return rest.split("/", 1)[0] if "/" in rest else None
