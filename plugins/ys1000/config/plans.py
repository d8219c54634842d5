"""``config/plans/*.yaml``: one plan per file, chosen by ``kind``.

- ``BackupPlan``   → DAG ``ys1000_backup__<name>``
- ``RestorePlan``  → DAG ``ys1000_restore__<name>``
- ``MigrationPlan``→ DAG ``ys1000_migrate__<name>``

Names of clusters, repositories and policies are checked against the other files by
``ys1000.config.loader`` (``Config``); everything checkable inside one plan is checked here.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .policies import PolicySpec, Scope, check_pvc_ref
from .schedules import OnDemand, Schedule
from .types import (
    ConnId,
    DnsLabel,
    Duration,
    LabelSelector,
    StrictModel,
    invalid,
    selector_matches,
)

DEFAULT_ANSIBLE_IMAGE = "ys1000/ansible-runner:0.1.0"
"""Image used for ``type: ansible`` hooks that name no ``image``."""

HookPhase = Literal["PreBackup", "PostBackup", "PreRestore", "PostRestore"]
VolumeMethod = Literal["filecopy", "snapshot", "snapshot_export", "skip"]
ExistingResourcePolicy = Literal["skip", "update", "fail"]

_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[a-z0-9][a-z0-9.\-]*)?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_kinds(kinds: list[str]) -> list[str]:
    for k in kinds:
        if not isinstance(k, str) or not _KIND.match(k):
            raise invalid(
                f"lists {k!r}, not a resource kind; expected a kind like 'Deployment' or "
                "'Ingress.networking.k8s.io' (or a resource like 'deployments.apps')"
            )
    return kinds


def _check_subdomain(value: str, what: str) -> str:
    if not _SUBDOMAIN.match(value) or len(value) > 253:
        raise invalid(f"is not a valid {what} name (lowercase DNS subdomain)", value=value)
    return value


def _dns_mapping(mapping: dict[str, str], what: str) -> dict[str, str]:
    for old, new in mapping.items():
        for name in (old, new):
            if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name) or len(name) > 63:
                raise invalid(
                    f"maps {old!r} → {new!r}; {name!r} is not a valid {what} name (DNS-1123 label)", value=mapping
                )
    targets = list(mapping.values())
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise invalid(f"maps several {what}s onto {', '.join(map(repr, dup))}; targets must be distinct", value=mapping)
    return mapping


def _sc_mapping(mapping: dict[str, str]) -> dict[str, str]:
    for old, new in mapping.items():
        for name in (old, new):
            if not _SUBDOMAIN.match(name) or len(name) > 253:
                raise invalid(
                    f"maps {old!r} → {new!r}; {name!r} is not a valid StorageClass name (lowercase DNS subdomain)",
                    value=mapping,
                )
    return mapping


def _short(value: Any) -> Any:
    return value if not isinstance(value, str) or len(value) < 60 else value[:57] + "..."


# -- building blocks ----------------------------------------------------------------------------


class NamespaceSelector(StrictModel):
    """Which namespaces a plan covers: the union of ``names``, ``globs`` and ``selector``."""

    names: list[DnsLabel] = Field(default_factory=list)
    globs: list[str] = Field(default_factory=list, description="shell patterns, e.g. 'shop-*'")
    selector: LabelSelector | None = Field(None, description="namespace label selector")

    @field_validator("names")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise invalid(f"lists {', '.join(map(repr, dup))} more than once")
        return names

    @field_validator("globs")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        for g in globs:
            if not g or not re.match(r"^[a-z0-9*?\[\]!\-]+$", g):
                raise invalid(f"lists {g!r}, not a namespace pattern; expected lowercase names with * ? [ ]")
        return globs

    @model_validator(mode="after")
    def _something(self) -> "NamespaceSelector":
        if not (self.names or self.globs or self.selector):
            raise invalid("selects no namespace; give at least one of names, globs, selector", value=None)
        return self

    @property
    def exact(self) -> bool:
        """True when only explicit ``names`` are given (the namespace set is known statically)."""
        return not self.globs and not self.selector

    def matches(self, name: str, labels: dict[str, str] | None = None) -> bool:
        """Whether namespace ``name`` (with ``labels``) is selected."""
        if name in self.names or any(fnmatch.fnmatchcase(name, g) for g in self.globs):
            return True
        return self.selector is not None and bool(self.selector) and selector_matches(self.selector, labels or {})


class ResourceFilter(StrictModel):
    """Resource filter of a backup: kinds to include (empty = all) / exclude, label selector."""

    include_kinds: list[str] = Field(default_factory=list)
    exclude_kinds: list[str] = Field(default_factory=list)
    label_selector: LabelSelector | None = None

    _kinds = field_validator("include_kinds", "exclude_kinds")(classmethod(lambda cls, v: _check_kinds(v)))

    @model_validator(mode="after")
    def _overlap(self) -> "ResourceFilter":
        both = sorted(set(self.include_kinds) & set(self.exclude_kinds))
        if both:
            raise invalid(
                f"lists {', '.join(both)} in both include_kinds and exclude_kinds",
                field="exclude_kinds",
                value=self.exclude_kinds,
            )
        return self


class Limits(StrictModel):
    """Per-backup limits (manual §11), refused with a clear message when exceeded."""

    max_namespaces: int = Field(10, ge=1)
    max_pods: int = Field(100, ge=1)
    max_pvcs: int = Field(100, ge=1)


class Hook(StrictModel):
    """A custom hook run as a Kubernetes Job (F27)."""

    name: DnsLabel | None = Field(None, description="default: '<phase>-<n>' (e.g. 'postrestore-1')")
    phase: HookPhase
    type: Literal["ansible", "image"]
    cluster: Literal["source", "target"] | None = Field(
        None, description="default: source for Pre/PostBackup, target for Pre/PostRestore"
    )
    namespace: DnsLabel
    service_account: DnsLabel = "default"
    image: str | None = Field(None, description=f"required for type image; ansible default {DEFAULT_ANSIBLE_IMAGE}")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    playbook: str | None = Field(None, description="ansible: inline playbook text")
    playbook_file: str | None = Field(None, description="ansible: path under include/hooks/")
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = dt.timedelta(minutes=10)
    on_failure: Literal["fail", "continue"] = "fail"

    @field_validator("playbook_file")
    @classmethod
    def _relative(cls, path: str | None) -> str | None:
        if path is not None:
            parts = path.split("/")
            if path.startswith("/") or ".." in parts or not path.strip() or "" in parts:
                raise invalid(
                    "is not a path under include/hooks/; expected a relative path like "
                    "'wordpress/rewrite-url.yaml' (no '..', not absolute)"
                )
        return path

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, Any]) -> dict[str, str]:
        for k in env:
            if not _ENV_NAME.match(str(k)):
                raise invalid(f"has {k!r}, not a valid environment variable name")
        return env

    @model_validator(mode="after")
    def _by_type(self) -> "Hook":
        if self.cluster is None:
            object.__setattr__(self, "cluster", "source" if self.phase.endswith("Backup") else "target")
        if self.type == "image":
            if not self.image:
                raise invalid("is required for a hook of type image", field="image", value=None)
            for f in ("playbook", "playbook_file"):
                if getattr(self, f) is not None:
                    raise invalid("is only for hooks of type ansible", field=f, value=_short(getattr(self, f)))
        else:
            if (self.playbook is None) == (self.playbook_file is None):
                raise invalid(
                    "needs exactly one of 'playbook' (inline text) or 'playbook_file' (a path under include/hooks/)",
                    field="playbook",
                    value=None,
                )
            if self.image is None:
                object.__setattr__(self, "image", DEFAULT_ANSIBLE_IMAGE)
        return self


class DrillCheck(StrictModel):
    """One check of a restore drill (``ys1000.drill.checks``) on the restored application."""

    name: DnsLabel | None = Field(None, description="default: '<type>-<n>'")
    type: Literal["object", "hook", "sql", "http"]
    namespace: DnsLabel | None = Field(None, description="source namespace (its scratch copy is checked)")
    # object
    kind: str | None = Field(None, description="object: e.g. 'Deployment' or 'Ingress.networking.k8s.io'")
    object: str | None = Field(None, description="object: its name")
    # hook
    image: str | None = Field(None, description="hook: the image of the check Job")
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    service_account: DnsLabel = "default"
    # sql / http: a probe Job reaches <service>.<scratch namespace>.svc (or host)
    service: DnsLabel | None = None
    host: str | None = Field(None, description="instead of the restored service (e.g. outside the cluster)")
    port: int | None = Field(None, ge=1, le=65535, description="default: 3306 / 5432 / 80")
    engine: Literal["mysql", "mariadb", "postgresql"] | None = None
    database: str | None = None
    query: str | None = Field(None, description="sql: e.g. 'SELECT ID FROM wp_posts'")
    min_rows: int = Field(1, ge=0)
    secret: "SecretRef | None" = Field(None, description="sql: the restored Secret with the credentials")
    path: str = "/"
    expect_status: str = Field("2xx", pattern=r"^[1-5]([0-9]{2}|xx)$")
    timeout: Duration = dt.timedelta(minutes=5)

    @model_validator(mode="after")
    def _by_type(self) -> "DrillCheck":
        need = {"object": ("kind", "object"), "hook": ("image",), "sql": ("engine", "query"), "http": ()}[self.type]
        for f in need:
            if not getattr(self, f):
                raise invalid(f"is required for a drill check of type {self.type}", field=f, value=None)
        if self.type in ("sql", "http") and not (self.service or self.host):
            raise invalid(
                f"a {self.type} check needs the restored 'service' (or a 'host')", field="service", value=None
            )
        if self.type == "object":
            _check_kinds([self.kind or ""])
        return self


class Drill(StrictModel):
    """A plan's restore drill: restore a backup into scratch namespaces, prove it (``ys1000.drill``)."""

    cluster: DnsLabel | None = Field(None, description="where to restore: default the plan's own cluster")
    namespace_suffix: DnsLabel | None = Field(None, description="default: 'drill-<4 hex of the drill id>'")
    every: int = Field(1, ge=1, description="drill every Nth backup (after each backup: 1)")
    schedule: Schedule | None = Field(None, description="instead of after backups: drill the newest on a schedule")
    timeout: Duration = dt.timedelta(minutes=15)
    checks: list[DrillCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> "Drill":
        for i, c in enumerate(self.checks, 1):
            if c.name is None:
                object.__setattr__(c, "name", f"{c.type}-{i}")
        names = [str(c.name) for c in self.checks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise invalid(f"has several checks named {', '.join(map(repr, dup))}", field="checks", value=names)
        return self


class SecretRef(StrictModel):
    """A Kubernetes Secret (in the database's namespace) holding the database credentials."""

    name: str
    user_key: str = "username"
    password_key: str = "password"

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _check_subdomain(name, "Secret")


_DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432, "mongodb": 27017}


class Consistency(StrictModel):
    """Database quiesce around the snapshot/copy (F12): lock before, unlock after."""

    type: Literal["mysql", "mariadb", "postgresql", "mongodb"]
    namespace: DnsLabel | None = Field(None, description="default: the plan's only namespace")
    workload: str | None = Field(None, description="'statefulset/<name>', 'deployment/<name>' or 'pod/<name>'")
    service: DnsLabel | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535, description="default: the database's usual port")
    secret: SecretRef | None = Field(None, description="required except for mongodb without auth")
    max_lock: Duration = dt.timedelta(minutes=10)

    @field_validator("workload")
    @classmethod
    def _workload(cls, w: str | None) -> str | None:
        if w is None:
            return w
        kind, sep, name = w.partition("/")
        if not sep or kind.lower() not in ("statefulset", "deployment", "pod") or not _SUBDOMAIN.match(name):
            raise invalid("is not a workload; expected 'statefulset/<name>', 'deployment/<name>' or 'pod/<name>'")
        return f"{kind.lower()}/{name}"

    @model_validator(mode="after")
    def _target(self) -> "Consistency":
        given = [f for f in ("workload", "service", "host") if getattr(self, f) is not None]
        if len(given) != 1:
            raise invalid(
                "needs exactly one of 'workload', 'service' or 'host' to find the database"
                + (f" (got {', '.join(given)})" if given else ""),
                value=None,
            )
        if self.port is None:
            object.__setattr__(self, "port", _DEFAULT_PORTS[self.type])
        if self.secret is None and self.type != "mongodb":
            raise invalid(
                f"is required for {self.type} (the Secret holding user and password)", field="secret", value=None
            )
        return self


