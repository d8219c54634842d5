"""Memory stays bounded however many objects a backup holds."""

from __future__ import annotations

import tracemalloc

from repo_helpers import PASSPHRASE
from ys1000.repository import LocalStore, Repository

N = 50_000


def _obj(i: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{i:06d}", "namespace": f"ns-{i % 7}", "labels": {"i": str(i)}},
        "data": {"payload": f"value-{i}-" + "x" * 200},
    }


def test_many_objects_stream_in_bounded_memory(tmp_path):
    repo = Repository.init(LocalStore(tmp_path / "repo"), PASSPHRASE)
    tracemalloc.start()
    try:
        with repo.begin_backup("big", "plan-a") as w:
            for i in range(N):
                w.add(_obj(i), group="", version="v1", resource="configmaps", kind="ConfigMap")
            m = w.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        count = 0
        for i, (entry, obj) in enumerate(repo.iter_resources("big")):
            if i % 9973 == 0:
                assert obj == _obj(i) and entry.name == f"cm-{i:06d}"
            count += 1
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.total == N and count == N
    raw_size = m.uncompressed_size
    assert raw_size > 10 * 1024 * 1024  # the documents alone would be >10 MiB held in memory
    # spools keep at most 8 MiB in RAM each; everything else is per-object and freed
    assert write_peak < 30 * 1024 * 1024, write_peak
    assert read_peak < 30 * 1024 * 1024, read_peak
