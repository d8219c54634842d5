"""What a backup records about itself: the manifest, the catalog entry and index lines.

The manifest is the proof a backup completed: it holds the checksums every restore verifies,
the counts the UI shows and the source cluster facts a restore needs (Kubernetes version for
field compatibility). The catalog entry is a small copy of the listing fields so that listing a
plan's backups never reads a manifest or an archive. Neither ever holds a credential.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .layout import group_resource

FORMAT_VERSION = 1

Scope = Literal["full", "volumes", "resources"]
Status = Literal["Completed", "PartiallyFailed"]


class ObjectRef(BaseModel):
    """One stored object of a backup with its integrity facts."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="key relative to the repository prefix")
    sha256: str
    size: int


class Manifest(BaseModel):
    """``backups/<id>/manifest.json`` (written last)."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    backup_id: str
    plan: str
    created: datetime
    completed: datetime
    cluster_name: str | None = None
    kubernetes_version: str | None = None
    namespaces: list[str] = Field(default_factory=list)
    scope: Scope = "full"
    selection: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict, description="objects per kind")
    total: int = 0
    restorable: int = Field(0, description="objects not marked restore: false")
    uncompressed_size: int = Field(0, description="sum of the JSON documents' sizes")
    archive: ObjectRef
    index: ObjectRef
    # backups written since the index map (None before): see ys1000.repository.repository
    index_map: ObjectRef | None = None
    encryption: dict[str, Any] = Field(default_factory=dict)
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    retain_until: datetime | None = Field(None, description="S3 Object Lock retention date")
    status: Status = "Completed"
    warnings: list[str] = Field(default_factory=list)
    api_retries: int = Field(0, description="API requests sent again after throttling (429) while capturing")
    made_by: str | None = Field(None, description="the Airflow run that made it: <dag id>/<run id>")
    # the writer's read-back of the archive as it was written (repository._StreamVerifier):
    # {"archive_sha256", "documents", "members_sha256": sha256 of each member's "path\0size\n"};
    # the pending backup's verify proves the stored archive and index against it
    stream_verified: dict[str, Any] | None = None
    # the anomaly guard's verdict (ys1000.backup.anomaly), written once at commit:
    # {"suspicious": bool, "reasons": [str], "profile": {...}}; a human's later confirmation is an
    # approvals/ record (manifests are write-once), merged by Repository.list_backups
    anomaly: dict[str, Any] | None = None


class CatalogEntry(BaseModel):
    """``catalog/<plan>/<id>.json``: what a backup list shows."""

    model_config = ConfigDict(extra="allow")

    backup_id: str
    plan: str
    created: datetime
    completed: datetime
    status: Status
    scope: Scope
    cluster_name: str | None = None
    kubernetes_version: str | None = None
    namespaces: list[str] = Field(default_factory=list)
    total: int = 0
    archive_size: int = 0
    volumes: int = 0
    retain_until: datetime | None = None
    warnings: int = 0
    # the newest restore drill of this backup (from drills/, filled in by list_backups):
    # {"state": verified | failed, "drill_id", "rto_seconds", "reason", "finished"}
    drill: dict[str, Any] | None = None
    # the anomaly guard's verdict as committed (copied from the manifest)
    anomaly: dict[str, Any] | None = None
    # filled in by list_backups from anomaly and approvals/: suspicious unless a human confirmed
    # the change; review is the newest anomaly decision {"decision", "by", "at", "comment", ...}
    suspicious: bool = False
    review: dict[str, Any] | None = None

    @classmethod
    def from_manifest(cls, m: Manifest) -> "CatalogEntry":
        return cls(
            backup_id=m.backup_id,
            plan=m.plan,
            created=m.created,
            completed=m.completed,
            status=m.status,
            scope=m.scope,
            cluster_name=m.cluster_name,
            kubernetes_version=m.kubernetes_version,
            namespaces=m.namespaces,
            total=m.total,
            archive_size=m.archive.size,
            volumes=len(m.volumes),
            retain_until=m.retain_until,
            warnings=len(m.warnings),
            anomaly=m.anomaly,
            suspicious=bool((m.anomaly or {}).get("suspicious")),
        )


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of ``index.jsonl.gz``; ``path`` is the member name in the archive.

    A plain dataclass rather than a pydantic model: an index can have hundreds of thousands of
    lines and is read by the UI on every page view.
    """

    group: str
    version: str
    kind: str
    resource: str
    namespace: str | None
    name: str
    size: int
    path: str
    restore: bool = True
    reason: str | None = None
    member: int | None = None  # plaintext offset of the archive's gzip member holding it (None: older backups)

    @property
    def group_resource(self) -> str:
        return group_resource(self.resource, self.group)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def to_json(self) -> dict[str, Any]:
        d = {
            "group": self.group,
            "version": self.version,
            "kind": self.kind,
            "resource": self.resource,
            "namespace": self.namespace,
            "name": self.name,
            "size": self.size,
            "path": self.path,
            "restore": self.restore,
        }
        if self.reason is not None:
            d["reason"] = self.reason
        if self.member is not None:
            d["member"] = self.member
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "IndexEntry":
        # the slots' own setters, not the frozen __init__ (object.__setattr__ per field): half
        # the cost of reading an index of 100k lines
        e = object.__new__(cls)
        _SET_GROUP(e, d.get("group") or "")
        _SET_VERSION(e, d["version"])
        _SET_KIND(e, d["kind"])
        _SET_RESOURCE(e, d["resource"])
        _SET_NAMESPACE(e, d.get("namespace"))
        _SET_NAME(e, d["name"])
        _SET_SIZE(e, int(d["size"]))
        _SET_PATH(e, d["path"])
        _SET_RESTORE(e, bool(d.get("restore", True)))
        _SET_REASON(e, d.get("reason"))
        _SET_MEMBER(e, d.get("member"))
        return e


_SETTERS = {f.name: getattr(IndexEntry, f.name).__set__ for f in fields(IndexEntry)}
_SET_GROUP, _SET_VERSION, _SET_KIND, _SET_RESOURCE, _SET_NAMESPACE, _SET_NAME = (
    _SETTERS[n] for n in ("group", "version", "kind", "resource", "namespace", "name")
)
_SET_SIZE, _SET_PATH, _SET_RESTORE, _SET_REASON, _SET_MEMBER = (
    _SETTERS[n] for n in ("size", "path", "restore", "reason", "member")
)
assert len(_SETTERS) == 11, "IndexEntry.from_json sets every field: add the new one there"
