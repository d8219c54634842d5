"""``VolumeWaitTrigger`` holds an early event until ``not_before`` in a triggerer (Airflow 3.3 fails a
task resumed before the executor reported the exit of the workload that deferred it), not in
``dag.test`` (no executor); the hold survives serialisation (a triggerer restart)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from ys1000.airflow import triggers
from ys1000.airflow.triggers import MIN_WAIT, VolumeWaitTrigger

WHAT = {"kind": "job", "namespace": "ns", "name": "ys1000-backup-data-0123456789", "timeout": 60, "label": "mover"}


@pytest.fixture
def done_at_once(monkeypatch):
    from ys1000.volumes import steps

    monkeypatch.setattr(triggers, "kube_for", lambda cluster, config_dir: object())
    monkeypatch.setattr(steps, "check", lambda kube, what: {"status": "success", "result": {"ok": True}})


def first_event(trigger: VolumeWaitTrigger) -> tuple[dict, float]:
    async def run():
        t0 = time.monotonic()
        event = await anext(trigger.run())
        return event.payload, time.monotonic() - t0

    return asyncio.run(run())


def test_the_hold_starts_when_the_task_defers_and_survives_serialisation():
    before = time.time()
    trigger = VolumeWaitTrigger(cluster="source", config_dir=None, what=WHAT, cleanup={"jobs": [["ns", WHAT["name"]]]})
    assert before + MIN_WAIT <= trigger.not_before <= time.time() + MIN_WAIT
    path, kwargs = trigger.serialize()
    assert path == "ys1000.airflow.triggers.VolumeWaitTrigger"
    again = VolumeWaitTrigger(**kwargs)
    assert (again.not_before, again.deadline, again.cleanup_spec) == (
        trigger.not_before,
        trigger.deadline,
        trigger.cleanup_spec,
    )


def test_in_a_triggerer_an_early_event_waits_until_not_before(done_at_once):
    trigger = VolumeWaitTrigger(
        cluster="source", config_dir=None, what=WHAT, cleanup={}, not_before=time.time() + 1.5, state={"stage": "copy"}
    )
    trigger.task_instance = SimpleNamespace(task_id="volumes")  # what the triggerer sets
    payload, took = first_event(trigger)
    assert payload["status"] == "success" and payload["state"] == {"stage": "copy"}, payload
    assert took >= 1.3, took


def test_inline_in_dag_test_an_event_is_not_held(done_at_once):
    trigger = VolumeWaitTrigger(cluster="source", config_dir=None, what=WHAT, cleanup={}, not_before=time.time() + 30)
    payload, took = first_event(trigger)
    assert payload["status"] == "success" and took < 5, (payload, took)