class Notify(StrictModel):
    """Where job reports of this plan go (in addition to the global report)."""

    email: list[str] = Field(default_factory=list)
    wechat: ConnId | None = Field(None, description="Airflow connection holding the Work WeChat webhook")

    @field_validator("email")
    @classmethod
    def _emails(cls, emails: list[str]) -> list[str]:
        for e in emails:
            if not _EMAIL.match(e):
                raise invalid(f"lists {e!r}, not an e-mail address")
        return emails


def _policy_tag(value: Any) -> str:
    return "name" if isinstance(value, str) else "inline"


PolicyRef = Annotated[
    Union[Annotated[DnsLabel, Tag("name")], Annotated[PolicySpec, Tag("inline")]],
    Discriminator(_policy_tag),
]
"""A policy name (built-in or from policies.yaml) or an inline policy for this plan only."""


def _check_volume_overrides(volumes: dict[str, str]) -> dict[str, str]:
    for ref in volumes:
        try:
            check_pvc_ref(ref, require_namespace=True)
        except Exception:
            raise invalid(
                "is not a PVC reference; expected '<namespace>/<pvc>' (lowercase DNS names)", field=(ref,), value=ref
            ) from None
    return volumes


class AnomalyGuard(StrictModel):
    """When a backup is marked ``suspicious`` (ys1000.backup.anomaly): its change profile far
    outside the plan's own history, e.g. ransomware rewriting files or a runaway delete."""

    enabled: bool = True
    files_rewritten: float = Field(
        0.5, gt=0, le=1, description="share of a PVC's files changed or removed since the last backup"
    )
    incompressible: float = Field(
        0.9, gt=0, le=1.5, description="new data whose packed/added size ratio is at least this does not compress"
    )
    resources_gone: float = Field(
        0.3, gt=0, le=1, description="share of the last backup's objects (in all, or of one kind) now gone"
    )
    min_objects: int = Field(10, ge=1, description="a kind is judged on its own from this many objects")
    min_files: int = Field(10, ge=1, description="a PVC is judged from this many files in the last backup")
    margin: float = Field(
        0.2, ge=0, le=1, description="a share is unusual only above the plan's highest so far plus this"
    )
    history: int = Field(10, ge=1, le=100, description="how many earlier backups make the plan's normal range")


