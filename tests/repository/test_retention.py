"""Retention, Object Lock immutability and cleanup of incomplete backups."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from repo_helpers import configmap, write_backup
from ys1000.repository import ObjectLocked, S3Store
from ys1000.repository import layout


def _utcnow():
    return datetime.now(timezone.utc)


def test_retention_deletes_old_backups_manifest_first(repo):
    now = _utcnow()
    write_backup(repo, "old-1", now=now - timedelta(days=10))
    write_backup(repo, "old-2", now=now - timedelta(days=8))
    write_backup(repo, "new-1", now=now - timedelta(days=1))
    write_backup(repo, "other-plan", "plan-b", now=now - timedelta(days=30))
    deleted = []
    real_delete = repo.store.delete
    repo.store.delete = lambda key: (deleted.append(key), real_delete(key))[1]
    try:
        report = repo.apply_retention("plan-a", timedelta(days=7), now=now)
    finally:
        del repo.store.delete
    assert sorted(report.deleted) == ["old-1", "old-2"]
    assert report.kept == ["new-1"] and report.waiting == [] and report.errors == {}
    for bid in ("old-1", "old-2"):
        mine = [k for k in deleted if bid in k]
        assert mine[:2] == [layout.catalog_key("plan-a", bid), layout.manifest_key(bid)]
        assert list(repo.store.list(layout.backup_prefix(bid))) == []
    assert [e.backup_id for e in repo.list_backups()] == ["new-1", "other-plan"]


def test_object_lock_backup_carries_retention_and_early_delete_is_refused(s3, locked_repo):
    repo = locked_repo
    store = repo.store
    assert isinstance(store, S3Store) and store.object_lock_enabled()
    write_backup(repo, "locked-1", retention=timedelta(days=7))
    m = repo.manifest("locked-1")
    assert m.retain_until is not None and m.retain_until > _utcnow() + timedelta(days=6)
    client = s3.client()
    full = lambda key: f"{store.prefix}/{key}"  # noqa: E731
    for key in (m.archive.key, m.index.key, layout.manifest_key("locked-1"), layout.catalog_key("plan-a", "locked-1")):
        head = client.head_object(Bucket=store.bucket, Key=full(key))
        assert head["ObjectLockMode"] == "COMPLIANCE", key
        assert head["ObjectLockRetainUntilDate"] >= m.retain_until.replace(microsecond=0), key
        # the store itself refuses an early delete of the object version
        with pytest.raises(ClientError) as info:
            client.delete_object(Bucket=store.bucket, Key=full(key), VersionId=head["VersionId"])
        # AWS answers 403 AccessDenied; MinIO 400 InvalidRequest "Object is WORM protected …"
        error = info.value.response["Error"]
        assert error["Code"] == "AccessDenied" or "WORM protected" in error["Message"], error
    # our store reports rather than attempts
    with pytest.raises(ObjectLocked) as locked:
        store.delete(m.archive.key)
    assert locked.value.retain_until is not None
    with pytest.raises(ObjectLocked):
        repo.delete_backup("locked-1")
    # retention due by age, but locked: reported as waiting with its date, nothing deleted
    report = repo.apply_retention("plan-a", timedelta(0), now=_utcnow() + timedelta(hours=1))
    assert report.deleted == [] and report.errors == {}
    assert [(w.backup_id, w.retain_until) for w in report.waiting] == [("locked-1", m.retain_until)]
    repo.verify("locked-1")
    assert [e.backup_id for e in repo.list_backups()] == ["locked-1"]


def test_unlocked_objects_in_a_lock_bucket_are_deleted_with_all_versions(s3, locked_repo):
    repo = locked_repo
    write_backup(repo, "no-retention")  # no retention given: nothing locked
    assert repo.manifest("no-retention").retain_until is None
    repo.delete_backup("no-retention")
    versions = s3.client().list_object_versions(Bucket=repo.store.bucket, Prefix="locked/backups/")
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    assert repo.list_backups() == []


def test_large_archive_multipart_upload_is_locked(s3, locked_repo):
    """Archives above the multipart threshold (8 MiB) get their retention too."""
    import os

    repo = locked_repo
    with repo.begin_backup("big-locked", "plan-a", retention=timedelta(days=1)) as w:
        for i in range(12):  # random data does not compress: ~12 MiB archive
            w.add(
                {"metadata": {"name": f"blob-{i}", "namespace": "demo"}, "data": {"b": os.urandom(768 * 1024).hex()}},
                group="",
                version="v1",
                resource="configmaps",
                kind="ConfigMap",
            )
        m = w.commit()
    assert m.archive.size > 8 * 1024 * 1024
    head = s3.client().head_object(Bucket=repo.store.bucket, Key=f"locked/{m.archive.key}")
    assert head["ObjectLockRetainUntilDate"] >= m.retain_until.replace(microsecond=0)
    assert repo.verify("big-locked").objects == 12


def test_cleanup_incomplete_removes_stale_and_keeps_in_flight(repo):
    write_backup(repo, "complete")
    # a stale incomplete backup (crashed before its manifest) and one still being written
    for bid in ("crashed", "in-flight"):
        w = repo.begin_backup(bid, "plan-a")
        w.add(configmap("demo", "x"), group="", version="v1", resource="configmaps", kind="ConfigMap")
        w._finish_streams()
        w._archive_spool.seek(0)
        repo.store.put(layout.archive_key(bid), w._archive_spool)
    # "now" is two hours ahead for the stale one's point of view: emulate by grace window
    report = repo.cleanup_incomplete(timedelta(hours=1), now=_utcnow())
    assert report.deleted == [] and sorted(report.in_flight) == ["crashed", "in-flight"]
    report = repo.cleanup_incomplete(timedelta(hours=1), now=_utcnow() + timedelta(hours=2))
    assert sorted(report.deleted) == ["crashed", "in-flight"] and report.errors == {}
    assert {layout.backup_id_of(o.key) for o in repo.store.list("backups/")} == {"complete"}
    repo.verify("complete")


def test_cleanup_keeps_fresh_in_flight_while_removing_stale(local_store):
    """Mixed ages in one pass: the LocalStore lets us back-date the stale backup's files."""
    import os

    from repo_helpers import PASSPHRASE
    from ys1000.repository import Repository

    repo = Repository.init(local_store, PASSPHRASE)
    for bid in ("stale", "fresh"):
        local_store.put(layout.archive_key(bid), b"partial upload")
    old = (_utcnow() - timedelta(days=2)).timestamp()
    os.utime(local_store.root / "backups" / "stale" / layout.ARCHIVE_NAME, (old, old))
    report = repo.cleanup_incomplete(timedelta(hours=6))
    assert report.deleted == ["stale"] and report.in_flight == ["fresh"]
    assert local_store.exists(layout.archive_key("fresh"))
    assert not local_store.exists(layout.archive_key("stale"))


