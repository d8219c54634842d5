"""Loading config/: the shipped examples, error messages, cross-file checks."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ys1000.config import (
    BUILTIN_POLICIES,
    BackupPlan,
    ClusterSpec,
    ConfigError,
    MigrationPlan,
    PolicySpec,
    RepositorySpec,
    RestorePlan,
    TimesDaily,
    cron_expressions,
    load_config,
    load_plans,
    selector_matches,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config"


@pytest.fixture
def cfg(tmp_path) -> Path:
    """A copy of the example config in ``tmp/config`` (plans may be added/broken per test)."""
    d = tmp_path / "config"
    shutil.copytree(EXAMPLES, d, ignore=shutil.ignore_patterns("reports.yaml"))
    return d


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def entry_error(cfg: Path, file: str, entry: dict, name: str = "bad") -> str:
    """Add ``name: entry`` to the mapping file ``cfg/file`` (clusters, repositories, policies) and
    load the config: the ``ConfigError``'s message (one line per problem)."""
    path = cfg / file
    data = yaml.safe_load(path.read_text()) or {}
    data[name] = entry
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    return str(exc.value)


def plan_error(cfg: Path, plan: dict) -> str:
    """Write ``plan`` as ``plans/bad.yaml`` and load the plans: that file's ``ConfigError`` message."""
    path = cfg / "plans" / "bad.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    err = load_plans(cfg)[1][path]
    assert isinstance(err, ConfigError), err
    return str(err)


def names(message: str, file: str, field: str, value: str | None) -> None:
    """``message`` has a line ``file: field: value …`` (the value as the loader shows it: quoted
    text, a number, a list/mapping, <redacted>; ``None`` where the problem is a missing value)."""
    head = f"{file}: {field}: " + (f"{value} " if value is not None else "")
    assert re.search(r"(?m)^" + re.escape(head), message), f"no line starting {head!r} in:\n{message}"


# -- the shipped examples -------------------------------------------------------------------------


def test_examples_load():
    config = load_config(EXAMPLES)
    assert set(config.clusters) >= {"source", "target"}
    assert config.clusters["source"].connection_id == "ys1000_source"
    assert config.clusters["target"].connection_id == "ys1000_target"
    s3 = config.repositories["sandbox-s3"]
    assert (s3.type, s3.connection_id, s3.bucket, s3.key.variable) == (
        "s3",
        "ys1000_s3",
        "ys1000-backups",
        "ys1000_repo_key",
    )
    local = config.repositories["local"]
    assert (local.type, local.path, local.key.variable) == ("local", "/tmp/ys1000-repo", "ys1000_repo_key")
    assert set(BUILTIN_POLICIES) <= set(config.policies) and config.user_policies

    backup = config.plans["wordpress-backup"]
    assert isinstance(backup, BackupPlan)
    assert backup.dag_id == "ys1000_backup__wordpress-backup"
    assert (backup.cluster, backup.repository, backup.namespaces.names) == ("source", "sandbox-s3", ["wordpress"])
    schedule = config.schedule_for(backup)
    assert isinstance(schedule, TimesDaily)
    assert cron_expressions(schedule) == ["40 0,9,13,19 * * *"]

    restore = config.plans["wordpress-restore"]
    assert isinstance(restore, RestorePlan) and restore.dag_id == "ys1000_restore__wordpress-restore"
    assert restore.target_cluster == "target"
    assert restore.namespace_mapping == {"wordpress": "wordpress-restored"}
    assert restore.storage_class_mapping == {"ys1000-local": "ys1000-local-alt"}
    assert restore.existing_resource_policy == "skip" and restore.dry_run is False

    migrate = config.plans["wordpress-migrate"]
    assert isinstance(migrate, MigrationPlan) and migrate.dag_id == "ys1000_migrate__wordpress-migrate"
    assert (migrate.source_cluster, migrate.target_cluster) == ("source", "target")
    assert migrate.remove_node_constraints is True and migrate.stop_source is True
    assert config.plan_files["wordpress-backup"].name == "wordpress-backup.yaml"


