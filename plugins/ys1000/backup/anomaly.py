"""The anomaly guard: is this backup's change far outside the plan's own history?

Ransomware or a runaway job rewrites most files of a volume with data that does not compress
(encrypted), or deletes objects; the nightly backups would dutifully store it until retention
pushes the last clean copy out. Each backup is compared with the plan's earlier ones at commit
(``ys1000.backup.pipeline.commit``) and, when far outside the normal range, committed but marked
``suspicious`` with human-readable reasons. Retention then keeps the newest clean backup, and
``latest`` skips suspicious ones until a human confirms the change (an ``approvals/`` record).

The profile, kept small because it goes into the manifest and the catalog entry:

- per PVC (from the mover's restic summary, ``volumes[].restic``): ``files`` (total now),
  ``before`` (total in the plan's previous backup of that PVC), ``new``, ``changed``, ``removed``
  (= before − changed − unmodified), ``rewritten`` (= (changed + removed) / before), ``added`` and
  ``packed`` (bytes of new data before and after restic's compression) and ``ratio`` (packed /
  added: ≈ 1 for random or encrypted data, far less for text). restic repositories of format v2
  (what ``restic init`` creates since 0.14) compress; the ratio includes restic's own directory
  metadata, which compresses, so tiny changes (under ``MIN_NEW_BYTES``) are not judged.
- objects: the restorable objects (by group-resource, namespace, name from the index) of the
  newest trusted earlier backup (not suspicious, or confirmed by a human) not in this one, in all
  and per kind and namespace (``"configmaps in shop"``) for kinds with at least
  ``min_objects``; objects a controller re-creates under new names (pods of a
  ReplicaSet, EndpointSlices …) are not restorable and not compared.

Rules (thresholds in ``BackupPlan.anomaly``, ``ys1000.config.plans.AnomalyGuard``): a PVC is
suspicious when its previous backup had ≥ ``min_files`` files, its rewritten share is above
max(``files_rewritten``, the highest share in the plan's history + ``margin``) and its new data
does not compress (ratio ≥ ``incompressible``). Objects are suspicious when the share gone (in
all, or of one kind) is at least max(``resources_gone``, history's highest + ``margin``). The
history is the plan's previous ``history`` backups, minus suspicious ones a human has not
confirmed. The first backup of a plan, and a PVC without an earlier record, are never flagged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AbstractSet

if TYPE_CHECKING:
    from ys1000.config.plans import AnomalyGuard
    from ys1000.repository import Repository
    from ys1000.repository.manifest import IndexEntry, Manifest

log = logging.getLogger(__name__)

MIN_NEW_BYTES = 64 << 10  # less new data than this says nothing about compressibility
ObjectKey = tuple[str, str | None, str]  # group-resource, namespace, name


@dataclass
class Verdict:
    """The guard's finding for one backup (``Manifest.anomaly`` as JSON)."""

    suspicious: bool = False
    reasons: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the guard could not judge (the backup is committed unjudged)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suspicious": self.suspicious, "reasons": list(self.reasons), "profile": self.profile}
        if self.error:
            out["error"] = self.error
        return out


def default_guard() -> "AnomalyGuard":
    from ys1000.config.plans import AnomalyGuard

    return AnomalyGuard()


def guard_from(settings: Any) -> "AnomalyGuard":
    """The guard settings recorded with a pending backup (a dict), or the defaults."""
    from pydantic import ValidationError

    from ys1000.config.plans import AnomalyGuard

    if isinstance(settings, AnomalyGuard):
        return settings
    if isinstance(settings, dict):
        try:
            return AnomalyGuard.model_validate(settings)
        except ValidationError as exc:
            log.warning("anomaly guard settings %s are not valid (%s): using the defaults", settings, exc)
    return AnomalyGuard()


