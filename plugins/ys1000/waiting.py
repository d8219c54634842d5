"""Polling with a deadline, for conditions the API has no watch-friendly shape for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    pass


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy and return that; raise after ``timeout``.

    The pause between checks starts short and doubles up to ``interval``: most conditions (a PVC
    binding, a Job's pod starting) hold within tens of milliseconds, a few take minutes.
    The error names ``what`` was awaited and the last value seen, so a failure explains itself.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    pause = min(0.02, interval)
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(pause)
        pause = min(pause * 2, interval)