Approval = Literal["none", "required"]


# -- plans --------------------------------------------------------------------------------------


class _PlanBase(StrictModel):
    name: DnsLabel
    owner: str = "ys1000"
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    notify: Notify | None = None
    approval: Approval = Field(
        "none",
        description="required: a human approves destructive steps (cutover; a restore that overwrites; "
        "confirming a suspicious backup) in the Airflow UI or REST API",
    )
    approvers: list[str] = Field(default_factory=list, description="Airflow users who may answer (default: any)")
    approval_timeout: Duration = Field(dt.timedelta(hours=24), description="no answer by then counts as a rejection")

    DAG_PREFIX: ClassVar[str] = ""
    ALLOWED_PHASES: ClassVar[tuple[str, ...]] = ()
    ALLOWED_HOOK_CLUSTERS: ClassVar[tuple[str, ...]] = ("source", "target")

    @property
    def dag_id(self) -> str:
        return f"{self.DAG_PREFIX}{self.name}"

    def _check_hooks(self, hooks: list[Hook]) -> None:
        counters: dict[str, int] = {}
        seen: set[str] = set()
        for i, hook in enumerate(hooks):
            if hook.phase not in self.ALLOWED_PHASES:
                raise invalid(
                    f"is not allowed in a {type(self).__name__}; allowed: {', '.join(self.ALLOWED_PHASES)}",
                    field=("hooks", i, "phase"),
                    value=hook.phase,
                )
            if hook.cluster not in self.ALLOWED_HOOK_CLUSTERS:
                raise invalid(
                    f"is not allowed in a {type(self).__name__}; allowed: {', '.join(self.ALLOWED_HOOK_CLUSTERS)}",
                    field=("hooks", i, "cluster"),
                    value=hook.cluster,
                )
            if hook.name is None:
                counters[hook.phase] = counters.get(hook.phase, 0) + 1
                object.__setattr__(hook, "name", f"{hook.phase.lower()}-{counters[hook.phase]}")
            if hook.name in seen:
                raise invalid(
                    "is used by two hooks; hook names must be unique in a plan",
                    field=("hooks", i, "name"),
                    value=hook.name,
                )
            assert hook.name is not None  # named just above
            seen.add(hook.name)

    def _check_namespaces(
        self,
        namespaces: NamespaceSelector,
        limits: Limits | None,
        volumes: Mapping[str, str],
        consistency: list[Consistency],
        mapping: dict[str, str] | None = None,
    ) -> None:
        if limits is not None and len(namespaces.names) > limits.max_namespaces:
            raise invalid(
                f"lists {len(namespaces.names)} namespaces; the limit is "
                f"{limits.max_namespaces} (limits.max_namespaces)",
                field=("namespaces", "names"),
                value=_short(", ".join(namespaces.names)),
            )
        if namespaces.exact:
            for ref in volumes:
                ns = ref.split("/", 1)[0]
                if ns not in namespaces.names:
                    raise invalid(
                        f"refers to namespace {ns!r}, which is not in namespaces.names ({', '.join(namespaces.names)})",
                        field=("volumes", ref),
                        value=ref,
                    )
            for old in mapping or {}:
                if old not in namespaces.names:
                    raise invalid(
                        f"maps namespace {old!r}, which is not in namespaces.names ({', '.join(namespaces.names)})",
                        field=("namespace_mapping", old),
                        value=old,
                    )
        only = namespaces.names[0] if namespaces.exact and len(namespaces.names) == 1 else None
        for i, c in enumerate(consistency):
            if c.namespace is None:
                if only is None:
                    raise invalid(
                        "is required when the plan covers more than one namespace",
                        field=("consistency", i, "namespace"),
                        value=None,
                    )
                object.__setattr__(c, "namespace", only)


