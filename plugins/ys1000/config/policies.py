"""``config/policies.yaml``: backup policies (scope, method, export, schedule, retention) and the
four built-in policies of the manual (§5, "从YS1000 v2.6.0版本开始，内置4个备份策略").

The manual does not print the built-ins' names; they follow its §5.1 examples (one per scope
and per method), with the Chinese name kept in ``description``. A user policy may not reuse a
built-in name.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Literal, Mapping

from pydantic import Field, field_validator, model_validator

from .schedules import OnDemand, Schedule, TimesDaily, Weekly, EveryHours
from .types import ClockTime, Duration, StrictModel, invalid

Scope = Literal["full", "volumes", "resources"]
"""full: the namespaces' resources and PVC data; volumes: PVC data only; resources: Kubernetes
resources only. Restore scope follows backup scope."""

Method = Literal["filecopy", "snapshot", "snapshot_export"]
"""filecopy: restic from a mover Job; snapshot: CSI VolumeSnapshot kept in the cluster;
snapshot_export: snapshot, then export the snapshot data to the repository."""

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_pvc_ref(value: Any, *, require_namespace: bool = False) -> str:
    """``<namespace>/<pvc>`` (or just ``<pvc>`` when ``require_namespace`` is False)."""
    if isinstance(value, str):
        ns, sep, pvc = value.rpartition("/")
        ok_ns = bool(_LABEL.match(ns)) and len(ns) <= 63 if sep else not require_namespace
        if ok_ns and _SUBDOMAIN.match(pvc) and len(pvc) <= 253:
            return value
    form = "'<namespace>/<pvc>'" if require_namespace else "'<pvc>' or '<namespace>/<pvc>'"
    raise invalid(f"is not a PVC reference; expected {form} (lowercase DNS names)")


class ExportSpec(StrictModel):
    """When snapshot data is exported to the repository (method ``snapshot_export``)."""

    mode: Literal["all_now", "selected_now", "selected_at"] = "all_now"
    at: ClockTime | None = Field(None, description="selected_at only; in the schedule's time zone")
    pvcs: list[str] = Field(default_factory=list, description="selected_* only: PVCs to export")

    @field_validator("pvcs")
    @classmethod
    def _pvcs(cls, pvcs: list[str]) -> list[str]:
        return [check_pvc_ref(p) for p in pvcs]

    @model_validator(mode="after")
    def _by_mode(self) -> "ExportSpec":
        if self.mode == "selected_at" and self.at is None:
            raise invalid("is required when export mode is selected_at (HH:MM)", field="at", value=None)
        if self.mode != "selected_at" and self.at is not None:
            raise invalid(
                f"is only used with mode selected_at (mode is {self.mode})",
                field="at",
                value=f"{self.at.hour:02d}:{self.at.minute:02d}",
            )
        if self.mode.startswith("selected_") and not self.pvcs:
            raise invalid(f"must list the PVCs to export when mode is {self.mode}", field="pvcs", value=[])
        if self.mode == "all_now" and self.pvcs:
            raise invalid(
                "is only used with modes selected_now/selected_at (all_now exports every PVC)",
                field="pvcs",
                value=self.pvcs,
            )
        return self


class PolicySpec(StrictModel):
    """A backup policy; plans reference one by name or define one inline."""

    scope: Scope = "full"
    method: Method = "filecopy"
    export: ExportSpec | None = Field(None, description="snapshot_export only; default: all_now")
    schedule: Schedule = Field(default_factory=OnDemand)
    retention: Duration = Field(description="backups older than this are deleted, e.g. '7d'")
    description: str = ""

    @model_validator(mode="after")
    def _export(self) -> "PolicySpec":
        if self.method == "snapshot_export":
            if self.export is None:
                object.__setattr__(self, "export", ExportSpec())
        elif self.export is not None:
            raise invalid(
                f"is only used with method snapshot_export (method is {self.method})",
                field="export",
                value=self.export.mode,
            )
        return self


def _builtin(**kw: Any) -> PolicySpec:
    return PolicySpec.model_validate(kw)


BUILTIN_POLICIES: Mapping[str, PolicySpec] = MappingProxyType(
    {
        "full-filecopy-4x-daily": _builtin(
            scope="full",
            method="filecopy",
            schedule=TimesDaily(times=["00:40", "09:40", "13:40", "19:40"]),
            retention="7d",
            description="内置：完整命名空间·文件拷贝·每天 0:40/9:40/13:40/19:40 (built-in: full "
            "namespace, file copy, four times a day, UTC; keep 7 days)",
        ),
        "volumes-snapshot-mon-wed-fri": _builtin(
            scope="volumes",
            method="snapshot",
            schedule=Weekly(days=["mon", "wed", "fri"], at="10:15"),
            retention="30d",
            description="内置：仅PVC数据卷·快照拷贝·每周一、三、五 10:15 (built-in: PVC data only, "
            "CSI snapshot, Mon/Wed/Fri 10:15 UTC; keep 30 days)",
        ),
        "resources-every-3h": _builtin(
            scope="resources",
            method="filecopy",
            schedule=EveryHours(hours=3, minute=10),
            retention="2d",
            description="内置：仅K8S资源·每隔3小时（每次第10分）(built-in: Kubernetes resources "
            "only, every 3 hours at minute 10 UTC; keep 2 days)",
        ),
        "full-snapshot-export-daily": _builtin(
            scope="full",
            method="snapshot_export",
            export={"mode": "all_now"},
            schedule=TimesDaily(times=["01:00"]),
            retention="14d",
            description="内置：完整命名空间·快照备份+后台数据导出·每天 1:00 (built-in: full "
            "namespace, snapshot then export all snapshots to the repository, daily 01:00 UTC; "
            "keep 14 days)",
        ),
    }
)
"""The four built-in policies (read-only), by name."""
