"""``ProcessSet``: what it starts, it stops — also children that left the process group."""

from __future__ import annotations

import os
import time

from ys1000_dev.processes import ProcessSet, _clean_environ


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_stop_ends_the_group_and_escaped_children(tmp_path):
    procs = ProcessSet(tmp_path / "logs", _clean_environ())
    # a child in its own session (like Airflow's task processes) and one that ignores SIGTERM
    m = procs.start(
        "parent", ["bash", "-c", f"setsid sleep 300 & echo $! > {tmp_path}/escaped; trap '' TERM; sleep 300"]
    )
    for _ in range(50):
        if (tmp_path / "escaped").exists() and (tmp_path / "escaped").read_text().strip():
            break
        time.sleep(0.1)
    escaped = int((tmp_path / "escaped").read_text())
    # $! is known before the child has called setsid(): wait until it has its own group (a
    # loaded machine can take a while to get there), or fail if it never does
    for _ in range(100):
        if _alive(escaped) and os.getpgid(escaped) != m.proc.pid:
            break
        time.sleep(0.05)
    assert _alive(escaped) and os.getpgid(escaped) != m.proc.pid
    assert set(procs.remaining()) >= {m.proc.pid, escaped}
    t = time.monotonic()
    procs.stop(timeout=2)
    assert time.monotonic() - t < 15
    assert not _alive(m.proc.pid) and not _alive(escaped)
    assert procs.remaining() == []


def test_clean_environ_drops_airflow_settings(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
    monkeypatch.setenv("AIRFLOW_HOME", "/elsewhere")
    monkeypatch.setenv("AIRFLOW_CONN_X", "{}")
    env = _clean_environ()
    assert not any(k.startswith("AIRFLOW") for k in env) and "PATH" in env
