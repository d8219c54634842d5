"""Backup, migration and restore ids derived from the Airflow run: one per run, the same for
every try of it (no Airflow or cluster needed)."""

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from ys1000.airflow.operators import backup_id_for, restore_id_for, run_stamp

WHEN = datetime(2030, 5, 6, 7, 8, 9, 500_000, tzinfo=timezone.utc)


def ctx(run_type: str, run_id: str, logical_date: datetime | None = WHEN) -> dict:
    return {
        "logical_date": logical_date,
        "dag_run": SimpleNamespace(dag_id="ys1000_backup__web", run_id=run_id, run_after=WHEN, run_type=run_type),
    }


@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_a_scheduled_run_is_named_by_its_logical_date(run_type):
    assert backup_id_for("web", ctx(run_type, f"{run_type}__x")) == "web-20300506070809"


@pytest.mark.parametrize("run_type", ["manual", "asset_triggered", "operator_triggered", "asset_materialization"])
def test_other_runs_in_one_second_get_different_ids(run_type):
    a, b = ctx(run_type, "manual__2030-05-06T07:08:09.5"), ctx(run_type, "manual__2030-05-06T07:08:09.9")
    assert backup_id_for("web", a) != backup_id_for("web", b)
    assert backup_id_for("web", a).startswith("web-20300506070809-")
    assert len(run_stamp(a)) == len("20300506070809-0000")
    # every try of one run computes the same id (a retry overwrites its own partial upload)
    assert backup_id_for("web", a) == backup_id_for("web", ctx(run_type, "manual__2030-05-06T07:08:09.5"))


def test_a_manual_run_without_logical_date_uses_run_after():
    run = ctx("manual", "manual__r", logical_date=None)
    assert run_stamp(run).startswith("20300506070809-")


def test_the_enum_run_type_of_a_real_run_counts_like_its_value():
    from airflow.sdk.api.datamodels._generated import DagRunType

    assert run_stamp(ctx(DagRunType.SCHEDULED, "s")) == "20300506070809"  # type: ignore[arg-type]
    assert run_stamp(ctx(DagRunType.MANUAL, "m")) != "20300506070809"  # type: ignore[arg-type]


def test_restore_ids_keep_their_digest():
    assert restore_id_for(ctx("scheduled", "a")) != restore_id_for(ctx("scheduled", "b"))
    assert restore_id_for(ctx("manual", "a")).startswith("restore-20300506070809-")
