"""The repository connection test: write, read and delete a probe object.

It runs before a repository is initialised (``ys1000 repo test``, the UI's "test" button), so it
needs only a store. Each step is named in the error, with the classified cause (unreachable
endpoint, missing bucket, unknown access key, wrong secret key, access denied), because "it does
not work" is the one message an operator cannot act on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .errors import ConnectionTestError, ObjectLocked, StorageError
from .storage import ObjectStore

PROBE_PREFIX = ".ys1000-probe-"


@dataclass
class ConnectionReport:
    """Outcome of a successful test: what was checked and how long each step took (ms)."""

    store: str
    object_lock: bool
    steps: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ok: bool = True


def check_connection(store: ObjectStore) -> ConnectionReport:
    """Write, read back and delete a probe object; raise ``ConnectionTestError`` naming the step."""
    report = ConnectionReport(store=store.describe(), object_lock=False)
    key = f"{PROBE_PREFIX}{os.urandom(8).hex()}"
    payload = os.urandom(32)

    def step(name: str, fn):
        t0 = time.monotonic()
        try:
            result = fn()
        except ConnectionTestError:
            raise
        except StorageError as exc:
            raise ConnectionTestError(name, exc.reason, kind=exc.kind) from exc
        report.steps[name] = round((time.monotonic() - t0) * 1000, 1)
        return result

    step("write probe", lambda: store.put(key, payload))
    data = step("read probe", lambda: store.get(key))
    if data != payload:
        raise ConnectionTestError(
            "read probe", "the probe object read back differs from what was written", kind="other"
        )
    try:
        step("delete probe", lambda: store.delete(key))
    except ObjectLocked as exc:
        # a bucket default retention locks even the probe: usable, but say so
        report.warnings.append(f"probe object could not be deleted: {exc}")
    report.object_lock = step("object lock", store.object_lock_enabled)
    return report
