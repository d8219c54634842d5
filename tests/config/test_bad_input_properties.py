"""Bad input, systematically (#16): property-based tests over the configuration files and the
generic restore's run params.

Every test starts from a valid configuration (the shipped examples in ``config/``, enriched so
that every optional block is present) in a temporary directory, breaks exactly one thing — a
wrong type, a value out of range, an unknown key, a bad duration, cron expression, time, time
zone or name — and checks what the user gets:

- a ``ConfigError`` (never another exception: no traceback reaches the DAG import-error page or
  the CLI), whose text names the file, the field path and the offending value;
- none of pydantic's noise (``For further information visit https://errors.pydantic.dev/…``,
  ``input_value=``, ``validation error for``) and no traceback text;
- nothing written: the config directory is byte-for-byte what it was, with no new file.

The restore params of ``ys1000_restore`` get the same treatment through
``ys1000.airflow.params.check_conf`` / ``check_run_conf``: a bad param is named with its value,
and the run fails before the repository or the cluster is touched.

Hypothesis runs derandomized with no example database (nothing is written into the tree, CI
cannot flake; Hypothesis also draws constants from the project's own modules, so a change
elsewhere in the tree may change the examples: a failure is then a real, reproducible
counterexample); the whole module takes about 25 s on two cores.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shutil
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from ys1000.config import ConfigError, load_config, load_plans
from ys1000.config.loader import _Loader

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config"

# Hypothesis keeps caches (constants, unicode tables) in ./.hypothesis even without an example
# database: outside the tree, in one fixed place (re-used, not one directory per run)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ys1000-hypothesis")

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEW = settings(PROPERTY, max_examples=25)

# what must never reach a user: pydantic's raw rendering, tracebacks, Python reprs of errors
NOISE = re.compile(
    r"Traceback|errors\.pydantic\.dev|For further information|input_value=|input_type=|"
    r"validation errors? for|\[type=|File \"|Error\(|Exception\("
)

# -- a valid configuration with every optional block present -----------------------------------

CLUSTERS_EXTRA = {
    "source": {
        "image_registry_rewrite": {"docker.io": "mirror.example.internal:5000"},
        "bandwidth": {"limit_kib_s": 10240, "window": {"start": "22:00", "end": "06:00"}},
        "mover_image": "ys1000/mover:0.1.0",
        "max_concurrent_movers": 2,
        "restore_approval": "required",
        "approvers": ["admin"],
        "approval_timeout": "12h",
    }
}
REPOSITORIES_EXTRA = {"sandbox-s3": {"prefix": "team/prod", "object_lock": {"mode": "GOVERNANCE"}}}
POLICIES_EXTRA = {
    "weekly-export": {
        "scope": "volumes",
        "method": "snapshot_export",
        "export": {"mode": "selected_at", "at": "03:00", "pvcs": ["wordpress/data"]},
        "schedule": {"type": "weekly", "days": ["mon", "fri"], "at": "10:15", "timezone": "UTC"},
        "retention": "30d",
    },
    "every-3h": {
        "scope": "resources",
        "schedule": {"type": "every_hours", "hours": 3, "minute": 10, "timezone": "Asia/Shanghai"},
        "retention": "2d",
    },
    "weekday-cron": {
        "schedule": {"type": "cron", "expression": "30 2 * * 1-5", "timezone": "Europe/Berlin"},
        "retention": "1d12h",
    },
}
BACKUP_EXTRA = {
    "resources": {"include_kinds": ["Deployment"], "exclude_kinds": ["Secret"], "label_selector": "app=web"},
    "volumes": {"wordpress/wp-content": "filecopy"},
    "limits": {"max_namespaces": 5, "max_pods": 50, "max_pvcs": 20},
    "hooks": [
        {
            "name": "flush",
            "phase": "PreBackup",
            "type": "image",
            "image": "busybox:1.36",
            "namespace": "wordpress",
            "timeout": "2m",
            "env": {"MODE": "flush"},
            "on_failure": "continue",
        }
    ],
    "consistency": [
        {"type": "mysql", "service": "mysql", "port": 3306, "secret": {"name": "mysql-pass"}, "max_lock": "5m"}
    ],
    "rpo": "12h",
    "anomaly": {"enabled": True, "files_rewritten": 0.5, "min_files": 10, "history": 10},
    "notify": {"email": ["ops@example.com"]},
    "approval": "none",
    "approval_timeout": "8h",
}
RESTORE_EXTRA = {
    "scope": "full",
    "include_kinds": ["Deployment"],
    "exclude_kinds": ["Secret"],
    "resources": ["Deployment/wordpress/web"],
    "hooks": [
        {
            "phase": "PostRestore",
            "type": "ansible",
            "playbook_file": "wordpress/x.yml",
            "namespace": "wordpress-restored",
        }
    ],
    "schedule": {"type": "cron", "expression": "0 3 * * *", "timezone": "UTC"},
}
MIGRATE_EXTRA = {
    "method": "filecopy",
    "volumes": {"wordpress/wp-content": "skip"},
    "limits": {"max_namespaces": 3},
    "schedule": {"type": "every_hours", "hours": 6, "minute": 30, "timezone": "UTC"},
}

CLUSTERS, REPOSITORIES, POLICIES = "clusters.yaml", "repositories.yaml", "policies.yaml"
BACKUP, RESTORE, MIGRATE = "plans/wordpress-backup.yaml", "plans/wordpress-restore.yaml", "plans/wordpress-migrate.yaml"


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read(rel: str) -> Any:
    return yaml.load((EXAMPLES / rel).read_text(encoding="utf-8"), Loader=_Loader)


VALID: dict[str, Any] = {
    CLUSTERS: _merge(_read(CLUSTERS), CLUSTERS_EXTRA),
    REPOSITORIES: _merge(_read(REPOSITORIES), REPOSITORIES_EXTRA),
    POLICIES: _merge(_read(POLICIES), POLICIES_EXTRA),
    BACKUP: _merge(_read(BACKUP), BACKUP_EXTRA),
    RESTORE: _merge(_read(RESTORE), RESTORE_EXTRA),
    MIGRATE: _merge(_read(MIGRATE), MIGRATE_EXTRA),
}
VALID[BACKUP]["drill"].update(every=2)
VALID[BACKUP]["drill"]["checks"][2].update(port=3306, timeout="2m")
for _plan in (VALID[RESTORE], VALID[MIGRATE]):
    _plan.update(approval="required", approval_timeout="2h")


class _Dumper(yaml.SafeDumper):
    """Every string double-quoted: a generated value is read back as exactly that string (a
    plain ``1e5`` or ``2024-01-01`` would come back as a float or a date)."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes): 'nothing written' is this unchanged."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@contextmanager
