"""The anomaly guard (issue 15): the rules on hand-made profiles, and the guard wired into the one
commit step, the catalog, approvals, retention and ``latest`` on a real (directory) repository.

The acceptance case with real restic, S3 and a sandbox cluster is ``test_anomaly_sandbox.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ys1000.backup.anomaly import MIN_NEW_BYTES, assess_profile, objects_gone, pvc_change, profile_of
from ys1000.backup.pipeline import commit
from ys1000.config.plans import AnomalyGuard
from ys1000.config.specs import BackupNotResolved, resolve_backup, resolve_latest
from ys1000.repository import LocalStore, Repository

GUARD = AnomalyGuard()
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


# -- the rules, on hand-made profiles ---------------------------------------------------------------


def _pvc(before, rewritten, ratio, added=1 << 20, files=None):
    return {
        "files": files if files is not None else before,
        "before": before,
        "changed": round(rewritten * before),
        "rewritten": rewritten,
        "added": added,
        "packed": int(added * ratio),
        "ratio": ratio,
    }


def _history(*shares, key="shop/data"):
    return [{"previous": "x", "pvcs": {key: _pvc(50, s, 0.3)}} for s in shares]


def test_pvc_change_counts_removed_files_from_the_previous_total():
    rec = {
        "namespace": "shop",
        "pvc": "data",
        "restic": {
            "total_files": 45,
            "files_new": 5,
            "files_changed": 30,
            "files_unmodified": 10,
            "bytes_added": 1000,
            "bytes_added_packed": 990,
        },
    }
    # 50 before: 30 changed, 10 unmodified, so 10 were removed (5 new ones do not count)
    assert pvc_change(rec, 50) == {
        "files": 45,
        "new": 5,
        "changed": 30,
        "added": 1000,
        "packed": 990,
        "ratio": 0.99,
        "before": 50,
        "removed": 10,
        "rewritten": 0.8,
    }
    # no previous record: files only, nothing to compare
    first = pvc_change(rec, None)
    assert first is not None and "rewritten" not in first and "before" not in first
    # a PVC whose data is not in the backup, or a snapshot-only one, has no profile
    assert pvc_change({"namespace": "shop", "pvc": "data", "error": "mover failed"}, 50) is None
    assert pvc_change({"namespace": "shop", "pvc": "data", "csi": {"snapshot": "s"}}, 50) is None


def test_first_backup_and_pvc_without_previous_record_are_never_flagged():
    rec = {
        "namespace": "shop",
        "pvc": "data",
        "restic": {
            "total_files": 50,
            "files_new": 50,
            "files_changed": 0,
            "files_unmodified": 0,
            "bytes_added": 10 << 20,
            "bytes_added_packed": 10 << 20,
        },
    }
    first = assess_profile(profile_of([rec], {}), [], GUARD)
    assert (first.suspicious, first.reasons) == (False, [])
    assert first.profile["pvcs"]["shop/data"]["files"] == 50
    # a second backup, but this PVC is new in it: nothing to compare with
    other = assess_profile(profile_of([rec], {"shop/other": 50}, previous="b0"), _history(0.01), GUARD)
    assert other.suspicious is False


def test_mass_rewrite_with_incompressible_data_is_flagged_with_numbers():
    verdict = assess_profile(
        {"previous": "b9", "pvcs": {"shop/data": _pvc(50, 0.8, 1.0)}}, _history(0.02, 0.01, 0.0), GUARD
    )
    assert verdict.suspicious
    assert verdict.reasons == [
        "PVC shop/data: 80% of its 50 files rewritten (plan's normal ≤ 2%), "
        "new data does not compress (packed/added 1.00)"
    ]
    # the second backup of a plan has no measured change yet: the configured share alone decides
    second = assess_profile({"previous": "b0", "pvcs": {"shop/data": _pvc(50, 0.8, 1.0)}}, [{}], GUARD)
    assert second.reasons == [
        "PVC shop/data: 80% of its 50 files rewritten (no earlier change measured), "
        "new data does not compress (packed/added 1.00)"
    ]


@pytest.mark.parametrize(
    "pvc, history, why",
    [
        (_pvc(8, 1.0, 1.0), _history(0.0), "a PVC with fewer than min_files files is not judged"),
        (_pvc(50, 0.8, 0.35), _history(0.01), "a rewrite with compressible (text) data is not flagged"),
        (_pvc(50, 0.95, 1.0), _history(0.9, 0.85), "a plan whose history rewrites most files is not flagged"),
        (_pvc(50, 0.45, 1.0), _history(0.01), "under the configured share (0.5)"),
        (_pvc(50, 0.8, 1.0, added=MIN_NEW_BYTES - 1), _history(0.0), "too little new data to judge"),
        ({**_pvc(50, 0.8, 1.0), "ratio": None}, _history(0.0), "compressibility unknown (an older mover)"),
    ],
)
def test_not_flagged(pvc, history, why):
    verdict = assess_profile({"previous": "b1", "pvcs": {"shop/data": pvc}}, history, GUARD)
    assert verdict.suspicious is False, why


def test_history_plus_margin_raises_the_bar():
    # normal up to 40% rewritten: 55% is within 40% + margin 20%, 65% is not
    history = _history(0.4, 0.1)
    assert not assess_profile({"pvcs": {"shop/data": _pvc(50, 0.55, 1.0)}}, history, GUARD).suspicious
    assert assess_profile({"pvcs": {"shop/data": _pvc(50, 0.65, 1.0)}}, history, GUARD).suspicious
    # each PVC has its own normal: a log volume that rotates every file says nothing about data
    assert assess_profile(
        {"pvcs": {"shop/data": _pvc(50, 0.8, 1.0)}}, _history(1.0, key="shop/logs") + _history(0.0), GUARD
    ).suspicious
    # disabled: never flagged
    off = AnomalyGuard(enabled=False)
    assert not assess_profile({"pvcs": {"shop/data": _pvc(50, 1.0, 1.0)}}, [], off).suspicious


def _objects(kind, ns, n, start=0):
    return [(kind, ns, f"{kind}-{i}") for i in range(start, start + n)]


def test_objects_gone_in_all_and_per_kind():
    before = (
        _objects("configmaps", "shop", 31) + _objects("secrets", "shop", 9) + _objects("deployments.apps", "shop", 3)
    )
    now = set(
        _objects("configmaps", "shop", 21) + _objects("secrets", "shop", 9) + _objects("deployments.apps", "shop", 3)
    )
    overall, kinds = objects_gone(before, now, GUARD.min_objects)
    assert overall == {"before": 43, "gone": 10, "share": 0.2326}
    assert kinds == {"configmaps in shop": {"before": 31, "gone": 10, "share": 0.3226}}  # only kinds that lost any
    profile = {"previous": "b1", "objects": overall, "kinds": kinds}
    verdict = assess_profile(profile, [{"objects": {"before": 43, "gone": 0, "share": 0.0}}], GUARD)
    assert verdict.reasons == ["configmaps in shop: 10 of 31 gone (32%)"]
    # a kind with fewer than min_objects is judged only within the whole
    small_before = _objects("secrets", "shop", 9) + _objects("configmaps", "shop", 31)
    overall, kinds = objects_gone(small_before, set(_objects("configmaps", "shop", 31)), GUARD.min_objects)
    assert kinds == {} and overall["gone"] == 9
    assert assess_profile({"objects": overall}, [], GUARD).suspicious is False  # 9 of 40 = 22%
    # most of everything gone: the whole is flagged too, naming the previous backup
    overall, kinds = objects_gone(before, set(_objects("configmaps", "shop", 5)), GUARD.min_objects)
    verdict = assess_profile({"previous": "b1", "objects": overall, "kinds": kinds}, [], GUARD)
    assert verdict.reasons == [
        "38 of 43 objects gone since backup b1 (88%)",
        "configmaps in shop: 26 of 31 gone (84%)",
    ]
    # a plan whose history routinely drops a third of its config maps is not alarmed by it
    normal = [{"objects": {"before": 43, "gone": 12, "share": 0.28}, "kinds": {"configmaps in shop": {"share": 0.39}}}]
    overall, kinds = objects_gone(before, now, GUARD.min_objects)
    assert not assess_profile({"objects": overall, "kinds": kinds}, normal, GUARD).suspicious
    # fewer than min_objects in all: never judged
    overall, _ = objects_gone(_objects("configmaps", "shop", 3), set(), GUARD.min_objects)
    assert not assess_profile({"objects": overall}, [], GUARD).suspicious


# -- wired into commit, catalog, approvals, retention, latest (a directory repository) -------------


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository.init(LocalStore(tmp_path / "repo"), "anomaly-test-key")


def _cm(name):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": {}}


def _volume(changed, unmodified, added, packed, total=50, new=0):
    return {
        "namespace": "shop",
        "pvc": "data",
        "method": "filecopy",
        "restic": {
            "repository": "restic/source/shop/",
            "snapshot_id": "s",
            "total_files": total,
            "total_bytes": total * 16384,
            "files_new": new,
            "files_changed": changed,
            "files_unmodified": unmodified,
            "bytes_added": added,
            "bytes_added_packed": packed,
        },
    }


def _pending(repo, bid, minute, configmaps=31, secrets=6, plan="shop", guard=None):
    with repo.begin_backup(bid, plan, now=T0 + timedelta(minutes=minute)) as w:
        for i in range(configmaps):
            w.add(_cm(f"cm-{i:02d}"), group="", version="v1", resource="configmaps", kind="ConfigMap")
        for i in range(secrets):
            doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{i}", "namespace": "shop"}}
            w.add(doc, group="", version="v1", resource="secrets", kind="Secret")
        # a pod a ReplicaSet re-creates under a new name every time: never counted as gone
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{bid}", "namespace": "shop"}}
        w.add(pod, group="", version="v1", resource="pods", kind="Pod", restore=False, reason="re-created")
        w.commit(namespaces=["shop"], selection={"namespaces": ["shop"]}, anomaly_guard=guard, final=False)


def _approve(repo, bid, decision, minute):
    repo.save_approval(
        {
            "approval_id": f"202611{minute:08d}-anomaly-{bid}",
            "kind": "anomaly",
            "plan": "shop",
            "subject": bid,
            "decision": decision,
            "by": "alice",
            "at": (T0 + timedelta(days=1, minutes=minute)).isoformat(),
            "comment": "checked",
        }
    )


def test_commit_marks_a_suspicious_backup_and_a_human_confirms_it(repo):
    _pending(repo, "b0", 0)
    m0 = commit(repo, "b0", [_volume(0, 0, 800_000, 200_000, new=50)])
    assert m0.status == "Completed" and m0.anomaly is not None
    assert m0.anomaly["suspicious"] is False and m0.anomaly["profile"]["previous"] is None
    for i in range(1, 4):  # ordinary days: one file of fifty changed
        _pending(repo, f"b{i}", i)
        m = commit(repo, f"b{i}", [_volume(1, 49, 20_000, 9_000)])
        assert m.anomaly == {
            "suspicious": False,
            "reasons": [],
            "profile": {
                "previous": f"b{i - 1}",
                "pvcs": {
                    "shop/data": {
                        "files": 50,
                        "new": 0,
                        "changed": 1,
                        "added": 20_000,
                        "packed": 9_000,
                        "ratio": 0.45,
                        "before": 50,
                        "removed": 0,
                        "rewritten": 0.02,
                    }
                },
                "objects": {"before": 37, "gone": 0, "share": 0.0},
            },
        }
    # the attack: 30 files rewritten and 10 removed with random bytes, 10 of 31 config maps deleted
    _pending(repo, "b4", 4, configmaps=21)
    m4 = commit(repo, "b4", [_volume(30, 10, 500_000, 501_000, total=40)])
    assert m4.status == "Completed"  # committed: suspicious is a mark beside the status
    assert m4.anomaly is not None and m4.anomaly["suspicious"] is True
    assert m4.anomaly["reasons"] == [
        "PVC shop/data: 80% of its 50 files rewritten (plan's normal ≤ 2%), new data does not compress "
        "(packed/added 1.00)",
        "configmaps in shop: 10 of 31 gone (32%)",
    ]
    assert repo.manifest("b4").anomaly == m4.anomaly  # stored, and the commit is idempotent
    assert commit(repo, "b4", [_volume(0, 50, 0, 0)]).anomaly == m4.anomaly
    entries = {e.backup_id: e for e in repo.list_backups("shop")}
    assert entries["b4"].suspicious and entries["b4"].anomaly == m4.anomaly and entries["b4"].review is None
    assert not any(entries[f"b{i}"].suspicious for i in range(4))

    # latest skips it, saying which and why; by id it is used as given
    resolved = resolve_latest(repo, "latest", "shop")
    assert resolved.backup_id == "b3" and [b for b, _ in resolved.skipped] == ["b4"]
    assert "skipped backup b4" in resolved.notes()[0] and "configmaps in shop: 10 of 31 gone" in resolved.notes()[0]
    assert resolve_backup(repo, "latest", "shop") == "b3"
    assert resolve_backup(repo, "latest", "shop", allow_suspicious=True) == "b4"
    assert resolve_backup(repo, "b4", "shop") == "b4"

    # rejected: still suspicious, the decision shown
    _approve(repo, "b4", "rejected", 1)
    e4 = next(e for e in repo.list_backups("shop") if e.backup_id == "b4")
    assert e4.suspicious and e4.review is not None and e4.review["decision"] == "rejected"
    assert resolve_backup(repo, "latest", "shop") == "b3"
    # a later approval (the newest decision counts): the change was expected
    _approve(repo, "b4", "approved", 2)
    e4 = next(e for e in repo.list_backups("shop") if e.backup_id == "b4")
    assert not e4.suspicious and e4.review is not None and e4.review["by"] == "alice"
    assert e4.anomaly is not None and e4.anomaly["suspicious"] is True  # the committed verdict is unchanged
    assert resolve_backup(repo, "latest", "shop") == "b4"

    # a confirmed backup is part of the plan's normal: the same change again is not flagged
    _pending(repo, "b5", 5, configmaps=21)
    m5 = commit(repo, "b5", [_volume(32, 8, 500_000, 501_000, total=40)])
    assert m5.anomaly is not None and m5.anomaly["suspicious"] is False, m5.anomaly


def test_unconfirmed_suspicious_backups_do_not_widen_the_normal_range(repo):
    _pending(repo, "a0", 0)
    commit(repo, "a0", [_volume(0, 0, 800_000, 200_000, new=50)])
    _pending(repo, "a1", 1)
    assert not commit(repo, "a1", [_volume(1, 49, 20_000, 9_000)]).anomaly["suspicious"]  # type: ignore[index]
    _pending(repo, "a2", 2)
    assert commit(repo, "a2", [_volume(45, 5, 700_000, 700_500)]).anomaly["suspicious"]  # type: ignore[index]
    # the attack goes on: against a2 (the previous backup) 80% again; a2's 90% is not "normal"
    _pending(repo, "a3", 3)
    m3 = commit(repo, "a3", [_volume(40, 10, 600_000, 600_400)])
    assert m3.anomaly is not None and m3.anomaly["suspicious"], m3.anomaly


def test_the_plan_settings_recorded_at_capture_decide(repo):
    off = AnomalyGuard(enabled=False).model_dump()
    _pending(repo, "c0", 0, guard=off)
    commit(repo, "c0", [_volume(0, 0, 800_000, 200_000, new=50)])
    _pending(repo, "c1", 1, configmaps=1, guard=off)
    m = commit(repo, "c1", [_volume(50, 0, 900_000, 901_000)])
    assert m.anomaly is not None and m.anomaly["suspicious"] is False and "objects" not in m.anomaly["profile"]
    assert m.anomaly_guard == off  # type: ignore[attr-defined]  # the thresholds it was judged by
    # a stricter plan: 10% of files is already unusual
    strict = AnomalyGuard(files_rewritten=0.1, margin=0.05).model_dump()
    _pending(repo, "c2", 2, configmaps=1, guard=strict)
    m = commit(repo, "c2", [_volume(10, 40, 300_000, 300_100)])
    assert m.anomaly is not None and m.anomaly["suspicious"] is True, m.anomaly


def _final(repo, bid, minute, suspicious=False, status="Completed"):
    with repo.begin_backup(bid, "shop", now=T0 + timedelta(days=minute)) as w:
        w.add(_cm("cm"), group="", version="v1", resource="configmaps", kind="ConfigMap")
        w.commit(
            namespaces=["shop"],
            status=status,
            anomaly={"suspicious": suspicious, "reasons": ["PVC shop/data: 90% rewritten"] if suspicious else []},
        )


def test_retention_keeps_the_newest_clean_backup_while_newer_ones_are_suspicious(repo):
    now = T0 + timedelta(days=30)
    _final(repo, "r0", 1)
    _final(repo, "r1", 2)
    _final(repo, "r2", 3, status="PartiallyFailed")  # clean but lacking data: not what `latest` restores
    _final(repo, "r3", 4, suspicious=True)
    _final(repo, "r4", 29, suspicious=True)
    report = repo.apply_retention("shop", timedelta(days=7), now=now)
    # without the guard every backup but r4 would go; r1 is what `latest` restores
    assert sorted(report.deleted) == ["r0", "r2", "r3"]
    assert report.kept == ["r4"]
    assert report.protected == {
        "r1": "the newest clean backup of shop; 2 newer one(s) are suspicious (r4, r3) until a human confirms the change"
    }
    assert resolve_backup(repo, "latest", "shop") == "r1"
    # confirmed: r4 is the clean copy now, and r1 goes like any old backup
    _approve(repo, "r4", "approved", 3)
    report = repo.apply_retention("shop", timedelta(days=7), now=now)
    assert report.deleted == ["r1"] and report.protected == {} and report.kept == ["r4"]


def test_retention_drill_protection_ignores_verified_suspicious_backups(repo):
    now = T0 + timedelta(days=30)
    _final(repo, "d0", 1)
    _final(repo, "d1", 2, suspicious=True)
    _final(repo, "d2", 29)
    for minute, bid in enumerate(("d0", "d1")):  # encrypted files restore fine: d1's drill passes
        repo.save_drill(
            {"drill_id": f"drill-2026110{minute}-ab", "backup_id": bid, "status": "verified", "rto_seconds": 3.0}
        )
    report = repo.apply_retention("shop", timedelta(days=7), now=now)
    assert report.protected == {
        "d0": "the newest verified backup of shop; the 2 newer one(s) are not verified or are suspicious (1)"
    }
    assert report.deleted == ["d1"] and report.kept == ["d2"]


def test_latest_with_only_suspicious_backups_says_so(repo):
    _final(repo, "s0", 1, suspicious=True)
    with pytest.raises(BackupNotResolved, match=r"no clean completed backup .*1 suspicious one\(s\) \(s0\)"):
        resolve_backup(repo, "latest", "shop")
    assert resolve_backup(repo, "latest", "shop", allow_suspicious=True) == "s0"
