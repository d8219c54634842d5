"""Repository access for the pages: configured repositories, cached, with Secret masking.

Repositories are opened like the operators open them (``open_repository_for``: credentials from
the Airflow connection, passphrase from the Variable/connection the config names) and kept for
``ttl`` seconds: opening derives the key (deliberately slow). Indexes of complete backups never
change, so the last few are kept in memory. Approval records (``approvals/<id>.json``) are read
once and kept, keyed by their key, size and write time: each page lists the prefix (one request)
and reads only records it has not seen. Documents are decrypted here, server-side; the
browser only ever sees YAML, and a Secret's values only when the page asks to reveal them.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ys1000.config import Config
    from ys1000.repository import CatalogEntry, IndexEntry, Manifest, Repository

log = logging.getLogger(__name__)

MASK = "***"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def mask_document(obj: dict) -> dict:
    """A copy of ``obj`` with a Secret's values masked: ``data``/``stringData`` values and the
    ``last-applied-configuration`` annotation (``kubectl apply`` puts the whole Secret there)."""
    from ys1000.cli.backup_restore import mask_secret

    obj = copy.deepcopy(obj)
    if obj.get("kind") != "Secret":
        return obj
    mask_secret(obj)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = f"{MASK} (masked: holds the Secret's data)"
    return obj


def to_yaml(obj: dict) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


@dataclass
class VerifyRecord:
    ok: bool
    when: datetime
    user: str | None
    message: str
    checks: list[str] = field(default_factory=list)


def _default_config() -> "Config":
    from ys1000.config import default_config_dir, load_config

    return load_config(default_config_dir())


def _default_opener(name: str, spec: Any) -> "Repository":
    from ys1000.airflow.connections import open_repository_for

    return open_repository_for(name, spec)


class Backups:
    """The configured repositories as the pages use them (thread-safe; one per app)."""

    def __init__(
        self,
        *,
        config_loader: Callable[[], "Config"] = _default_config,
        opener: Callable[[str, Any], "Repository"] = _default_opener,
        ttl: float = 300.0,
        config_ttl: float = 5.0,
        index_cache: int = 4,
    ) -> None:
        self._config_loader = config_loader
        self._opener = opener
        self._ttl = ttl
        self._config_ttl = config_ttl
        self._lock = threading.Lock()
        self._config: tuple[float, "Config"] | None = None
        self._repos: dict[str, tuple[float, "Repository"]] = {}
        self._indexes: OrderedDict[tuple[str, str], list["IndexEntry"]] = OrderedDict()
        self._index_cache = index_cache
        # (repository, key) → ((size, last write), record): approval records, read once
        self._approvals: dict[tuple[str, str], tuple[tuple[int, Any], dict[str, Any]]] = {}
        self.verified: dict[tuple[str, str], VerifyRecord] = {}

    # configuration
    def config(self) -> "Config":
        with self._lock:
            if self._config and time.monotonic() - self._config[0] < self._config_ttl:
                return self._config[1]
        cfg = self._config_loader()
        with self._lock:
            self._config = (time.monotonic(), cfg)
        return cfg

    def repository_names(self) -> list[str]:
        return list(self.config().repositories)

    def describe(self, name: str) -> str:
        spec = self.config().repositories.get(name)
        return spec.describe() if spec is not None and hasattr(spec, "describe") else name

    def repository(self, name: str) -> "Repository":
        cfg = self.config()
        if name not in cfg.repositories:
            raise KeyError(
                f"repository {name!r} is not configured (repositories.yaml has: "
                f"{', '.join(cfg.repositories) or 'none'})"
            )
        with self._lock:
            hit = self._repos.get(name)
            if hit and time.monotonic() - hit[0] < self._ttl:
                return hit[1]
        repo = self._opener(name, cfg.repositories[name])
        with self._lock:
            self._repos[name] = (time.monotonic(), repo)
        return repo

    def forget(self, name: str) -> None:
        """Drop a cached repository (after an error: credentials or key may have changed)."""
        with self._lock:
            self._repos.pop(name, None)

    # reading
    def list_backups(self, name: str, plan: str | None = None) -> list["CatalogEntry"]:
        return self.repository(name).list_backups(plan)

    def manifest(self, name: str, backup_id: str) -> "Manifest":
        return self.repository(name).manifest(backup_id)

    def index(self, name: str, backup_id: str) -> list["IndexEntry"]:
        key = (name, backup_id)
        with self._lock:
            if key in self._indexes:
                self._indexes.move_to_end(key)
                return self._indexes[key]
        entries = list(self.repository(name).read_index(backup_id))
        with self._lock:
            self._indexes[key] = entries
            while len(self._indexes) > self._index_cache:
                self._indexes.popitem(last=False)
        return entries

    def find(
        self, name: str, backup_id: str, group_resource: str, namespace: str | None, obj_name: str
    ) -> "IndexEntry | None":
        for e in self.index(name, backup_id):
            if (
                e.group_resource == group_resource
                and (e.namespace or None) == (namespace or None)
                and e.name == obj_name
            ):
                return e
        return None

    def document(self, name: str, backup_id: str, entry: "IndexEntry") -> dict:
        return self.repository(name).get_resource(backup_id, entry.group_resource, entry.namespace, entry.name)

    def verify(self, name: str, backup_id: str, user: str | None) -> VerifyRecord:
        now = datetime.now(timezone.utc)
        try:
            result = self.repository(name).verify(backup_id)
            rec = VerifyRecord(True, now, user, f"{result.objects} objects verified", list(result.checks))
        except Exception as exc:  # every failure is a verify result to show, not a page error
            rec = VerifyRecord(False, now, user, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.verified[(name, backup_id)] = rec
        return rec

    def drills(self, name: str, backup_id: str) -> list[dict[str, Any]]:
        """Evidence of the backup's restore drills, newest first."""
        return self.repository(name).drills(backup_id)

    def restore_report(self, name: str, restore_id: str) -> dict[str, Any]:
        return self.repository(name).load_restore_report(restore_id)

    def approvals(self, name: str) -> list[dict[str, Any]]:
        """The human decisions stored in repository ``name`` (``Repository.save_approval``),
        newest first. A record that is not valid JSON is left out (logged)."""
        from ys1000.repository import layout
        from ys1000.repository.errors import ObjectNotFound

        repo = self.repository(name)
        listed = [o for o in repo.store.list(layout.APPROVALS) if o.key.endswith(".json")]
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for obj in listed:
            ck, stamp = (name, obj.key), (obj.size, obj.last_modified)
            seen.add(ck)
            with self._lock:
                hit = self._approvals.get(ck)
            if hit is not None and hit[0] == stamp:
                out.append(hit[1])
                continue
            try:
                rec = json.loads(repo.store.get(obj.key))
            except ObjectNotFound:  # deleted since the listing
                continue
            except ValueError as exc:
                log.warning("ys1000 UI: %s in repository %s is not a decision record: %s", obj.key, name, exc)
                continue
            if not isinstance(rec, dict):
                continue
            with self._lock:
                self._approvals[ck] = (stamp, rec)
            out.append(rec)
        with self._lock:  # records removed from the repository leave the cache
            for ck in [k for k in self._approvals if k[0] == name and k not in seen]:
                del self._approvals[ck]
        from .approvals import newest_first

        return newest_first(out)


def filter_index(
    entries: list["IndexEntry"], *, kind: str = "", namespace: str = "", name: str = ""
) -> list["IndexEntry"]:
    """Entries of ``kind`` (case-insensitive), in ``namespace`` ('-': cluster-scoped), whose name
    contains ``name``."""
    kind, namespace, name = kind.strip().lower(), namespace.strip(), name.strip().lower()
    out = []
    for e in entries:
        if kind and e.kind.lower() != kind:
            continue
        if namespace and (e.namespace or "-") != namespace:
            continue
        if name and name not in e.name.lower():
            continue
        out.append(e)
    return out