class BackupPlan(_PlanBase):
    """Back up namespaces of one cluster into one repository, by a policy."""

    kind: Literal["BackupPlan"]
    cluster: DnsLabel
    repository: DnsLabel
    namespaces: NamespaceSelector
    resources: ResourceFilter | None = None
    policy: PolicyRef
    volumes: dict[str, VolumeMethod] = Field(default_factory=dict, description="'<ns>/<pvc>' → method")
    limits: Limits = Field(default_factory=Limits)
    hooks: list[Hook] = Field(default_factory=list)
    consistency: list[Consistency] = Field(default_factory=list)
    drill: Drill | None = Field(None, description="restore drill: DAG ys1000_drill__<plan> after each backup")
    rpo: Duration | None = Field(None, description="recovery point objective: alert when no backup is newer")
    rto: Duration | None = Field(None, description="recovery time objective: a drill slower than this is flagged")
    anomaly: AnomalyGuard = Field(default_factory=AnomalyGuard, description="when a backup is marked suspicious")

    DAG_PREFIX: ClassVar[str] = "ys1000_backup__"
    ALLOWED_PHASES: ClassVar[tuple[str, ...]] = ("PreBackup", "PostBackup")
    ALLOWED_HOOK_CLUSTERS: ClassVar[tuple[str, ...]] = ("source",)

    _volumes = field_validator("volumes")(classmethod(lambda cls, v: _check_volume_overrides(v)))

    @model_validator(mode="after")
    def _plan(self) -> "BackupPlan":
        self._check_hooks(self.hooks)
        self._check_namespaces(self.namespaces, self.limits, self.volumes, self.consistency)
        return self