def test_config_package_does_not_import_airflow():
    code = "import sys, ys1000.config as c; c.load_config(c.default_config_dir()); print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_builtin_policies():
    assert len(BUILTIN_POLICIES) == 4
    scopes = {p.scope for p in BUILTIN_POLICIES.values()}
    methods = {p.method for p in BUILTIN_POLICIES.values()}
    assert scopes == {"full", "volumes", "resources"}
    assert methods == {"filecopy", "snapshot", "snapshot_export"}
    crons = {name: cron_expressions(p.schedule) for name, p in BUILTIN_POLICIES.items()}
    assert crons["full-filecopy-4x-daily"] == ["40 0,9,13,19 * * *"]
    assert crons["volumes-snapshot-mon-wed-fri"] == ["15 10 * * mon,wed,fri"]
    assert crons["resources-every-3h"] == ["10 */3 * * *"]
    for p in BUILTIN_POLICIES.values():
        assert p.retention > dt.timedelta(0)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in p.description)  # Chinese name kept


# -- one broken plan file: one error for that file, the others load -----------------------------


def test_broken_plan_is_isolated(cfg):
    write(
        cfg / "plans" / "web.yaml",
        """
        kind: BackupPlan
        name: web
        cluster: source
        repository: sandbox-s3
        namespaces: {names: [web]}
        policy:
          retention: 7d
          schedule: {type: weekly, days: [mon], at: "25:99"}
    """,
    )
    config, results = load_plans(cfg)
    assert config.plans == {}
    broken = results[cfg / "plans" / "web.yaml"]
    assert isinstance(broken, ConfigError)
    assert str(broken) == (
        "config/plans/web.yaml: policy.schedule.at: '25:99' is not a time; expected HH:MM (00:00–23:59) (line 8)"
    )
    assert [i.field for i in broken.issues] == ["policy.schedule.at"]
    ok = {p.name for p in results.values() if not isinstance(p, ConfigError)}
    assert ok == {"wordpress-backup", "wordpress-restore", "wordpress-migrate"}
    # load_config is all-or-nothing and names the same problem
    with pytest.raises(ConfigError, match=r"config/plans/web\.yaml: policy\.schedule\.at: '25:99'"):
        load_config(cfg)


def test_unknown_field_is_named(cfg):
    write(
        cfg / "plans" / "typo.yaml",
        """
        kind: RestorePlan
        name: typo
        backup: {plan: wordpress-backup}
        target_cluster: target
        repository: sandbox-s3
        namespace_maping: {wordpress: wp2}
    """,
    )
    _, results = load_plans(cfg)
    err = results[cfg / "plans" / "typo.yaml"]
    assert isinstance(err, ConfigError)
    msg = str(err)
    assert msg.startswith("config/plans/typo.yaml: namespace_maping: 'namespace_maping' is not a known field")
    assert "did you mean 'namespace_mapping'?" in msg and "(line 6)" in msg


def test_unknown_field_in_nested_inline_policy(cfg):
    write(
        cfg / "plans" / "typo.yaml",
        """
        kind: BackupPlan
        name: typo
        cluster: source
        repository: sandbox-s3
        namespaces: {names: [web]}
        policy: {retention: 7d, shedule: {type: on_demand}}
    """,
    )
    err = load_plans(cfg)[1][cfg / "plans" / "typo.yaml"]
    assert "policy.shedule: 'shedule' is not a known field; did you mean 'schedule'?" in str(err)


