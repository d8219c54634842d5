"""Reading ``config/``: YAML with line numbers for errors, the cross-file ``Config``, and the two
entry points ``load_config`` (all or nothing) and ``load_plans`` (one result per plan file, for
the DAG factory: a broken plan never hides the others).

Layout of a config directory::

    clusters.yaml        name → ClusterSpec
    repositories.yaml    name → RepositorySpec
    policies.yaml        name → PolicySpec (user policies; the built-ins are always present)
    plans/*.yaml|*.yml   one plan per file (kind: BackupPlan | RestorePlan | MigrationPlan)

Missing ``clusters.yaml``/``repositories.yaml``/``policies.yaml`` or ``plans/`` mean "none".
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from .clusters import ClusterSpec
from .errors import ConfigError, ConfigIssue, Loc, issues_from_validation_error, show_value
from .plans import BackupPlan, MigrationPlan, Plan, RestorePlan
from .policies import BUILTIN_POLICIES, PolicySpec
from .repositories import RepositorySpec
from .schedules import Schedule
from .types import check_dns_label

CONFIG_DIR_ENV = "YS1000_CONFIG_DIR"

# -- YAML ---------------------------------------------------------------------------------------

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loader with YAML 1.2-style scalars: ``19:40`` stays a string (YAML 1.1 reads it as
    the base-60 integer 1180), ``on``/``yes``/``no`` stay strings; duplicate keys are errors."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
            ) from exc
        if key in out:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor(
    "tag:yaml.org,2002:map",
    lambda loader, node: _construct_mapping(loader, node, deep=True),
)


def display_path(path: Path, config_dir: Path) -> str:
    """``config/plans/web.yaml``: relative to the config directory's parent when possible."""
    try:
        cdir = Path(config_dir)
        # a relative one depends on the working directory at the time: resolved each time
        parent = _resolved_parent(str(cdir)) if cdir.is_absolute() else cdir.resolve().parent
        return str(Path(path).resolve().relative_to(parent))
    except ValueError:
        return str(path)


@functools.lru_cache(maxsize=8)
def _resolved_parent(config_dir: str) -> Path:
    # once per (absolute) config directory, not once per plan file (resolving walks every path
    # component); a config directory replaced by a symlink while the process runs keeps its first answer
    return Path(config_dir).resolve().parent


def _display_name(config_dir: Path, filename: str) -> str:
    """``display_path`` of a file directly in the config directory, computed only when a message
    names it: at 1,000 plans, resolving three paths per valid plan was a quarter of the load."""
    return display_path(config_dir / filename, config_dir)


