"""Two-phase backups: captured (pending) first, complete only after finalize."""

from datetime import timedelta

import pytest

from ys1000.repository import IncompleteBackupError

PLAN = "plan-a"


def _capture(repo, bid):
    with repo.begin_backup(bid, PLAN) as w:
        w.add(
            {"metadata": {"name": "c", "namespace": "n"}, "data": {"k": "v"}},
            group="",
            version="v1",
            resource="configmaps",
            kind="ConfigMap",
        )
        return w.commit(namespaces=["n"], final=False)


def test_pending_backup_is_not_usable_until_finalized(repo):
    _capture(repo, "b1")
    assert repo.list_backups(PLAN) == []
    with pytest.raises(IncompleteBackupError):
        repo.manifest("b1")
    assert repo.verify("b1", pending=True).objects == 1
    m = repo.finalize_backup("b1", volumes=[{"pvc": "n/data", "snapshot": "s1"}], warnings=["w"])
    assert m.volumes == [{"pvc": "n/data", "snapshot": "s1"}] and "w" in m.warnings
    assert [e.backup_id for e in repo.list_backups(PLAN)] == ["b1"]
    assert repo.verify("b1").ok
    assert not repo.store.exists("backups/b1/pending.json")
    # a retried finalize is harmless
    assert repo.finalize_backup("b1").backup_id == "b1"


def test_stale_pending_backup_is_cleaned_up(repo):
    _capture(repo, "b2")
    report = repo.cleanup_incomplete(timedelta(0))
    assert report.deleted == ["b2"]
    assert list(repo.store.list("backups/b2/")) == []