def config_dir(files: dict[str, Any] | None = None, raw: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A temporary copy of ``config/`` with the enriched valid files, then ``files`` (data) and
    ``raw`` (bytes) written over it."""
    tmp = Path(tempfile.mkdtemp(prefix="ys1000-badinput-"))
    try:
        cfg = tmp / "config"
        shutil.copytree(EXAMPLES, cfg)
        for rel, data in {**VALID, **(files or {})}.items():
            (cfg / rel).write_text(dump(data), encoding="utf-8")
        for rel, blob in (raw or {}).items():
            (cfg / rel).write_bytes(blob)
        yield cfg
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def set_at(data: Any, path: tuple, value: Any) -> Any:
    """A deep copy of ``data`` with the node at ``path`` replaced by ``value``."""
    out = copy.deepcopy(data)
    node = out
    for el in path[:-1]:
        node = node[el]
    node[path[-1]] = value
    return out


def renderings(value: Any) -> list[str]:
    """How a message may show ``value`` (the config errors use ``repr``; str for text)."""
    out = [repr(value), repr(str(value))]  # a union tag is shown as text: type: 0 → '0'
    if isinstance(value, str):
        out.append(value)
    try:
        out.append(json.dumps(value))
    except (TypeError, ValueError):
        pass
    out += [r[:77] for r in out if len(r) > 80]  # long values are cut: 'aaa…' → 'aaa...'
    return [r for r in out if r]


def shows(message: str, value: Any) -> bool:
    """Whether ``message`` shows ``value`` (numbers as whole tokens, not digits of a line number)."""
    for r in renderings(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) or r in ("True", "False", "None"):
            if re.search(rf"(?<![\w.'\"]){re.escape(r)}(?![\w.'\"])", message):
                return True
        elif r in message:
            return True
    return False


def dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def assert_clean(exc: ConfigError) -> str:
    """The error as the user sees it: one line per problem, each naming a config file; no noise."""
    text = str(exc)
    assert text.strip(), "an empty error message"
    assert not NOISE.search(text), text
    for line in text.splitlines():
        assert line.startswith("config/"), f"a line that names no file: {line!r}\nfull message:\n{text}"
    return text


def assert_names(exc: ConfigError, file: str, loc: tuple, value: Any, *, show_value: bool = True) -> None:
    """Some issue names ``config/<file>``, the field ``loc`` (or its parent: a check over a whole
    mapping or model names the mapping) and the offending ``value``."""
    text = assert_clean(exc)
    want_file = f"config/{file}"
    for issue in exc.issues:
        if issue.file != want_file or not loc:
            continue
        n = len(issue.loc)
        if n < max(1, len(loc) - 1) or tuple(map(str, loc[:n])) != tuple(map(str, issue.loc)):
            continue
        if show_value and not shows(issue.message, value):
            continue
        assert str(issue) in text
        return
    raise AssertionError(f"no issue names {want_file}: {dotted(loc)} and the value {value!r}; the error was:\n{text}")


def names_file(exc: ConfigError, file: str) -> bool:
    """Some problem is in ``config/<file>``, or points at it (a plan naming a cluster that the
    broken clusters.yaml no longer defines: 'not a cluster defined in config/clusters.yaml')."""
    return any(i.file == f"config/{file}" or f"config/{file}" in i.message for i in exc.issues)


def load_rejected(cfg: Path, file: str) -> ConfigError:
    """Load ``cfg`` both ways (all or nothing; per plan for the DAG factory): both refuse, with a
    ``ConfigError`` only, and nothing in ``cfg`` changes."""
    before = snapshot(cfg)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    if file.startswith("plans/"):
        _, results = load_plans(cfg)
        broken = {p.name: r for p, r in results.items() if isinstance(r, ConfigError)}
        assert list(broken) == [Path(file).name], broken
        assert str(broken[Path(file).name]) in str(info.value)
    else:
        with pytest.raises(ConfigError) as info2:
            load_plans(cfg)
        assert str(info2.value) == str(info.value)
    assert snapshot(cfg) == before, "loading a broken configuration wrote into the config directory"
    return info.value


# -- bad values, by the kind of field ----------------------------------------------------------

_short_text = st.text(alphabet=string.ascii_letters + string.digits + " _-./:@*!?", min_size=1, max_size=24)
_non_text = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.lists(st.integers(0, 9), min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), min_size=1, max_size=2),
)
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

bad_name = st.one_of(
    st.sampled_from(["Web", "-web", "web-", "web_1", "web.1", "w" * 64, "ns/x", "", " web", "wéb"]),
    _short_text.filter(lambda s: not _DNS.match(s)),
    _non_text,
)
bad_duration = st.one_of(
    st.sampled_from(["7", "d", "7 days", "-1d", "0d", "0s", "1.5h", "7D", "1y", "P1D", "", "12h 30m", "h12"]),
    st.integers(min_value=10**9, max_value=10**40).map(lambda n: f"{n}w"),  # larger than a timedelta holds
    st.integers(min_value=10**9, max_value=10**40).map(lambda n: f"{n}d"),
    _short_text.filter(lambda s: not re.fullmatch(r"(?:\d+[wdhms])+", s.strip())),
    _non_text,
)
bad_clock = st.one_of(
    st.sampled_from(["24:00", "12:60", "1230", "12:5", "noon", "", "12:00:00", "-1:00", "99:99", "7pm"]),
    st.tuples(st.integers(24, 99), st.integers(0, 99)).map(lambda t: f"{t[0]}:{t[1]:02d}"),
    _short_text.filter(lambda s: not re.fullmatch(r"[0-9]{1,2}:[0-9]{2}", s)),
    _non_text,
)
bad_cron = st.one_of(
    st.sampled_from(
        [
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "* 25 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "@every 5m",
            "@reboot",
            "",
            "a b c d e",
            "0 2 * * mon-xyz",
            "30 2 * * 1-5 extra",
        ]
    ),
    st.tuples(st.integers(60, 999), st.integers(0, 23)).map(lambda t: f"{t[0]} {t[1]} * * *"),
    st.integers(),
    st.lists(st.just("*"), min_size=5, max_size=5),
)
bad_timezone = st.one_of(
    st.sampled_from(
        ["Mars/Olympus", "utc+8", "America", "Europe", "Asia", "Asia/Shang hai", "", "a" * 300, "../UTC", "GMT+25"]
    ),
    st.text(alphabet=string.ascii_letters + "/_+-", min_size=1, max_size=30).filter(lambda s: "/" in s or "_" in s),
    _non_text,
)


def bad_int(lo: int | None = None, hi: int | None = None) -> st.SearchStrategy:
    """Not a whole number in [lo, hi]: out of range, fractional, text, a list. (A bool is read as
    0/1 by pydantic's lax mode: not generated here.)"""
    options = [
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
        st.sampled_from(["five", "", "1,000", "10 KiB", "0x"]),
        st.lists(st.integers(1, 9), min_size=1, max_size=2),
        st.dictionaries(st.just("n"), st.integers(1, 9), min_size=1),
    ]
    if lo is not None:
        options.append(st.integers(max_value=lo - 1, min_value=lo - 10**12))
    if hi is not None:
        options.append(st.integers(min_value=hi + 1, max_value=hi + 10**12))
    return st.one_of(options)


def bad_float(lo: float, hi: float) -> st.SearchStrategy:
    return st.one_of(
        st.floats(min_value=hi, exclude_min=True, allow_infinity=False),
        st.floats(max_value=lo, allow_infinity=False),
        st.sampled_from(["half", "", "50%"]),
        st.lists(st.floats(0, 1), min_size=1, max_size=2),
    )


def bad_choice(*allowed: str) -> st.SearchStrategy:
    return st.one_of(
        _short_text.filter(lambda s: s not in allowed),
        st.sampled_from([a.upper() for a in allowed if a.upper() not in allowed] + [" " + allowed[0]]),
        st.integers(),
        st.lists(st.sampled_from(allowed), min_size=1, max_size=2),
    )


bad_bool = st.one_of(
    st.sampled_from(["maybe", "ja", "2", "enabled", "[]"]),
    st.integers().filter(lambda n: n not in (0, 1)),
    st.floats(allow_nan=False).filter(lambda f: f not in (0.0, 1.0)),
    st.lists(st.booleans(), min_size=1, max_size=2),
    st.dictionaries(st.just("x"), st.booleans(), min_size=1),
)
bad_text = _non_text.filter(lambda v: not isinstance(v, str))
bad_list = st.one_of(
    st.integers(),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2),
    st.booleans(),
)
bad_mapping = st.one_of(st.integers(), st.lists(st.integers(0, 9), min_size=1, max_size=3), _short_text, st.booleans())
bad_host = st.one_of(
    st.sampled_from(["https://mirror.example", "mirror/path", "mirror:port", "-mirror", "mirror:123456", " "]),
    _short_text.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?(:[0-9]{1,5})?", s)),
)
bad_bucket = st.one_of(
    st.sampled_from(["ab", "Bucket", "b" * 64, "a..b", "a.-b", "10.0.0.1", "xn--abc", "my-s3alias", "-abc", "abc_"]),
    _short_text.filter(lambda s: not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", s)),
)
bad_conn_id = st.one_of(
    st.sampled_from(["", "has space", "semi;colon", "a" * 251, "ünï", "a/b"]),
    _short_text.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.\-]{1,250}", s)),
    bad_text,
)
bad_pvc_ref = st.one_of(
    st.sampled_from(["Wordpress/data", "wordpress/Data", "/data", "wordpress/", "a/b/c", "ns/d_1"]),
    _short_text.filter(lambda s: "/" in s and s.lower() != s),
)
bad_kind = st.one_of(
    st.sampled_from(["deployment.Apps", "1Deployment", "Deploy ment", "", "Kind/x", "apps/v1"]),
    _short_text.filter(lambda s: not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[a-z0-9][a-z0-9.\-]*)?", s)),
)


@dataclass(frozen=True)
class Target:
    """One field of one file: where it is, what to put there, and where the error must point
    (default: the field itself)."""

    file: str
    path: tuple
    bad: st.SearchStrategy
    expect: tuple | None = None
    show_value: bool = True
    new: bool = False  # a field the valid config does not have (it is wrong there at all)
    shown: Any = None  # what the message shows instead of the value (e.g. the mode of a mapping)

    def __repr__(self) -> str:  # hypothesis prints the drawn target on failure
        return f"Target({self.file}: {dotted(self.path)})"


def _schedule_targets(file: str, base: tuple, schedule_type: str) -> list[Target]:
    out = [
        Target(file, base + ("timezone",), bad_timezone),
        Target(file, base + ("type",), bad_choice("on_demand", "times_daily", "weekly", "every_hours", "cron")),
    ]
    if schedule_type == "times_daily":
        out += [Target(file, base + ("times", 0), bad_clock), Target(file, base + ("times",), bad_list)]
    if schedule_type == "weekly":
        out += [
            Target(file, base + ("at",), bad_clock),
            Target(file, base + ("days", 0), st.sampled_from(["funday", "M", "", "weekend", "mo n"])),
            Target(file, base + ("days",), st.one_of(st.integers(), st.just([]))),
        ]
    if schedule_type == "every_hours":
        out += [Target(file, base + ("hours",), bad_int(1, 23)), Target(file, base + ("minute",), bad_int(0, 59))]
    if schedule_type == "cron":
        out.append(Target(file, base + ("expression",), bad_cron))
    return out


CLUSTER_TARGETS = [
    Target(CLUSTERS, ("source", "connection_id"), bad_conn_id),
    Target(CLUSTERS, ("target", "connection_id"), bad_conn_id),
    Target(CLUSTERS, ("source", "max_concurrent_movers"), bad_int(1)),
    Target(CLUSTERS, ("source", "bandwidth", "limit_kib_s"), bad_int(1)),
    Target(CLUSTERS, ("source", "bandwidth", "window", "start"), bad_clock),
    Target(CLUSTERS, ("source", "bandwidth", "window", "end"), st.one_of(bad_clock, st.just("22:00"))),
    Target(CLUSTERS, ("source", "bandwidth"), bad_mapping),
    Target(CLUSTERS, ("source", "approval_timeout"), bad_duration),
    Target(CLUSTERS, ("source", "restore_approval"), bad_choice("none", "required")),
    Target(CLUSTERS, ("source", "approvers"), bad_list),
    Target(CLUSTERS, ("source", "image_registry_rewrite", "docker.io"), bad_host),
    Target(CLUSTERS, ("source", "image_registry_rewrite"), bad_mapping),
    Target(CLUSTERS, ("source", "mover_image"), st.one_of(st.sampled_from(["", " ", "my image:1"]), bad_text)),
    Target(CLUSTERS, ("source", "notes"), bad_text),
]
REPOSITORY_TARGETS = [
    Target(REPOSITORIES, ("sandbox-s3", "type"), bad_choice("s3", "local")),
    Target(REPOSITORIES, ("sandbox-s3", "bucket"), bad_bucket),
    Target(REPOSITORIES, ("sandbox-s3", "connection_id"), bad_conn_id),
    Target(
        REPOSITORIES,
        ("sandbox-s3", "prefix"),
        st.one_of(st.sampled_from(["a//b", "a/./b", "../up", "x/../y"]), bad_text),
    ),
    Target(REPOSITORIES, ("sandbox-s3", "region"), bad_text),
    Target(REPOSITORIES, ("sandbox-s3", "object_lock", "mode"), bad_choice("COMPLIANCE", "GOVERNANCE")),
    Target(REPOSITORIES, ("sandbox-s3", "key", "variable"), bad_conn_id),
    Target(REPOSITORIES, ("sandbox-s3", "path"), st.just("/tmp/repo"), new=True),  # only for type local
    Target(REPOSITORIES, ("local", "bucket"), st.just("some-bucket"), new=True),  # only for type s3
    Target(REPOSITORIES, ("local", "path"), bad_text),
]
POLICY_TARGETS = [
    Target(POLICIES, ("nightly-shanghai", "scope"), bad_choice("full", "volumes", "resources")),
    Target(POLICIES, ("nightly-shanghai", "method"), bad_choice("filecopy", "snapshot", "snapshot_export")),
    Target(POLICIES, ("nightly-shanghai", "retention"), bad_duration),
    Target(POLICIES, ("nightly-shanghai", "description"), bad_text),
    Target(POLICIES, ("nightly-shanghai", "schedule"), bad_mapping),
    Target(
        POLICIES, ("nightly-shanghai", "export"), st.just({"mode": "all_now"}), new=True, shown="all_now"
    ),  # method is filecopy
    *_schedule_targets(POLICIES, ("nightly-shanghai", "schedule"), "times_daily"),
    *_schedule_targets(POLICIES, ("weekly-export", "schedule"), "weekly"),
    *_schedule_targets(POLICIES, ("every-3h", "schedule"), "every_hours"),
    *_schedule_targets(POLICIES, ("weekday-cron", "schedule"), "cron"),
    Target(POLICIES, ("weekly-export", "export", "mode"), bad_choice("all_now", "selected_now", "selected_at")),
    Target(POLICIES, ("weekly-export", "export", "at"), bad_clock),
    Target(POLICIES, ("weekly-export", "export", "pvcs", 0), bad_pvc_ref),
]
_HOOK = ("hooks", 0)
_DRILL_SQL = ("drill", "checks", 2)
PLAN_COMMON = [
    ("name", bad_name),
    ("description", bad_text),
    ("tags", bad_list),
    ("approval", bad_choice("none", "required")),
    ("approval_timeout", bad_duration),
    ("kind", bad_choice("BackupPlan", "RestorePlan", "MigrationPlan")),
]
BACKUP_TARGETS = [
    *(Target(BACKUP, (f,), s) for f, s in PLAN_COMMON),
    Target(BACKUP, ("cluster",), bad_name),
    Target(BACKUP, ("repository",), bad_name),
    Target(BACKUP, ("cluster",), st.sampled_from(["prod", "source-2", "elsewhere"])),  # not in clusters.yaml
    Target(BACKUP, ("repository",), st.sampled_from(["s3-prod", "nowhere"])),  # not in repositories.yaml
    Target(BACKUP, ("namespaces", "names", 0), bad_name),
    Target(BACKUP, ("namespaces", "names"), bad_list),
    Target(BACKUP, ("namespaces", "selector"), st.sampled_from(["a=(", "in (x)", "=b", " "]), new=True),
    Target(BACKUP, ("policy", "scope"), bad_choice("full", "volumes", "resources")),
    Target(BACKUP, ("policy", "retention"), bad_duration),
    *_schedule_targets(BACKUP, ("policy", "schedule"), "times_daily"),
    Target(BACKUP, ("resources", "include_kinds", 0), bad_kind),
    Target(BACKUP, ("resources", "label_selector"), st.sampled_from(["app=(x", "a b", "tier in ()", "!", "x,,y"])),
    Target(BACKUP, ("volumes", "wordpress/wp-content"), bad_choice("filecopy", "snapshot", "snapshot_export", "skip")),
    Target(BACKUP, ("limits", "max_namespaces"), bad_int(1)),
    Target(BACKUP, ("limits", "max_pods"), bad_int(1)),
    Target(BACKUP, ("limits", "max_pvcs"), bad_int(1)),
    Target(BACKUP, _HOOK + ("phase",), bad_choice("PreBackup", "PostBackup", "PreRestore", "PostRestore")),
    Target(BACKUP, _HOOK + ("phase",), st.sampled_from(["PreRestore", "PostRestore"])),  # not in a backup plan
    Target(BACKUP, _HOOK + ("type",), bad_choice("ansible", "image")),
    Target(BACKUP, _HOOK + ("namespace",), bad_name),
    Target(BACKUP, _HOOK + ("timeout",), bad_duration),
    Target(BACKUP, _HOOK + ("on_failure",), bad_choice("fail", "continue")),
    Target(BACKUP, ("consistency", 0, "type"), bad_choice("mysql", "mariadb", "postgresql", "mongodb")),
    Target(BACKUP, ("consistency", 0, "port"), bad_int(1, 65535)),
    Target(BACKUP, ("consistency", 0, "max_lock"), bad_duration),
    Target(BACKUP, ("consistency", 0, "secret", "name"), st.sampled_from(["Mysql", "my_pass", "-x", ""])),
    Target(BACKUP, ("rpo",), bad_duration),
    Target(BACKUP, ("rto",), bad_duration),
    Target(BACKUP, ("anomaly", "files_rewritten"), bad_float(0.0, 1.0)),
    Target(BACKUP, ("anomaly", "history"), bad_int(1, 100)),
    Target(BACKUP, ("anomaly", "enabled"), bad_bool),
    Target(BACKUP, ("notify", "email", 0), st.sampled_from(["ops", "ops@", "@example.com", "a b@c.d"])),
    Target(BACKUP, ("drill", "timeout"), bad_duration),
    Target(BACKUP, ("drill", "every"), bad_int(1)),
    Target(BACKUP, ("drill", "checks", 0, "type"), bad_choice("object", "hook", "sql", "http")),
    Target(BACKUP, ("drill", "checks", 0, "kind"), bad_kind.filter(bool)),
    Target(BACKUP, ("drill", "checks", 0, "name"), bad_name),
    Target(BACKUP, _DRILL_SQL + ("port",), bad_int(1, 65535)),
    Target(BACKUP, _DRILL_SQL + ("min_rows",), bad_int(0)),
    Target(BACKUP, _DRILL_SQL + ("engine",), bad_choice("mysql", "mariadb", "postgresql")),
    Target(BACKUP, _DRILL_SQL + ("timeout",), bad_duration),
]
RESTORE_TARGETS = [
    *(Target(RESTORE, (f,), s) for f, s in PLAN_COMMON),
    Target(RESTORE, ("backup", "plan"), bad_name),
    Target(RESTORE, ("backup", "id"), st.sampled_from(["", "a/b", " latest", "latest "])),
    Target(RESTORE, ("target_cluster",), bad_name),
    Target(RESTORE, ("target_cluster",), st.sampled_from(["prod", "nowhere"])),
    Target(RESTORE, ("repository",), st.sampled_from(["s3-prod", "nowhere"])),
    Target(RESTORE, ("scope",), bad_choice("full", "volumes", "resources")),
    Target(RESTORE, ("namespace_mapping", "wordpress"), bad_name),
    Target(RESTORE, ("namespace_mapping",), bad_mapping),
    Target(RESTORE, ("storage_class_mapping", "ys1000-local"), st.sampled_from(["Fast", "a_b", "-x", ""])),
    Target(RESTORE, ("include_kinds", 0), bad_kind),
    Target(
        RESTORE, ("resources", 0), st.sampled_from(["web", "deployment/ns/web", "Deployment/a/b/c", "Deployment/NS/x"])
    ),
    Target(RESTORE, ("remove_node_constraints",), bad_bool),
    Target(RESTORE, ("existing_resource_policy",), bad_choice("skip", "update", "fail")),
    Target(RESTORE, ("dry_run",), bad_bool),
    Target(RESTORE, _HOOK + ("phase",), st.sampled_from(["PreBackup", "PostBackup"])),  # not in a restore plan
    Target(RESTORE, _HOOK + ("playbook_file",), st.sampled_from(["/etc/x.yml", "../x.yml", "a//b.yml", " "])),
    *_schedule_targets(RESTORE, ("schedule",), "cron"),
]
MIGRATE_TARGETS = [
    *(Target(MIGRATE, (f,), s) for f, s in PLAN_COMMON),
    Target(MIGRATE, ("source_cluster",), bad_name),
    Target(MIGRATE, ("target_cluster",), st.just("source")),  # the same as source_cluster
    Target(MIGRATE, ("source_cluster",), st.sampled_from(["prod", "nowhere"])),
    Target(MIGRATE, ("method",), bad_choice("filecopy", "snapshot_export")),
    Target(MIGRATE, ("volumes", "wordpress/wp-content"), bad_choice("filecopy", "snapshot_export", "skip")),
    Target(MIGRATE, ("namespace_mapping", "wordpress"), bad_name),
    Target(MIGRATE, ("stop_source",), bad_bool),
    Target(MIGRATE, ("limits", "max_namespaces"), bad_int(1)),
    Target(MIGRATE, _HOOK + ("timeout",), bad_duration),
    Target(MIGRATE, _HOOK + ("env",), st.just({"1BAD": "x"})),
    Target(MIGRATE, _HOOK + ("service_account",), bad_name),
    Target(MIGRATE, _HOOK + ("on_failure",), bad_choice("fail", "continue")),
    *_schedule_targets(MIGRATE, ("schedule",), "every_hours"),
]
ALL_TARGETS = CLUSTER_TARGETS + REPOSITORY_TARGETS + POLICY_TARGETS + BACKUP_TARGETS + RESTORE_TARGETS + MIGRATE_TARGETS


def check_target(target: Target, value: Any) -> None:
    data = set_at(VALID[target.file], target.path, value)
    with config_dir({target.file: data}) as cfg:
        exc = load_rejected(cfg, target.file)
    shown = value if target.shown is None else target.shown
    assert_names(exc, target.file, target.expect or target.path, shown, show_value=target.show_value)


# -- the example configuration itself ----------------------------------------------------------


def test_the_enriched_example_config_is_valid():
    """The starting point of every property: valid, with every optional block present."""
    with config_dir() as cfg:
        before = snapshot(cfg)
        config = load_config(cfg)
        assert snapshot(cfg) == before
    assert sorted(config.plans) == ["wordpress-backup", "wordpress-migrate", "wordpress-restore"]
    assert config.clusters["source"].bandwidth is not None
    assert {"weekly-export", "every-3h", "weekday-cron"} <= set(config.user_policies)


def test_every_target_exists_in_the_valid_config():
    """A target path that does not exist would test a field that is not there."""
    for t in ALL_TARGETS:
        node = VALID[t.file]
        for el in t.path[:-1]:
            node = node[el]
        exists = t.path[-1] in node if isinstance(node, dict) else t.path[-1] < len(node)
        assert exists != t.new, t


# -- one bad field at a time -------------------------------------------------------------------


@PROPERTY
@given(st.data())
def test_a_bad_cluster_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(CLUSTER_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@PROPERTY
@given(st.data())
def test_a_bad_repository_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(REPOSITORY_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@PROPERTY
@given(st.data())
def test_a_bad_policy_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(POLICY_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@settings(PROPERTY, max_examples=120)
@given(st.data())
def test_a_bad_backup_plan_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(BACKUP_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@PROPERTY
@given(st.data())
def test_a_bad_restore_plan_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(RESTORE_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@PROPERTY
@given(st.data())
def test_a_bad_migration_plan_field_is_named_with_its_value(data):
    target = data.draw(st.sampled_from(MIGRATE_TARGETS), label="target")
    check_target(target, data.draw(target.bad, label="value"))


@pytest.mark.parametrize(
    "value", ["99999999999999999999d", "9999999999w", "1000000000d", "86400000000000s"], ids=lambda v: v
)
def test_a_duration_too_large_for_python_is_a_config_error(value):
    """Found by the properties: a duration beyond ``timedelta``'s range was an OverflowError."""
    check_target(Target(POLICIES, ("nightly-shanghai", "retention"), st.nothing()), value)


@pytest.mark.parametrize("value", ["America", "Europe", "Asia", "a" * 300], ids=lambda v: v[:12])
def test_a_time_zone_region_or_overlong_name_is_a_config_error(value):
    """Found by the properties: 'America' (a directory of the tz database) or a name longer than
    the file system allows was an OSError."""
    check_target(Target(POLICIES, ("nightly-shanghai", "schedule", "timezone"), st.nothing()), value)


@pytest.mark.parametrize(
    "target, value",
    [
        (Target(POLICIES, ("nightly-shanghai", "retention"), st.nothing()), dt.date(2024, 1, 1)),
        (Target(BACKUP, ("name",), st.nothing()), dt.datetime(2024, 1, 1, 10, 0)),
        (Target(CLUSTERS, ("source", "connection_id"), st.nothing()), dt.date(2024, 1, 1)),
        (Target(RESTORE, ("backup", "id"), st.nothing()), dt.date(2025, 12, 31)),
    ],
    ids=["retention", "plan-name", "connection-id", "backup-id"],
)
def test_a_plain_yaml_date_is_shown_as_written(target, value):
    """Found by the properties: YAML reads a plain ``2024-01-01`` as a date; the message named
    the field but not the value."""
    data = set_at(VALID[target.file], target.path, value)
    with config_dir({target.file: data}) as cfg:
        exc = load_rejected(cfg, target.file)
    assert_names(exc, target.file, target.path, str(value))


# -- unknown keys, bad entry names -------------------------------------------------------------

# mappings whose keys are the user's data (names, hosts, PVC refs, env vars), not field names
_DATA_MAPPINGS = {
    "image_registry_rewrite",
    "namespace_mapping",
    "storage_class_mapping",
    "volumes",
    "env",
}


def _model_mappings(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every mapping in ``node`` that is a config model (its keys are field names)."""
    if isinstance(node, dict):
        if path and path[-1] in _DATA_MAPPINGS:
            return
        yield path
        for k, v in node.items():
            yield from _model_mappings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _model_mappings(v, path + (i,))


MODEL_MAPPINGS = [
    (file, path)
    for file, data in VALID.items()
    for path in _model_mappings(data)
    # a mapping file's top level holds entry names, a plan file's its fields
    if path or file.startswith("plans/")
]
# keys refused with a dedicated, redacted message (a secret written into the YAML)
_SECRETISH = {"passphrase", "password", "secret", "value", "key", "encryption_key", "secret_key", "access_key"}
unknown_key = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=16).filter(
    lambda k: k not in _SECRETISH
)


@settings(PROPERTY, max_examples=80)
@given(st.sampled_from(MODEL_MAPPINGS), unknown_key, st.one_of(st.integers(0, 9), _short_text))
def test_an_unknown_key_is_named_with_the_allowed_fields(where, key, value):
    file, path = where
    node = VALID[file]
    for el in path:
        node = node[el]
    if key in node:
        return  # a known field, not an unknown one
    data = set_at(VALID[file], path + (key,), value)
    with config_dir({file: data}) as cfg:
        exc = load_rejected(cfg, file)
    assert_names(exc, file, path + (key,), key)
    assert "allowed:" in str(exc) or "is not a known field" in str(exc), str(exc)


@FEW
@given(
    st.sampled_from([CLUSTERS, REPOSITORIES, POLICIES]),
    st.sampled_from(["source", "sandbox-s3", "nightly-shanghai", "local", "target"]),
    bad_name.filter(lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and v != ""),
)
def test_a_bad_entry_name_in_a_mapping_file_is_named(file, _existing, name):
    data = dict(VALID[file])
    first = next(iter(data.values()))
    data[name] = copy.deepcopy(first)
    with config_dir({file: data}) as cfg:
        exc = load_rejected(cfg, file)
    assert_names(exc, file, (str(name),), name)


@pytest.mark.parametrize(
    "key", ["passphrase", "password", "encryption_key", "secret_key", "access_key"], ids=lambda k: k
)
def test_a_secret_in_repositories_yaml_is_refused_without_showing_it(key):
    secret = "hunter2-do-not-print"
    data = set_at(VALID[REPOSITORIES], ("sandbox-s3", key), secret)
    with config_dir({REPOSITORIES: data}) as cfg:
        exc = load_rejected(cfg, REPOSITORIES)
    assert secret not in str(exc)
    assert_names(exc, REPOSITORIES, ("sandbox-s3", key), "<redacted>")


# -- any value anywhere, and broken YAML: a ConfigError or a valid config, never a traceback ----


def _leaves(node: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))


ALL_NODES = [(file, path) for file, data in VALID.items() for path in _leaves(data) if path]

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and inf included
    st.text(max_size=20),
    st.sampled_from(["", " ", "latest", "00:00", "7d", "* * * * *", "UTC", "a/b", "<redacted>"]),
)
any_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


@settings(PROPERTY, max_examples=150)
@given(st.sampled_from(ALL_NODES), any_value)
def test_any_value_anywhere_is_refused_cleanly_or_accepted(where, value):
    """Whatever replaces whatever node: the configuration loads, or a ``ConfigError`` names the
    file and a field on the way to that node; nothing else is raised, nothing is written."""
    file, path = where
    data = set_at(VALID[file], path, value)
    with config_dir({file: data}) as cfg:
        before = snapshot(cfg)
        try:
            load_config(cfg)
        except ConfigError as exc:
            assert_clean(exc)
            assert names_file(exc, file), str(exc)
        if file.startswith("plans/"):
            load_plans(cfg)
        else:
            try:
                load_plans(cfg)
            except ConfigError as exc:
                assert_clean(exc)
        assert snapshot(cfg) == before


_yaml_noise = st.one_of(
    st.sampled_from(
        [
            "\t",
            ":",
            "- ",
            "{",
            "]",
            "\n---\n",
            "&a ",
            "*b",
            "!!python/object:os.system ",
            "? [a, b]\n: 1\n",
            "\nname: twice\n",
            "'",
            '"',
            "%YAML 9.9\n",
            "\x00",
            "\ufeff",
        ]
    ),
    st.text(max_size=12),
)


@settings(PROPERTY, max_examples=100)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_broken_yaml_is_a_config_error_naming_the_file(file, data):
    """Text spliced into a file (a tab, a stray colon, a second document, an unsafe tag, a NUL
    byte, invalid UTF-8): a ``ConfigError`` naming the file (or a still-valid file)."""
    text = dump(VALID[file]).encode("utf-8")
    at = data.draw(st.integers(0, len(text)), label="offset")
    noise = data.draw(st.one_of(_yaml_noise.map(lambda s: s.encode("utf-8")), st.binary(max_size=4)), label="noise")
    cut = data.draw(st.integers(0, 8), label="cut")
    blob = text[:at] + noise + text[at + cut :]
    with config_dir(raw={file: blob}) as cfg:
        before = snapshot(cfg)
        try:
            load_config(cfg)
        except ConfigError as exc:
            assert_clean(exc)
            assert names_file(exc, file), str(exc)
        assert snapshot(cfg) == before


@pytest.mark.parametrize(
    "blob",
    [b"", b"# only a comment\n", b"- a\n- b\n", b"just text\n", b"a: 1\n---\nb: 2\n", b"\xff\xfe\x00"],
    ids=["empty", "comment", "list", "scalar", "two-docs", "not-utf8"],
)
def test_a_plan_file_that_is_not_a_plan_is_named(blob):
    with config_dir(raw={BACKUP: blob}) as cfg:
        exc = load_rejected(cfg, BACKUP)
    text = assert_clean(exc)
    assert f"config/{BACKUP}: " in text


# -- restore params (the generic ys1000_restore DAG's trigger form) ----------------------------


@pytest.fixture(scope="module")
def restore_params():
    """The declared params of ``ys1000_restore`` built from the example configuration."""
    from ys1000.airflow.dagfactory import restore_params as build

    return build(load_config(EXAMPLES))


def _param_schemas(params) -> dict[str, dict]:
    from ys1000.airflow.params import _declared

    return _declared(params)


def bad_param_value(schema: dict) -> st.SearchStrategy:
    """A value that breaks ``schema`` (JSON values only: a conf is JSON)."""
    json_scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False)
    )
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    options: list[st.SearchStrategy] = []
    if kinds & {"string"}:
        options.append(json_scalars.filter(lambda v: v is not None or "null" not in kinds))
        options.append(st.lists(st.text(max_size=5), min_size=1, max_size=2))
        options.append(st.dictionaries(st.text(max_size=5), st.text(max_size=5), min_size=1, max_size=2))
        if "enum" in schema:
            options.append(st.text(max_size=20).filter(lambda s: s not in schema["enum"]))
        if schema.get("minLength"):
            options.append(st.just(""))
    elif "array" in kinds:
        options += [
            st.text(max_size=10),
            json_scalars,
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), min_size=1, max_size=2),
            st.lists(st.one_of(st.integers(), st.booleans(), st.none()), min_size=1, max_size=3),
        ]
    elif "object" in kinds:
        options += [
            st.text(max_size=10),
            json_scalars,
            st.lists(st.text(max_size=5), min_size=1, max_size=2),
            st.dictionaries(
                st.text(max_size=5), st.one_of(st.integers(), st.booleans(), st.none()), min_size=1, max_size=2
            ),
        ]
    elif "boolean" in kinds:
        options += [
            st.sampled_from(["yes", "true", "True", "1", "on", ""]),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.none(),
            st.lists(st.booleans(), min_size=1, max_size=2),
        ]
    return st.one_of(options)


def _shown_in_param_problem(problem: str, value: Any) -> bool:
    text = json.dumps(value)
    return (text if len(text) <= 80 else text[:77]) in problem or repr(value)[:77] in problem


@settings(PROPERTY, max_examples=100)
@given(st.data())
def test_a_bad_restore_param_is_named_with_its_value(restore_params, data):
    from ys1000.airflow.params import ConfError, check_conf, validate_conf

    schemas = _param_schemas(restore_params)
    name = data.draw(st.sampled_from(sorted(schemas)), label="param")
    value = data.draw(bad_param_value(schemas[name]), label="value")
    problems = check_conf({name: value}, restore_params)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.startswith(f"param {name!r}"), problem
    assert _shown_in_param_problem(problem, value), problem
    assert not NOISE.search(problem), problem
    with pytest.raises(ConfError) as info:
        validate_conf({name: value}, restore_params)
    assert info.value.problems == problems


@FEW
@given(st.text(min_size=1, max_size=20), st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)))
def test_an_unknown_restore_param_is_named_with_the_declared_ones(restore_params, key, value):
    from ys1000.airflow.params import check_conf

    if key in restore_params:
        return
    (problem,) = check_conf({key: value}, restore_params)
    assert problem.startswith(f"param {key!r} is unknown"), problem
    assert "params are " + ", ".join(restore_params) in problem


class _NoTouching:
    """An operator of the generic restore whose repository and cluster must not be reached."""

    def __init__(self, dag):
        self.dag = dag
        self.backup, self.repository_name = "latest", "sandbox-s3"
        self.touched: list[str] = []

    def repository(self, name):
        self.touched.append(f"repository {name}")
        raise AssertionError("the repository was opened for a run with a bad conf")

    def kube(self, name):
        self.touched.append(f"cluster {name}")
        raise AssertionError("the cluster was reached for a run with a bad conf")


@settings(PROPERTY, max_examples=100)
@given(st.data())
def test_a_bad_restore_run_fails_before_anything_is_touched(restore_params, data):
    """The preflight's conf check: the task fails (no retry) naming the param and value; the
    repository and the cluster are not opened — nothing is restored, nothing written."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.params import check_run_conf

    schemas = _param_schemas(restore_params)
    name = data.draw(st.sampled_from(sorted(schemas)), label="param")
    value = data.draw(bad_param_value(schemas[name]), label="value")
    op = _NoTouching(SimpleNamespace(dag_id="ys1000_restore", params=restore_params))
    with pytest.raises(AirflowFailException) as info:
        check_run_conf(op, {"dag_run": SimpleNamespace(conf={name: value})})
    message = str(info.value)
    assert "nothing was restored" in message and f"param {name!r}" in message, message
    assert _shown_in_param_problem(message, value), message
    assert op.touched == []


def test_a_namespace_mapping_param_to_an_invalid_name_is_refused(restore_params):
    from ys1000.airflow.params import check_conf

    [problem] = check_conf({"namespace_mapping": {"wordpress": "Bad_NS"}}, restore_params)
    assert problem.startswith("param 'namespace_mapping'['wordpress']:") and "'Bad_NS'" in problem
    [problem] = check_conf({"storage_class_mapping": {"fast": "Slow SSD"}}, restore_params)
    assert problem.startswith("param 'storage_class_mapping'['fast']:") and "'Slow SSD'" in problem
    assert (
        check_conf(
            {"namespace_mapping": {"wordpress": "wp-copy"}, "storage_class_mapping": {"a": "b.c"}}, restore_params
        )
        == []
    )