@dataclass
class _Doc:
    """One YAML file: parsed data plus what is needed to find line numbers later."""

    path: Path
    display: str
    text: str
    data: Any
    _root: Any = None

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node along ``loc`` (for mapping keys: the key's line)."""
        try:
            if self._root is None:
                self._root = yaml.compose(self.text, Loader=_Loader)
            node, line = self._root, None
            for el in loc:
                if isinstance(node, yaml.MappingNode):
                    for k, v in node.value:
                        if isinstance(k, yaml.ScalarNode) and k.value == str(el):
                            line, node = k.start_mark.line + 1, v
                            break
                    else:
                        break
                elif isinstance(node, yaml.SequenceNode) and isinstance(el, int) and el < len(node.value):
                    node = node.value[el]
                    line = node.start_mark.line + 1
                else:
                    break
            return line
        except Exception:  # pragma: no cover - line numbers are best effort
            return None

    def issue(self, loc: Loc, message: str) -> ConfigIssue:
        return ConfigIssue(self.display, tuple(loc), message, self.line_of(loc))


def read_yaml(path: Path, config_dir: Path) -> _Doc:
    """Parse one YAML file; syntax errors become a ``ConfigError`` naming file and line."""
    display = display_path(path, config_dir)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(display, f"cannot be read: {exc}", path=path) from None
    try:
        docs = [d for d in yaml.load_all(text, Loader=_Loader)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise ConfigError.single(display, f"invalid YAML: {what}", line=line, path=path) from None
    except yaml.reader.ReaderError as exc:  # a control character: one line naming it and its line
        what = f"unacceptable character #x{exc.character:04x}: " if isinstance(exc.character, int) else ""
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError.single(display, f"invalid YAML: {what}{exc.reason}", line=line, path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError.single(display, f"invalid YAML: {' '.join(str(exc).split())}", path=path) from None
    docs = [d for d in docs if d is not None]
    if len(docs) > 1:
        raise ConfigError.single(display, "holds several YAML documents ('---'); expected one", path=path)
    return _Doc(Path(path), display, text, docs[0] if docs else None)


# -- Config -------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


@dataclass
class Config:
    """The validated configuration: clusters, repositories, policies (built-in + user), plans."""

    config_dir: Path
    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    repositories: dict[str, RepositorySpec] = field(default_factory=dict)
    policies: dict[str, PolicySpec] = field(default_factory=lambda: dict(BUILTIN_POLICIES))
    plans: dict[str, Plan] = field(default_factory=dict)
    plan_files: dict[str, Path] = field(default_factory=dict)

    # -- lookups --
    @property
    def backup_plans(self) -> dict[str, BackupPlan]:
        return {n: p for n, p in self.plans.items() if isinstance(p, BackupPlan)}

    @property
    def restore_plans(self) -> dict[str, RestorePlan]:
        return {n: p for n, p in self.plans.items() if isinstance(p, RestorePlan)}

    @property
    def migration_plans(self) -> dict[str, MigrationPlan]:
        return {n: p for n, p in self.plans.items() if isinstance(p, MigrationPlan)}

    @property
    def user_policies(self) -> dict[str, PolicySpec]:
        return {n: p for n, p in self.policies.items() if n not in BUILTIN_POLICIES}

    def policy_for(self, plan: BackupPlan) -> PolicySpec:
        """The plan's policy: the named one (built-in or user) or its inline policy."""
        if isinstance(plan.policy, PolicySpec):
            return plan.policy
        return self.policies[plan.policy]

    def schedule_for(self, plan: Plan) -> Schedule:
        """When the plan's DAG runs: a backup plan's policy schedule, else the plan's schedule."""
        if isinstance(plan, BackupPlan):
            return self.policy_for(plan).schedule
        return plan.schedule

    def clusters_of(self, plan: Plan) -> list[str]:
        """The clusters a plan touches (for pools): [cluster] / [target] / [source, target]."""
        if isinstance(plan, BackupPlan):
            return [plan.cluster]
        if isinstance(plan, RestorePlan):
            return [plan.target_cluster]
        return [plan.source_cluster, plan.target_cluster]

    # -- cross-file checks --
    def check_plan(self, plan: Plan) -> list[tuple[Loc, str]]:
        """References from ``plan`` to clusters/repositories/policies that do not exist:
        ``[(field loc, message)]`` (message names the bad value and the defined names)."""
        out: list[tuple[Loc, str]] = []

        def ref(loc: str, value: str, defined: Iterable[str], what: str, where: str) -> None:
            if value not in defined:
                names = sorted(defined)
                out.append(
                    (
                        (loc,),
                        f"{value!r} is not a {what} defined in {_display_name(self.config_dir, where)}; "
                        f"defined: {', '.join(names) if names else 'none'}",
                    )
                )

        clusters = self.clusters
        cfile, rfile, pfile = "clusters.yaml", "repositories.yaml", "policies.yaml"
        if isinstance(plan, BackupPlan):
            ref("cluster", plan.cluster, clusters, "cluster", cfile)
            ref("repository", plan.repository, self.repositories, "repository", rfile)
            if isinstance(plan.policy, str):
                ref("policy", plan.policy, self.policies, "policy (built-in or user)", pfile)
            drill_cluster = plan.drill.cluster if plan.drill is not None else None
            if drill_cluster is not None and drill_cluster not in clusters:
                out.append(
                    (
                        ("drill", "cluster"),
                        f"{drill_cluster!r} is not a cluster defined in {_display_name(self.config_dir, cfile)}; "
                        "defined: "
                        f"{', '.join(sorted(clusters)) or 'none'}",
                    )
                )
        elif isinstance(plan, RestorePlan):
            ref("target_cluster", plan.target_cluster, clusters, "cluster", cfile)
            ref("repository", plan.repository, self.repositories, "repository", rfile)
        else:
            ref("source_cluster", plan.source_cluster, clusters, "cluster", cfile)
            ref("target_cluster", plan.target_cluster, clusters, "cluster", cfile)
            ref("repository", plan.repository, self.repositories, "repository", rfile)
        return out


_PLAN = TypeAdapter(Plan)


def _mapping_file(
    config_dir: Path, filename: str, model: type[M], what: str, issues: list[ConfigIssue]
) -> dict[str, M]:
    """Validate a ``name → entry`` file, collecting issues (all entries are checked)."""
    path = config_dir / filename
    if not path.exists():
        return {}
    try:
        doc = read_yaml(path, config_dir)
    except ConfigError as exc:
        issues.extend(exc.issues)
        return {}
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        issues.append(doc.issue((), f"expected a mapping of {what} name → settings, got {type(data).__name__}"))
        return {}
    out: dict[str, M] = {}
    for name, entry in data.items():
        try:
            check_dns_label(name)
        except Exception:
            issues.append(
                doc.issue(
                    (str(name),),
                    f"{show_value(name)} is not a valid {what} name; expected a "
                    "DNS-1123 label: lowercase letters, digits and '-', starting "
                    "and ending with a letter or digit, at most 63 characters",
                )
            )
            continue
        if entry is None:
            entry = {}
        try:
            out[name] = model.model_validate(entry)
        except ValidationError as exc:
            issues.extend(
                issues_from_validation_error(exc, file=doc.display, data=entry, prefix=(name,), line_of=doc.line_of)
            )
    return out


def _load_base(config_dir: Path) -> tuple[Config, list[ConfigIssue]]:
    issues: list[ConfigIssue] = []
    clusters = _mapping_file(config_dir, "clusters.yaml", ClusterSpec, "cluster", issues)
    repositories = _mapping_file(config_dir, "repositories.yaml", RepositorySpec, "repository", issues)
    user_policies = _mapping_file(config_dir, "policies.yaml", PolicySpec, "policy", issues)
    pdisplay = display_path(config_dir / "policies.yaml", config_dir)
    for name in user_policies:
        if name in BUILTIN_POLICIES:
            issues.append(
                ConfigIssue(
                    pdisplay,
                    (name,),
                    (
                        f"{name!r} is the name of a built-in policy and cannot be redefined; choose another "
                        f"name (built-in: {', '.join(BUILTIN_POLICIES)})"
                    ),
                    read_yaml(config_dir / "policies.yaml", config_dir).line_of((name,)),
                )
            )
    policies = dict(BUILTIN_POLICIES)
    policies.update({n: p for n, p in user_policies.items() if n not in BUILTIN_POLICIES})
    return Config(Path(config_dir), clusters, repositories, policies), issues


def plan_files(config_dir: Path) -> list[Path]:
    """The plan files of ``config_dir`` (``plans/*.yaml`` and ``*.yml``), sorted."""
    d = Path(config_dir) / "plans"
    if not d.is_dir():
        return []
    return sorted(
        p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith(".")
    )


def parse_plan(path: Path, config: Config) -> Plan:
    """Read and validate one plan file, including references into ``config``.

    Raises ``ConfigError`` (all issues of that file) when it is invalid.
    """
    doc = read_yaml(path, config.config_dir)
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(
            [
                doc.issue(
                    (),
                    "expected a plan (a mapping with 'kind: BackupPlan', "
                    "'RestorePlan' or 'MigrationPlan'), got "
                    f"{'an empty file' if data is None else type(data).__name__}",
                )
            ],
            path=path,
        )
    try:
        plan = _PLAN.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(
            issues_from_validation_error(exc, file=doc.display, data=data, line_of=doc.line_of), path=path
        ) from None
    refs = config.check_plan(plan)
    if refs:
        raise ConfigError([doc.issue(loc, msg) for loc, msg in refs], path=path)
    return plan


def load_plans(config_dir: str | Path) -> tuple[Config, dict[Path, Plan | ConfigError]]:
    """For the DAG factory: the configuration without plans (``config.plans`` is empty) and,
    per plan file, its validated plan or the ``ConfigError`` for that file only.

    Raises ``ConfigError`` when clusters/repositories/policies themselves are invalid (then no
    plan can be trusted). A plan whose name is already used by an earlier file (sorted order)
    gets an error naming that file.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError.single(
            str(config_dir), f"is not a directory (the ys1000 config directory; set {CONFIG_DIR_ENV})"
        )
    config, issues = _load_base(config_dir)
    if issues:
        raise ConfigError(issues)
    results: dict[Path, Plan | ConfigError] = {}
    owners: dict[str, Path] = {}
    for path in plan_files(config_dir):
        try:
            plan = parse_plan(path, config)
        except ConfigError as exc:
            results[path] = exc
            continue
        if plan.name in owners:
            doc = read_yaml(path, config_dir)
            results[path] = ConfigError(
                [
                    doc.issue(
                        ("name",),
                        (
                            f"{plan.name!r} is already the name of the plan in "
                            f"{display_path(owners[plan.name], config_dir)}; plan names must be unique "
                            "(they become DAG ids)"
                        ),
                    )
                ],
                path=path,
            )
            continue
        owners[plan.name] = path
        results[path] = plan
    return config, results


def load_config(config_dir: str | Path) -> Config:
    """Load and validate everything; raises one ``ConfigError`` listing every problem."""
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError.single(
            str(config_dir), f"is not a directory (the ys1000 config directory; set {CONFIG_DIR_ENV})"
        )
    config, issues = _load_base(config_dir)
    if issues:
        # plans are still checked so one run reports as much as possible
        for path in plan_files(config_dir):
            try:
                read_yaml(path, config_dir)
            except ConfigError as exc:
                issues.extend(exc.issues)
        raise ConfigError(issues)
    _, results = load_plans(config_dir)
    for path, result in results.items():
        if isinstance(result, ConfigError):
            issues.extend(result.issues)
        else:
            config.plans[result.name] = result
            config.plan_files[result.name] = path
    if issues:
        raise ConfigError(issues)
    return config


def default_config_dir() -> Path:
    """``$YS1000_CONFIG_DIR``, else the ``config/`` folder of the source tree."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "config"