def _drilled(repo, bid: str, status: str, minute: int) -> None:
    repo.save_drill(
        {
            "drill_id": f"drill-20261130{minute:06d}-abcd",
            "backup_id": bid,
            "status": status,
            "rto_seconds": 12.5 if status == "verified" else None,
            "reason": None if status == "verified" else "workloads not ready: pod x: ErrImagePull",
            "finished": "2026-11-30T00:00:00+00:00",
        }
    )


def test_retention_keeps_the_newest_verified_backup_while_newer_ones_are_unverified(repo):
    now = _utcnow()
    for i, age in enumerate((20, 15, 10, 9, 1)):
        write_backup(repo, f"b{i}", now=now - timedelta(days=age))
    _drilled(repo, "b0", "verified", 1)
    _drilled(repo, "b1", "verified", 2)
    _drilled(repo, "b2", "verified", 3)
    _drilled(repo, "b2", "failed", 4)  # its newest drill failed: no longer proven
    _drilled(repo, "b3", "failed", 5)
    report = repo.apply_retention("plan-a", timedelta(days=7), now=now)
    # b1 is the newest backup a drill proved; b2, b3 (failed drills) and b4 (none) are not proven
    assert sorted(report.deleted) == ["b0", "b2", "b3"]
    assert report.protected == {"b1": "the newest verified backup of plan-a; the 3 newer one(s) are not verified"}
    assert report.kept == ["b4"]
    states = {e.backup_id: (e.drill or {}).get("state") for e in repo.list_backups("plan-a")}
    assert states == {"b4": None, "b1": "verified"}

    # once a newer backup is verified, the old one goes at the next run
    _drilled(repo, "b4", "verified", 6)
    report = repo.apply_retention("plan-a", timedelta(days=7), now=now)
    assert report.deleted == ["b1"] and report.protected == {} and report.kept == ["b4"]
