"""Human-readable figures, one way everywhere (task logs, reports, the UI)."""

from __future__ import annotations


def human_size(n: int | float | str | None, missing: str = "-") -> str:
    """``1536`` → ``"1.5 KiB"``; ``missing`` for an unknown size."""
    if n is None or n == "":
        return missing
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