def test_bad_kind_and_yaml_syntax(cfg):
    write(cfg / "plans" / "kind.yaml", "kind: BackupPln\nname: k\n")
    write(cfg / "plans" / "syntax.yaml", "kind: RestorePlan\nname: s\n bad: [\n")
    _, results = load_plans(cfg)
    kind = str(results[cfg / "plans" / "kind.yaml"])
    assert "config/plans/kind.yaml: kind: 'BackupPln' is not allowed; expected one of:" in kind
    assert "'BackupPlan'" in kind and "'MigrationPlan'" in kind
    syntax = results[cfg / "plans" / "syntax.yaml"]
    assert str(syntax).startswith("config/plans/syntax.yaml: invalid YAML")
    assert syntax.issues[0].line == 3


def test_duplicate_yaml_key_is_an_error(cfg):
    write(cfg / "plans" / "dup.yaml", "kind: RestorePlan\nname: a\nname: b\n")
    err = load_plans(cfg)[1][cfg / "plans" / "dup.yaml"]
    assert "duplicate key 'name'" in str(err) and err.issues[0].line == 3


def test_unquoted_times_are_times_not_base60(cfg):
    write(
        cfg / "policies.yaml",
        """
        evening:
          schedule: {type: weekly, days: [mon, wed, fri], at: 19:40}
          retention: 7d
    """,
    )
    config = load_config(cfg)
    assert config.policies["evening"].schedule.at == dt.time(19, 40)


def test_several_errors_in_one_file_all_reported(cfg):
    write(
        cfg / "plans" / "many.yaml",
        """
        kind: MigrationPlan
        name: Many
        source_cluster: source
        target_cluster: target
        repository: sandbox-s3
        namespaces: {names: [a]}
        schedule: {type: every_hours, hours: 30}
        stop_source: maybe
    """,
    )
    err = load_plans(cfg)[1][cfg / "plans" / "many.yaml"]
    fields = {i.field: i.message for i in err.issues}
    assert fields["name"].startswith("'Many' is not a valid name; expected a DNS-1123 label")
    assert fields["schedule.hours"] == "30 is too large; must be at most 23"
    assert fields["stop_source"] == "'maybe' is not a boolean; expected true or false"


# -- secrets never in YAML --------------------------------------------------------------------------


def test_literal_key_rejected(cfg):
    write(
        cfg / "repositories.yaml",
        """
        leaky:
          type: s3
          connection_id: ys1000_s3
          bucket: ys1000-backups
          key: "hunter2-secret"
    """,
    )
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    msg = str(exc.value)
    assert "config/repositories.yaml: leaky.key: <redacted> must not hold the encryption key itself" in msg
    assert "Airflow Variable" in msg and "key: {variable: NAME}" in msg
    assert "hunter2" not in msg


@pytest.mark.parametrize(
    "entry, field, value",
    [
        ({"passphrase": "hunter2"}, "passphrase", "<redacted>"),
        ({"key": {"passphrase": "hunter2"}}, "key.passphrase", "<redacted>"),
        ({"key": {"variable": "a", "connection_id": "b"}}, "key", "{'connection_id': 'b', 'variable': 'a'}"),
        ({"key": {}}, "key", None),
    ],
)
def test_key_must_be_a_reference(cfg, entry, field, value):
    data = {"type": "local", "path": "/tmp/r", "key": {"variable": "v"}} | entry
    with pytest.raises(ValidationError) as exc:
        RepositorySpec.model_validate(data)
    assert "hunter2" not in str(exc.value)
    from ys1000.config.errors import issues_from_validation_error

    issues = issues_from_validation_error(exc.value, file="repositories.yaml", data=data)
    assert [i.field for i in issues] == [field]
    # through the loader: file, the entry's field, the value (a passphrase only as <redacted>)
    msg = entry_error(cfg, "repositories.yaml", data)
    names(msg, "config/repositories.yaml", f"bad.{field}", value)
    assert len(msg.splitlines()) == 1 and "hunter2" not in msg


