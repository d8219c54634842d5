"""ys1000 configuration: pydantic models for ``config/`` and loading with clear errors.

No Airflow import here (``to_timetable`` imports ``airflow.timetables.trigger`` lazily).
"""

from .clusters import DEFAULT_MOVER_IMAGE, Bandwidth, BandwidthWindow, ClusterSpec
from .errors import ConfigError, ConfigIssue
from .loader import (
    CONFIG_DIR_ENV,
    Config,
    default_config_dir,
    load_config,
    load_plans,
    parse_plan,
    plan_files,
)
from .plans import (
    DEFAULT_ANSIBLE_IMAGE,
    PLAN_KINDS,
    BackupPlan,
    BackupRef,
    Consistency,
    Hook,
    Limits,
    MigrationPlan,
    NamespaceSelector,
    Notify,
    Plan,
    ResourceFilter,
    RestorePlan,
    SecretRef,
)
from .policies import BUILTIN_POLICIES, ExportSpec, PolicySpec
from .repositories import KeyRef, ObjectLock, RepositorySpec
from .schedules import (
    SCHEDULE_TYPES,
    Cron,
    EveryHours,
    OnDemand,
    Schedule,
    TimesDaily,
    Weekly,
    cron_expressions,
    to_timetable,
)
from .types import format_duration, parse_duration, parse_label_selector, selector_matches

__all__ = [
    "BUILTIN_POLICIES",
    "CONFIG_DIR_ENV",
    "DEFAULT_ANSIBLE_IMAGE",
    "DEFAULT_MOVER_IMAGE",
    "PLAN_KINDS",
    "SCHEDULE_TYPES",
    "BackupPlan",
    "BackupRef",
    "Bandwidth",
    "BandwidthWindow",
    "ClusterSpec",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Consistency",
    "Cron",
    "EveryHours",
    "ExportSpec",
    "Hook",
    "KeyRef",
    "Limits",
    "MigrationPlan",
    "NamespaceSelector",
    "Notify",
    "ObjectLock",
    "OnDemand",
    "Plan",
    "PolicySpec",
    "RepositorySpec",
    "ResourceFilter",
    "RestorePlan",
    "Schedule",
    "SecretRef",
    "TimesDaily",
    "Weekly",
    "cron_expressions",
    "default_config_dir",
    "format_duration",
    "load_config",
    "load_plans",
    "parse_duration",
    "parse_label_selector",
    "parse_plan",
    "plan_files",
    "selector_matches",
    "to_timetable",
]
