"""Object key names under a repository prefix — the on-bucket contract every component shares.

::

    repo.json                               format version, KDF salt/cost, key-check value
    catalog/<plan>/<backup-id>.json         small summary per backup: listing without archives
    backups/<id>/resources.tar.gz.enc       encrypted tar.gz of every resource document
    backups/<id>/index.jsonl.gz             plain index (one JSON line per object), for the UI
    backups/<id>/pending.json               the manifest-to-be between capture and commit (pipelines)
    backups/<id>/manifest.json              written LAST: its presence means "complete"
    restores/<id>/report.json               restore reports
    drills/<backup-id>/<drill-id>.json      evidence of restore drills
    approvals/<approval-id>.json            human decisions: cutovers, restores, suspicious backups
    restic/...                              restic repositories for volume data (later issue)

Inside the archive the layout follows Velero:
``resources/<group-resource>/<version>/namespaces/<ns>/<name>.json`` for namespaced objects and
``resources/<group-resource>/<version>/cluster/<name>.json`` for cluster-scoped ones, where
group-resource is ``<resource>`` for the core group and ``<resource>.<group>`` otherwise.
"""

from __future__ import annotations

import re

REPO_CONFIG = "repo.json"
BACKUPS = "backups/"
CATALOG = "catalog/"
RESTORES = "restores/"
RESTIC = "restic/"
DRILLS = "drills/"  # drills/<backup id>/<drill id>.json: evidence of restore drills
APPROVALS = "approvals/"  # approvals/<approval id>.json: who decided what, when, and why

ARCHIVE_NAME = "resources.tar.gz.enc"
INDEX_NAME = "index.jsonl.gz"
INDEX_MAP_NAME = "index-map.json"  # which index member holds which namespaces (partial reads)
MANIFEST_NAME = "manifest.json"
PENDING_NAME = "pending.json"  # the manifest-to-be while volume data is still being copied

# ids and plan names become key segments: keep them to DNS-label-like characters
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def check_segment(value: str, what: str) -> str:
    """Reject ids/plan names that would escape their prefix or make awkward keys."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise ValueError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit)"
        )
    return value


def backup_prefix(backup_id: str) -> str:
    return f"{BACKUPS}{check_segment(backup_id, 'backup id')}/"


def archive_key(backup_id: str) -> str:
    return backup_prefix(backup_id) + ARCHIVE_NAME


def index_key(backup_id: str) -> str:
    return backup_prefix(backup_id) + INDEX_NAME


def index_map_key(backup_id: str) -> str:
    return backup_prefix(backup_id) + INDEX_MAP_NAME


def pending_key(backup_id: str) -> str:
    return backup_prefix(backup_id) + PENDING_NAME


def manifest_key(backup_id: str) -> str:
    return backup_prefix(backup_id) + MANIFEST_NAME


def catalog_prefix(plan: str | None = None) -> str:
    return CATALOG if plan is None else f"{CATALOG}{check_segment(plan, 'plan name')}/"


def catalog_key(plan: str, backup_id: str) -> str:
    return f"{catalog_prefix(plan)}{check_segment(backup_id, 'backup id')}.json"


def restore_report_key(restore_id: str) -> str:
    return f"{RESTORES}{check_segment(restore_id, 'restore id')}/report.json"


def drill_key(backup_id: str, drill_id: str) -> str:
    return f"{DRILLS}{check_segment(backup_id, 'backup id')}/{check_segment(drill_id, 'drill id')}.json"


def approval_key(approval_id: str) -> str:
    return f"{APPROVALS}{check_segment(approval_id, 'approval id')}.json"


def restic_prefix(name: str = "") -> str:
    """Where restic repositories for volume data live (``restic/<name>/``)."""
    return RESTIC + (f"{check_segment(name, 'restic repository name')}/" if name else "")


def backup_id_of(key: str) -> str | None:
    """``backups/<id>/...`` → ``<id>``; anything else → None."""
    if not key.startswith(BACKUPS):
        return None
    rest = key[len(BACKUPS) :]
    return rest.split("/", 1)[0] if "/" in rest else None


def group_resource(resource: str, group: str | None) -> str:
    """Velero's group-resource: ``pods`` (core) or ``deployments.apps``."""
    return f"{resource}.{group}" if group else resource


def member_path(group_resource_name: str, version: str, namespace: str | None, name: str) -> str:
    """The tar member name of one resource document."""
    for part, what in ((group_resource_name, "group-resource"), (version, "version"), (name, "name")):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"invalid {what} {part!r} for an archive path")
    if namespace:
        if "/" in namespace or namespace in (".", ".."):
            raise ValueError(f"invalid namespace {namespace!r} for an archive path")
        return f"resources/{group_resource_name}/{version}/namespaces/{namespace}/{name}.json"
    return f"resources/{group_resource_name}/{version}/cluster/{name}.json"