def test_repository_rules():
    ok = RepositorySpec.model_validate(
        {
            "type": "s3",
            "connection_id": "c",
            "bucket": "my.bucket-1",
            "key": {"connection_id": "k"},
            "object_lock": {"mode": "COMPLIANCE"},
        }
    )
    assert ok.region == "us-east-1" and ok.prefix == ""
    cfg = ok.to_repository_config(endpoint_url="http://127.0.0.1:9000", access_key="a", secret_key="s")
    assert (cfg.bucket, cfg.endpoint_url, cfg.lock_mode) == ("my.bucket-1", "http://127.0.0.1:9000", "COMPLIANCE")


@pytest.mark.parametrize(
    "bad, field, value, what",
    [
        ({"type": "s3", "bucket": "b-123"}, "connection_id", None, "is required for a repository of type s3"),
        ({"type": "s3", "connection_id": "c"}, "bucket", None, "is required for a repository of type s3"),
        (
            {"type": "s3", "connection_id": "c", "bucket": "Bad_Bucket"},
            "bucket",
            "'Bad_Bucket'",
            "is not a valid S3 bucket name",
        ),
        (
            {"type": "s3", "connection_id": "c", "bucket": "192.168.1.1"},
            "bucket",
            "'192.168.1.1'",
            "is not a valid S3 bucket name",
        ),
        ({"type": "local"}, "path", None, "is required for a repository of type local"),
        ({"type": "local", "path": "/x", "bucket": "abc"}, "bucket", "'abc'", "is only for type s3"),
        ({"type": "ftp", "path": "/x"}, "type", "'ftp'", "is not allowed; expected one of: 's3' or 'local'"),
    ],
)
def test_repository_rejects(cfg, bad, field, value, what):
    bad = bad | {"key": {"variable": "v"}}
    with pytest.raises(ValidationError):
        RepositorySpec.model_validate(bad)
    msg = entry_error(cfg, "repositories.yaml", bad)
    names(msg, "config/repositories.yaml", f"bad.{field}", value)
    assert what in msg


# -- cross-file references ------------------------------------------------------------------------


def test_cross_references_list_existing_names(cfg):
    write(
        cfg / "plans" / "refs.yaml",
        """
        kind: BackupPlan
        name: refs
        cluster: prod
        repository: nas
        namespaces: {names: [web]}
        policy: hourly
    """,
    )
    err = load_plans(cfg)[1][cfg / "plans" / "refs.yaml"]
    lines = str(err).splitlines()
    assert lines[0] == (
        "config/plans/refs.yaml: cluster: 'prod' is not a cluster defined in "
        "config/clusters.yaml; defined: source, target (line 3)"
    )
    assert (
        "repository: 'nas' is not a repository defined in config/repositories.yaml; defined: local, sandbox-s3"
        in lines[1]
    )
    assert "policy: 'hourly' is not a policy" in lines[2]
    assert "full-filecopy-4x-daily" in lines[2] and "nightly-shanghai" in lines[2]


def test_migration_clusters_must_differ_and_exist(cfg):
    write(
        cfg / "plans" / "m.yaml",
        """
        kind: MigrationPlan
        name: m
        source_cluster: source
        target_cluster: source
        repository: sandbox-s3
        namespaces: {names: [web]}
    """,
    )
    err = load_plans(cfg)[1][cfg / "plans" / "m.yaml"]
    assert "target_cluster: 'source' is the same as source_cluster" in str(err)


def test_plan_names_unique(cfg):
    write(cfg / "plans" / "zz-copy.yaml", (cfg / "plans" / "wordpress-backup.yaml").read_text())
    _, results = load_plans(cfg)
    assert isinstance(results[cfg / "plans" / "wordpress-backup.yaml"], BackupPlan)
    err = results[cfg / "plans" / "zz-copy.yaml"]
    assert "name: 'wordpress-backup' is already the name of the plan in config/plans/wordpress-backup.yaml" in str(err)


def test_builtin_policy_cannot_be_redefined(cfg):
    write(
        cfg / "policies.yaml",
        """
        resources-every-3h:
          scope: full
          retention: 1d
    """,
    )
    with pytest.raises(ConfigError, match=r"config/policies.yaml: resources-every-3h: .* built-in policy"):
        load_config(cfg)


