"""The drill engine without Airflow: a cancelled drill still removes its scratch namespaces and
records why; how many backups a plan made since its last drill (``every: N``)."""

from __future__ import annotations

import threading
import uuid

from ys1000.drill.run import DrillSpec, run_drill
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import RepositoryConfig, open_repository
from ys1000.waiting import wait_until


def test_a_cancelled_drill_removes_its_scratch_namespace(source, make_namespace, tmp_path):
    from ys1000.backup import BackupSpec
    from ys1000.backup.pipeline import run_backup

    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    labels = {"app": "stuck"}
    source.apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "stuck"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {  # no node has this label: the drill waits for readiness until cancelled
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"ys1000.io/no-such-node": "x"},
                        "containers": [{"name": "c", "image": "busybox"}],
                    },
                },
            },
        },
    )
    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "repo")), "k", create=True)
    bid = f"stuck-{uuid.uuid4().hex[:6]}"
    run_backup(kube, repo, BackupSpec(backup_id=bid, plan="stuck", namespaces=[ns], scope="resources"))

    cancel = threading.Event()
    spec = DrillSpec(backup_id=bid, timeout=600)
    scratch = f"{ns}-{spec.suffix}"
    outcome: dict = {}

    def drill():
        try:
            run_drill(kube, repo, spec, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what was raised
            outcome["error"] = exc

    t = threading.Thread(target=drill)
    t.start()
    wait_until(
        lambda: kube.get_or_none(f"/apis/apps/v1/namespaces/{scratch}/deployments/stuck") is not None,
        timeout=120,
        what="the drill's restore into its scratch namespace",
    )
    cancel.set()
    t.join(240)
    assert not t.is_alive()
    assert isinstance(outcome.get("error"), InterruptedError)
    assert kube.get_or_none(NAMESPACES.path(name=scratch)) is None
    [ev] = repo.drills(bid)
    assert ev["status"] == "failed" and ev["reason"].startswith("InterruptedError")
    assert ev["cleanup"] == [scratch] and "rto_seconds" not in ev


def test_backups_since_the_last_drill(tmp_path):
    from ys1000.airflow.operators.drill import _undrilled

    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "repo")), "k", create=True)
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)

    def backup(bid: str, minutes_ago: int) -> None:
        with repo.begin_backup(bid, "p", now=now - dt.timedelta(minutes=minutes_ago)) as w:
            w.commit(namespaces=["n"])

    assert _undrilled(repo, "p") == 0
    backup("p-1", 30)
    backup("p-2", 20)
    assert _undrilled(repo, "p") == 2  # never drilled: every backup counts
    repo.save_drill({"drill_id": "drill-20261130000000-aaaa", "backup_id": "p-2", "status": "failed"})
    backup("p-3", 10)
    backup("p-4", 5)
    assert _undrilled(repo, "p") == 2  # p-3 and p-4 since the drill of p-2 (failed or not)