# -- the profile ------------------------------------------------------------------------------------


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def pvc_change(record: dict[str, Any], before: int | None) -> dict[str, Any] | None:
    """One PVC's profile entry from its volume record (``before``: its files in the plan's
    previous backup, when known); None when the backup holds no restic data of it."""
    data = record.get("restic") or {}
    if record.get("error") or not data:
        return None
    files = int(data.get("total_files") or 0)
    changed = int(data.get("files_changed") or 0)
    added = int(data.get("bytes_added") or 0)
    out: dict[str, Any] = {"files": files, "new": int(data.get("files_new") or 0), "changed": changed, "added": added}
    packed = data.get("bytes_added_packed")
    if packed is not None:
        out["packed"] = int(packed)
        if added > 0:
            out["ratio"] = round(int(packed) / added, 3)
    if before:
        out["before"] = before
        unmodified = data.get("files_unmodified")
        removed = max(0, before - changed - int(unmodified)) if unmodified is not None else 0
        if unmodified is not None:
            out["removed"] = removed
        out["rewritten"] = round(min(1.0, (changed + removed) / before), 4)
    return out


def object_key(entry: "IndexEntry") -> ObjectKey:
    return (entry.group_resource, entry.namespace, entry.name)


def kind_label(key: ObjectKey) -> str:
    gr, ns, _ = key
    return f"{gr} in {ns}" if ns else gr