def test_named_policy_resolution(cfg):
    write(
        cfg / "plans" / "named.yaml",
        """
        kind: BackupPlan
        name: named
        cluster: source
        repository: local
        namespaces: {globs: ["shop-*"], selector: "team in (a,b)"}
        policy: volumes-snapshot-mon-wed-fri
    """,
    )
    config = load_config(cfg)
    plan = config.plans["named"]
    assert config.policy_for(plan) is config.policies["volumes-snapshot-mon-wed-fri"]
    assert plan.namespaces.matches("shop-1") and not plan.namespaces.matches("web")
    assert plan.namespaces.matches("web", {"team": "a"})
    assert config.clusters_of(plan) == ["source"]


# -- models in detail ------------------------------------------------------------------------------


def test_policy_export_rules():
    base = {"method": "snapshot_export", "retention": "7d"}
    assert PolicySpec.model_validate(base).export.mode == "all_now"
    p = PolicySpec.model_validate(base | {"export": {"mode": "selected_at", "at": "02:00", "pvcs": ["web/data"]}})
    assert p.export.at == dt.time(2, 0)
    assert PolicySpec.model_validate({"retention": "1d12h"}).retention == dt.timedelta(hours=36)
    assert PolicySpec.model_validate({"retention": "30d"}).model_dump(mode="json")["retention"] == "30d"


@pytest.mark.parametrize(
    "bad, field, value, what",
    [
        (
            {"export": {"mode": "selected_at", "pvcs": ["web/data"]}},
            "export.at",
            None,
            "is required when export mode is selected_at",
        ),
        ({"export": {"mode": "selected_now"}}, "export.pvcs", "[]", "must list the PVCs to export"),
        ({"export": {"mode": "all_now", "at": "02:00"}}, "export.at", "'02:00'", "is only used with mode selected_at"),
        (
            {"method": "filecopy", "export": {"mode": "all_now"}},
            "export",
            "'all_now'",
            "is only used with method snapshot_export (method is filecopy)",
        ),
        ({"retention": "0d"}, "retention", "'0d'", "is not a positive duration"),
        ({"retention": "7 days"}, "retention", "'7 days'", "is not a duration"),
    ],
)
def test_policy_rejects(cfg, bad, field, value, what):
    bad = {"method": "snapshot_export", "retention": "7d"} | bad
    with pytest.raises(ValidationError):
        PolicySpec.model_validate(bad)
    msg = entry_error(cfg, "policies.yaml", bad)
    names(msg, "config/policies.yaml", f"bad.{field}", value)
    assert what in msg


def test_cluster_model():
    c = ClusterSpec.model_validate(
        {
            "connection_id": "k",
            "image_registry_rewrite": {"docker.io": "mirror.local:5000"},
            "bandwidth": {"limit_kib_s": 1024, "window": {"start": "22:00", "end": "06:00"}},
        }
    )
    assert c.mover_image == "ys1000/mover:0.1.0" and c.max_concurrent_movers == 2
    assert c.rewrite_image("docker.io/library/nginx:1.25") == "mirror.local:5000/library/nginx:1.25"
    assert c.rewrite_image("nginx:1.25") == "nginx:1.25"
    assert c.rewrite_image("quay.io/x/y@sha256:abc") == "quay.io/x/y@sha256:abc"
    assert c.bandwidth.limit_at(dt.time(23, 0)) == 1024
    assert c.bandwidth.limit_at(dt.time(5, 59)) == 1024
    assert c.bandwidth.limit_at(dt.time(12, 0)) is None


