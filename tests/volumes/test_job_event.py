"""``steps.job_event``: a waited-for Job's end as the step's event (no cluster needed)."""

from ys1000.kube.jobs import JobState
from ys1000.volumes.steps import job_event

MOVER = {"kind": "job", "namespace": "ns", "name": "m", "label": "mover backup of ns/data"}
HOOK = {"kind": "hook", "namespace": "ns", "name": "h"}
RESULT = '{"ys1000":"progress","bytes_done":1}\n{"ys1000":"result","ok":true,"snapshot_id":"abc"}\n'


def test_running_is_no_event():
    assert job_event(JobState(False), MOVER) is None
    assert job_event(JobState(False), HOOK) is None


def test_mover_success_carries_its_result_line():
    event = job_event(JobState(True, True, exit_code=0, log=RESULT), MOVER)
    assert event == {"status": "success", "result": {"ys1000": "result", "ok": True, "snapshot_id": "abc"}}


def test_mover_without_result_line_fails_naming_it():
    event = job_event(JobState(True, True, exit_code=0, log="no protocol\n"), MOVER)
    assert event is not None and event["status"] == "failed"
    assert "mover backup of ns/data" in event["reason"]


def test_mover_reporting_not_ok_fails():
    log = '{"ys1000":"result","ok":false,"error":"restic exploded"}\n'
    event = job_event(JobState(True, False, exit_code=1, reason="exit code 1", log=log), MOVER)
    assert event is not None and event["status"] == "failed"


def test_hook_is_its_end_only():
    assert job_event(JobState(True, True, exit_code=0), HOOK) == {"status": "success", "reason": ""}
    assert job_event(JobState(True, False, exit_code=3, reason="exit code 3"), HOOK) == {
        "status": "failed",
        "reason": "exit code 3",
    }