def objects_gone(
    before: Iterable[ObjectKey], now: AbstractSet[ObjectKey], min_objects: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The share of ``before`` not in ``now``: in all, and per kind and namespace for kinds with
    at least ``min_objects`` before (only those that lost any, to keep the profile small)."""
    had: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    for key in before:
        label = kind_label(key)
        had[label] += 1
        if key not in now:
            lost[label] += 1
    total, gone = sum(had.values()), sum(lost.values())
    overall = {"before": total, "gone": gone, "share": round(gone / total, 4) if total else 0.0}
    kinds = {
        label: {"before": n, "gone": lost[label], "share": round(lost[label] / n, 4)}
        for label, n in sorted(had.items())
        if n >= min_objects and lost[label]
    }
    return overall, kinds


def _highest(values: Iterable[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return max(seen) if seen else None


# -- the rules --------------------------------------------------------------------------------------


def judge(profile: dict[str, Any], history: Sequence[dict[str, Any]], guard: "AnomalyGuard") -> list[str]:
    """Why ``profile`` is far outside the plan's normal range (``history``: the profiles of the
    plan's earlier backups that count as normal, newest first); empty when it is not."""
    reasons: list[str] = []
    for key, p in sorted((profile.get("pvcs") or {}).items()):
        rewritten, before = p.get("rewritten"), p.get("before")
        if rewritten is None or not before or before < guard.min_files:
            continue
        normal = _highest(((h.get("pvcs") or {}).get(key) or {}).get("rewritten") for h in history)
        limit = max(guard.files_rewritten, normal + guard.margin if normal is not None else 0.0)
        ratio = p.get("ratio")
        if rewritten <= limit or ratio is None or p.get("added", 0) < MIN_NEW_BYTES or ratio < guard.incompressible:
            continue
        usual = f"plan's normal ≤ {_pct(normal)}" if normal is not None else "no earlier change measured"
        reasons.append(
            f"PVC {key}: {_pct(rewritten)} of its {before} files rewritten ({usual}), "
            f"new data does not compress (packed/added {ratio:.2f})"
        )
    objects = profile.get("objects")
    if objects and objects.get("before", 0) >= guard.min_objects:
        measured = [h for h in history if h.get("objects")]
        normal = _highest((h["objects"] or {}).get("share") for h in measured)
        limit = max(guard.resources_gone, normal + guard.margin if normal is not None else 0.0)
        if objects["gone"] and objects["share"] >= limit:
            reasons.append(
                f"{objects['gone']} of {objects['before']} objects gone since backup {profile.get('previous')} "
                f"({_pct(objects['share'])}{_normal(normal)})"
            )
        for label, k in sorted((profile.get("kinds") or {}).items()):
            if k["before"] < guard.min_objects:
                continue
            normal = _highest(((h.get("kinds") or {}).get(label) or {}).get("share", 0.0) for h in measured)
            limit = max(guard.resources_gone, normal + guard.margin if normal is not None else 0.0)
            if k["gone"] and k["share"] >= limit:
                reasons.append(f"{label}: {k['gone']} of {k['before']} gone ({_pct(k['share'])}{_normal(normal)})")
    return reasons


def _normal(normal: float | None) -> str:
    return f"; plan's normal ≤ {_pct(normal)}" if normal else ""


def profile_of(
    volumes: Sequence[dict[str, Any]],
    previous_files: dict[str, int],
    *,
    previous: str | None = None,
    objects_before: Iterable[ObjectKey] | None = None,
    objects_now: AbstractSet[ObjectKey] | None = None,
    min_objects: int = 10,
) -> dict[str, Any]:
    """This backup's change profile: per PVC from its volume records (``previous_files``:
    ``"ns/pvc"`` → its files in the previous backup), objects gone when both sides are given."""
    profile: dict[str, Any] = {"previous": previous}
    pvcs = {}
    for rec in volumes:
        key = f"{rec.get('namespace')}/{rec.get('pvc')}"
        change = pvc_change(rec, previous_files.get(key))
        if change is not None:
            pvcs[key] = change
    if pvcs:
        profile["pvcs"] = pvcs
    if objects_before is not None and objects_now is not None:
        profile["objects"], kinds = objects_gone(objects_before, objects_now, min_objects)
        if kinds:
            profile["kinds"] = kinds
    return profile


def assess_profile(profile: dict[str, Any], history: Sequence[dict[str, Any]], guard: "AnomalyGuard") -> Verdict:
    """The verdict on a profile (pure: what ``assess`` decides once the profile is read)."""
    if not guard.enabled:
        return Verdict(profile=profile)
    reasons = judge(profile, history, guard)
    return Verdict(bool(reasons), reasons, profile)


# -- reading the repository -------------------------------------------------------------------------


def _restic_files(m: "Manifest") -> dict[str, int]:
    out = {}
    for v in m.volumes:
        data = v.get("restic") or {}
        if data and not v.get("error") and data.get("total_files") is not None:
            out[f"{v['namespace']}/{v['pvc']}"] = int(data["total_files"])
    return out


def assess(
    repo: "Repository",
    backup_id: str,
    volumes: Sequence[dict[str, Any]] | None,
    guard: "AnomalyGuard | None" = None,
) -> Verdict:
    """Judge the pending backup ``backup_id`` (with its ``volumes`` records, not yet committed)
    against the plan's earlier backups in ``repo``. Reads the catalog (earlier profiles), the
    previous backup's manifest and index, and this backup's index."""
    pending = repo.pending_manifest(backup_id)
    guard = guard or guard_from(getattr(pending, "anomaly_guard", None))
    volumes = list(volumes if volumes is not None else pending.volumes)
    if not guard.enabled:
        return Verdict(profile=profile_of(volumes, {}))
    earlier = [
        e
        for e in repo.list_backups(pending.plan)
        if e.backup_id != backup_id and (e.created, e.backup_id) < (pending.created, backup_id)
    ][: guard.history]
    if not earlier:  # the plan's first backup: recorded, never judged
        return Verdict(profile=profile_of(volumes, {}))
    prev = earlier[0]
    prev_manifest = repo.manifest(prev.backup_id)
    previous_files = _restic_files(prev_manifest)
    for older in earlier[1:]:  # a PVC the previous backup lacks: its newest earlier record
        for key, p in (((older.anomaly or {}).get("profile") or {}).get("pvcs") or {}).items():
            if p.get("files") is not None:
                previous_files.setdefault(key, int(p["files"]))
    # objects are compared with the newest *trusted* backup (not suspicious, or confirmed by a
    # human): after a rejected suspicious backup, the next ones still show the loss until the
    # objects are back or someone confirms the change
    base = next((e for e in earlier if not e.suspicious), prev)
    base_manifest = prev_manifest if base is prev else repo.manifest(base.backup_id)
    before: list[ObjectKey] | None = None
    now: set[ObjectKey] | None = None
    if base_manifest.selection == pending.selection and base_manifest.scope == pending.scope:
        # a changed selection (kinds, namespaces of the plan) would show objects as gone
        now = {object_key(e) for e in repo.read_index(backup_id, pending=True) if e.restore}
        before = [object_key(e) for e in repo.read_index(base.backup_id) if e.restore]
    profile = profile_of(
        volumes,
        previous_files,
        previous=base.backup_id,
        objects_before=before,
        objects_now=now,
        min_objects=guard.min_objects,
    )
    if before is None:
        profile["objects_compared"] = False
    history = [
        (e.anomaly or {}).get("profile") or {} for e in earlier if not e.suspicious and (e.anomaly or {}).get("profile")
    ]
    return assess_profile(profile, history, guard)
