"""``config/clusters.yaml``: cluster name → how to reach it and per-cluster data-movement settings.

Credentials live in an Airflow connection of type ``kubernetes`` (``connection_id``), never here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .types import ClockTime, ConnId, Duration, StrictModel, format_hhmm, invalid

DEFAULT_MOVER_IMAGE = "ys1000/mover:0.1.0"

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")


class BandwidthWindow(StrictModel):
    """A daily window ``start``–``end`` (``end`` < ``start`` crosses midnight)."""

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _not_empty(self) -> "BandwidthWindow":
        if self.start == self.end:
            raise invalid(
                "equals start; the window would be empty (omit 'window' to limit all day)",
                field="end",
                value=format_hhmm(self.end),
            )
        return self

    def contains(self, at: dt.time) -> bool:
        """Whether the wall-clock time ``at`` is inside the window (start inclusive, end exclusive)."""
        at = dt.time(at.hour, at.minute, at.second)
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end


class Bandwidth(StrictModel):
    """Bandwidth limit for data movement (mover jobs) of this cluster, in KiB/s."""

    limit_kib_s: int = Field(gt=0)
    window: BandwidthWindow | None = Field(
        None, description="when the limit applies each day (cluster-local time); None = all day"
    )

    def limit_at(self, at: dt.time) -> int | None:
        """The limit (KiB/s) in force at ``at``, or None when unlimited then."""
        if self.window is None or self.window.contains(at):
            return self.limit_kib_s
        return None


class ClusterSpec(StrictModel):
    """One protected cluster."""

    connection_id: ConnId = Field(description="Airflow connection (conn type 'kubernetes')")
    image_registry_rewrite: dict[str, str] = Field(
        default_factory=dict, description="registry host on the source → host to use on restore"
    )
    bandwidth: Bandwidth | None = None
    mover_image: str = DEFAULT_MOVER_IMAGE
    max_concurrent_movers: int = Field(2, ge=1)
    restore_approval: Literal["none", "required"] = Field(
        "none",
        description="required: every restore into this cluster that overwrites (existing: update, or a "
        "target namespace that is not empty) waits for a human's approval",
    )
    approvers: list[str] = Field(default_factory=list, description="Airflow users who may approve restores here")
    approval_timeout: Duration = Field(dt.timedelta(hours=24))
    notes: str = ""

    @field_validator("image_registry_rewrite")
    @classmethod
    def _hosts(cls, mapping: dict[str, str]) -> dict[str, str]:
        for old, new in mapping.items():
            for host in (old, new):
                if not _HOST.match(host):
                    raise invalid(
                        f"is not a registry host (in {old!r} → {new!r}); expected 'host' or "
                        "'host:port' (no scheme, no path)",
                        field=(old,),
                        value=host,
                    )
        return mapping

    @field_validator("mover_image")
    @classmethod
    def _image(cls, image: str) -> str:
        if not image.strip() or " " in image:
            raise invalid("is not a container image reference")
        return image

    def rewrite_image(self, image: str) -> str:
        """Apply ``image_registry_rewrite`` to an image reference (F2): the registry host is
        replaced, path and tag/digest are kept; images without a registry host (``nginx:1.25``,
        ``library/nginx``) are left alone."""
        first, sep, rest = image.partition("/")
        if not sep or not ("." in first or ":" in first or first == "localhost"):
            return image
        new = self.image_registry_rewrite.get(first)
        return f"{new}/{rest}" if new else image