class BackupRef(StrictModel):
    """Which backup a restore uses: the latest successful one of a plan, or a backup id."""

    plan: DnsLabel
    id: str = "latest"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value or "/" in value or value != value.strip():
            raise invalid("is not a backup id; expected 'latest' or an id from the backup list")
        return value


class RestorePlan(_PlanBase):
    """Restore a backup into a cluster (the same or another)."""

    kind: Literal["RestorePlan"]
    backup: BackupRef
    target_cluster: DnsLabel
    repository: DnsLabel
    scope: Scope | None = Field(None, description="default: the backup's scope (restore ⊆ backup)")
    namespace_mapping: dict[str, str] = Field(default_factory=dict)
    include_kinds: list[str] = Field(default_factory=list)
    exclude_kinds: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list, description="'kind/ns/name' or 'kind/name' (cluster-scoped)")
    storage_class_mapping: dict[str, str] = Field(default_factory=dict)
    remove_node_constraints: bool = False
    remove_tolerations: bool = False
    existing_resource_policy: ExistingResourcePolicy = "skip"
    hooks: list[Hook] = Field(default_factory=list)
    dry_run: bool = False
    schedule: Schedule = Field(default_factory=OnDemand)

    DAG_PREFIX: ClassVar[str] = "ys1000_restore__"
    ALLOWED_PHASES: ClassVar[tuple[str, ...]] = ("PreRestore", "PostRestore")
    ALLOWED_HOOK_CLUSTERS: ClassVar[tuple[str, ...]] = ("target",)

    _kinds = field_validator("include_kinds", "exclude_kinds")(classmethod(lambda cls, v: _check_kinds(v)))
    _nsmap = field_validator("namespace_mapping")(classmethod(lambda cls, v: _dns_mapping(v, "namespace")))

    _sc = field_validator("storage_class_mapping")(classmethod(lambda cls, v: _sc_mapping(v)))

    @field_validator("resources")
    @classmethod
    def _resources(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            parts = ref.split("/")
            kind = parts[0]
            ok = (
                len(parts) in (2, 3)
                and bool(_KIND.match(kind))
                and (kind[0].isupper() or "." in kind)
                and all(_SUBDOMAIN.match(p) for p in parts[1:])
            )
            if not ok:
                raise invalid(
                    f"lists {ref!r}, not a resource; expected 'kind/namespace/name' "
                    "(e.g. 'Deployment/wordpress/web') or 'kind/name' for cluster-scoped"
                )
        return refs

    @model_validator(mode="after")
    def _plan(self) -> "RestorePlan":
        both = sorted(set(self.include_kinds) & set(self.exclude_kinds))
        if both:
            raise invalid(
                f"lists {', '.join(both)} in both include_kinds and exclude_kinds",
                field="exclude_kinds",
                value=self.exclude_kinds,
            )
        self._check_hooks(self.hooks)
        return self


class MigrationPlan(_PlanBase):
    """Move namespaces from one cluster to another: incremental syncs, then a cutover."""

    kind: Literal["MigrationPlan"]
    source_cluster: DnsLabel
    target_cluster: DnsLabel
    repository: DnsLabel
    namespaces: NamespaceSelector
    resources: ResourceFilter | None = None
    method: Literal["filecopy", "snapshot_export"] = "filecopy"
    volumes: dict[str, Literal["filecopy", "snapshot_export", "skip"]] = Field(default_factory=dict)
    namespace_mapping: dict[str, str] = Field(default_factory=dict)
    storage_class_mapping: dict[str, str] = Field(default_factory=dict)
    remove_node_constraints: bool = True
    remove_tolerations: bool = False
    stop_source: bool = Field(True, description="scale the source app down for the cutover")
    limits: Limits = Field(default_factory=Limits)
    hooks: list[Hook] = Field(default_factory=list)
    consistency: list[Consistency] = Field(default_factory=list)
    schedule: Schedule = Field(default_factory=OnDemand, description="incremental syncs")

    DAG_PREFIX: ClassVar[str] = "ys1000_migrate__"
    ALLOWED_PHASES: ClassVar[tuple[str, ...]] = ("PreBackup", "PostBackup", "PreRestore", "PostRestore")

    _volumes = field_validator("volumes")(classmethod(lambda cls, v: _check_volume_overrides(v)))
    _nsmap = field_validator("namespace_mapping")(classmethod(lambda cls, v: _dns_mapping(v, "namespace")))
    _sc = field_validator("storage_class_mapping")(classmethod(lambda cls, v: _sc_mapping(v)))

    @model_validator(mode="after")
    def _plan(self) -> "MigrationPlan":
        if self.source_cluster == self.target_cluster:
            raise invalid(
                "is the same as source_cluster; a migration needs two different clusters",
                field="target_cluster",
                value=self.target_cluster,
            )
        self._check_hooks(self.hooks)
        self._check_namespaces(self.namespaces, self.limits, self.volumes, self.consistency, self.namespace_mapping)
        return self


Plan = Annotated[Union[BackupPlan, RestorePlan, MigrationPlan], Field(discriminator="kind")]
"""Any plan file, chosen by ``kind``."""

PLAN_KINDS = ("BackupPlan", "RestorePlan", "MigrationPlan")