@pytest.mark.parametrize(
    "bad, field, value, what",
    [
        (
            {"connection_id": "k", "bandwidth": {"limit_kib_s": 0}},
            "bandwidth.limit_kib_s",
            "0",
            "is too small; must be greater than 0",
        ),
        (
            {"connection_id": "k", "bandwidth": {"limit_kib_s": 1, "window": {"start": "10:00", "end": "10:00"}}},
            "bandwidth.window.end",
            "'10:00'",
            "equals start",
        ),
        (
            {"connection_id": "k", "image_registry_rewrite": {"https://docker.io": "x"}},
            "image_registry_rewrite.https://docker.io",
            "'https://docker.io'",
            "is not a registry host",
        ),
        (
            {"connection_id": "k", "max_concurrent_movers": 0},
            "max_concurrent_movers",
            "0",
            "is too small; must be at least 1",
        ),
        ({"conection_id": "k"}, "conection_id", "'conection_id'", "did you mean 'connection_id'?"),
    ],
)
def test_cluster_rejects(cfg, bad, field, value, what):
    with pytest.raises(ValidationError):
        ClusterSpec.model_validate(bad)
    msg = entry_error(cfg, "clusters.yaml", bad)
    names(msg, "config/clusters.yaml", f"bad.{field}", value)
    assert what in msg


def test_backup_plan_details():
    plan = BackupPlan.model_validate(
        {
            "kind": "BackupPlan",
            "name": "db",
            "cluster": "source",
            "repository": "local",
            "namespaces": {"names": ["db"]},
            "policy": {"retention": "7d"},
            "volumes": {"db/data": "snapshot", "db/cache": "skip"},
            "hooks": [
                {"phase": "PreBackup", "type": "ansible", "namespace": "db", "playbook_file": "db/flush.yaml"},
                {
                    "phase": "PostBackup",
                    "type": "image",
                    "namespace": "db",
                    "image": "busybox",
                    "command": ["true"],
                    "timeout": "5m",
                    "on_failure": "continue",
                },
            ],
            "consistency": [
                {
                    "type": "mysql",
                    "workload": "StatefulSet/mysql",
                    "secret": {"name": "mysql-auth", "password_key": "root-password"},
                }
            ],
            "notify": {"email": ["ops@example.com"], "wechat": "ys1000_wechat"},
        }
    )
    assert plan.limits.max_namespaces == 10 and plan.limits.max_pods == 100 and plan.limits.max_pvcs == 100
    assert [h.name for h in plan.hooks] == ["prebackup-1", "postbackup-1"]
    assert plan.hooks[0].cluster == "source" and plan.hooks[0].image == "ys1000/ansible-runner:0.1.0"
    assert plan.hooks[1].timeout == dt.timedelta(minutes=5)
    c = plan.consistency[0]
    assert (c.namespace, c.workload, c.port, c.max_lock) == ("db", "statefulset/mysql", 3306, dt.timedelta(minutes=10))
    assert plan.owner == "ys1000"
    dumped = plan.model_dump(mode="json")
    assert dumped["hooks"][1]["timeout"] == "5m"
    assert BackupPlan.model_validate(dumped) == plan


@pytest.mark.parametrize(
    "change, field, value, what",
    [
        (
            {"hooks": [{"phase": "PostRestore", "type": "image", "image": "x", "namespace": "db"}]},
            "hooks.0.phase",
            "'PostRestore'",
            "is not allowed in a BackupPlan; allowed: PreBackup, PostBackup",
        ),
        (
            {"hooks": [{"phase": "PreBackup", "type": "ansible", "namespace": "db"}]},
            "hooks.0.playbook",
            None,
            "needs exactly one of 'playbook' (inline text) or 'playbook_file'",
        ),
        (
            {"hooks": [{"phase": "PreBackup", "type": "ansible", "namespace": "db", "playbook_file": "../etc/x"}]},
            "hooks.0.playbook_file",
            "'../etc/x'",
            "is not a path under include/hooks/",
        ),
        (
            {"consistency": [{"type": "mysql", "service": "db"}]},  # no secret
            "consistency.0.secret",
            None,
            "is required for mysql",
        ),
        (
            {"consistency": [{"type": "mongodb", "service": "db", "host": "db.local"}]},
            "consistency.0",
            None,
            "needs exactly one of 'workload', 'service' or 'host' to find the database (got service, host)",
        ),
        ({"namespaces": {}}, "namespaces", None, "selects no namespace"),
        (
            {"namespaces": {"names": [f"n{i}" for i in range(11)]}},
            "namespaces.names",
            "'n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10'",
            "the limit is 10",
        ),
        (
            {"namespaces": {"selector": "app in ()"}},
            "namespaces.selector",
            "'app in ()'",
            "is not a valid label selector",
        ),
        (
            {"volumes": {"other/data": "skip"}},
            "volumes.other/data",
            "'other/data'",
            "refers to namespace 'other', which is not in namespaces.names (db)",
        ),
        ({"volumes": {"data": "skip"}}, "volumes.data", "'data'", "is not a PVC reference"),
        ({"volumes": {"db/data": "copy"}}, "volumes.db/data", "'copy'", "is not allowed; expected one of"),
        (
            {"resources": {"include_kinds": ["Secret"], "exclude_kinds": ["Secret"]}},
            "resources.exclude_kinds",
            "['Secret']",
            "in both include_kinds and exclude_kinds",
        ),
    ],
)
def test_backup_plan_rejects(cfg, change, field, value, what):
    plan = {
        "kind": "BackupPlan",
        "name": "db",
        "cluster": "source",
        "repository": "local",
        "namespaces": {"names": ["db"]},
        "policy": "resources-every-3h",
    } | change
    with pytest.raises(ValidationError):
        BackupPlan.model_validate(plan)
    msg = plan_error(cfg, plan)
    names(msg, "config/plans/bad.yaml", field, value)
    assert what in msg


def test_restore_plan_rules():
    base = {
        "kind": "RestorePlan",
        "name": "r",
        "backup": {"plan": "p"},
        "target_cluster": "target",
        "repository": "local",
    }
    plan = RestorePlan.model_validate(base | {"resources": ["Deployment/web/app", "ClusterRole/viewer"]})
    assert plan.backup.id == "latest" and plan.schedule.type == "on_demand"
    assert plan.remove_node_constraints is False and plan.remove_tolerations is False


@pytest.mark.parametrize(
    "bad, field, value, what",
    [
        (
            {"namespace_mapping": {"a": "c", "b": "c"}},
            "namespace_mapping",
            "{'a': 'c', 'b': 'c'}",
            "maps several namespaces onto 'c'",
        ),
        ({"resources": ["web/app"]}, "resources", "['web/app']", "lists 'web/app', not a resource"),
        (
            {"existing_resource_policy": "overwrite"},
            "existing_resource_policy",
            "'overwrite'",
            "is not allowed; expected one of: 'skip', 'update' or 'fail'",
        ),
        (
            {"storage_class_mapping": {"Fast_SSD": "x"}},
            "storage_class_mapping",
            "{'Fast_SSD': 'x'}",
            "'Fast_SSD' is not a valid StorageClass name",
        ),
    ],
)
def test_restore_plan_rejects(cfg, bad, field, value, what):
    plan = {
        "kind": "RestorePlan",
        "name": "r",
        "backup": {"plan": "p"},
        "target_cluster": "target",
        "repository": "local",
    } | bad
    with pytest.raises(ValidationError):
        RestorePlan.model_validate(plan)
    msg = plan_error(cfg, plan)
    names(msg, "config/plans/bad.yaml", field, value)
    assert what in msg


def test_label_selector_matching():
    assert selector_matches("app=web,tier in (db, cache),!legacy", {"app": "web", "tier": "db"})
    assert not selector_matches("app=web,!legacy", {"app": "web", "legacy": "1"})
    assert selector_matches("env!=prod", {})
    assert not selector_matches("release", {"app": "x"})
