"""``ys1000.config.specs``: the one mapping of plans and cluster settings to the engine's specs,
used by the operators and by the CLI's ``--config --cluster``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ys1000.config import load_config
from ys1000.config.specs import (
    BackupNotResolved,
    backup_spec_for,
    restore_volume_options_for,
    resolve_backup,
    volume_options_for,
)
from ys1000.repository import LocalStore, Repository

EXAMPLES = Path(__file__).resolve().parents[2] / "config"
YS1000 = str(Path(sys.executable).parent / "ys1000")


@pytest.fixture
def config_dir(tmp_path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(EXAMPLES, d, ignore=shutil.ignore_patterns("reports.yaml", "plans"))
    (d / "plans").mkdir()
    (d / "clusters.yaml").write_text(
        textwrap.dedent("""
        source:
          connection_id: ys1000_source
          mover_image: registry.example/mover:9
          max_concurrent_movers: 3
          bandwidth: {limit_kib_s: 2048, window: {start: "22:00", end: "06:00"}}
        target:
          connection_id: ys1000_target
        """)
    )
    (d / "plans" / "shop.yaml").write_text(
        textwrap.dedent("""
        kind: BackupPlan
        name: shop
        cluster: source
        repository: sandbox-s3
        namespaces: {names: [shop], globs: ["shop-*"]}
        resources: {exclude_kinds: [Event]}
        volumes: {shop/cache: skip}
        policy: {scope: full, method: snapshot_export, export: {mode: selected_at, at: "02:00", pvcs: [shop/db]},
                 schedule: {type: on_demand}, retention: 3d}
        """)
    )
    return d


def test_backup_plan_maps_to_spec_and_volume_options(config_dir):
    from ys1000.config import load_plans

    config, plans = load_plans(config_dir)
    plan = next(p for p in plans.values() if getattr(p, "name", None) == "shop")
    spec = backup_spec_for(config, plan, "shop-1")
    assert (
        spec.backup_id,
        spec.plan,
        spec.namespaces,
        spec.namespace_globs,
        spec.exclude_kinds,
        spec.scope,
        spec.cluster_name,
        spec.retention_days,
    ) == ("shop-1", "shop", ["shop"], ["shop-*"], ["Event"], "full", "source", 3.0)
    night = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    noon = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    opts = volume_options_for(config, plan, run_id="r", now=night)
    assert (opts.method, opts.per_pvc, opts.image, opts.max_concurrent, opts.limit_upload_kib, opts.cluster_name) == (
        "snapshot_export",
        {"shop/cache": "skip"},
        "registry.example/mover:9",
        3,
        2048,
        "source",
    )
    assert opts.export_pvcs == []  # selected_at: snapshots now, the export after the wait
    assert volume_options_for(config, plan, run_id="r", export_phase=True, now=noon).export_pvcs == ["shop/db"]
    assert volume_options_for(config, plan, run_id="r", now=noon).limit_upload_kib is None  # outside the window
    ropts = restore_volume_options_for(config.clusters["source"], run_id="x", now=night)
    assert (ropts.image, ropts.max_concurrent, ropts.limit_download_kib) == ("registry.example/mover:9", 3, 2048)


def test_latest_is_the_newest_completed_backup(tmp_path):
    repo = Repository.init(LocalStore(tmp_path / "repo"), "pw")
    with pytest.raises(BackupNotResolved, match="no completed backup of plan 'p'"):
        resolve_backup(repo, "latest", "p")
    with pytest.raises(BackupNotResolved, match="needs the plan"):
        resolve_backup(repo, "latest", None)
    assert resolve_backup(repo, "p-123", None) == "p-123"  # an id is taken as given
    for bid, status in (("p-1", "Completed"), ("p-2", "PartiallyFailed")):
        with repo.begin_backup(bid, "p") as w:
            w.add(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}},
                group="",
                version="v1",
                resource="configmaps",
                kind="ConfigMap",
            )
            w.commit(namespaces=["n"], final=False)
        repo.finalize_backup(bid, status=status)
    assert [(e.backup_id, e.status) for e in repo.list_backups("p")][0] == ("p-2", "PartiallyFailed")
    assert resolve_backup(repo, "latest", "p") == "p-1"


def test_cli_reads_mover_settings_from_config_and_names_a_wrong_cluster(config_dir, tmp_path):
    out = subprocess.run(
        [
            YS1000,
            "backup",
            "--kubeconfig",
            str(config_dir / "clusters.yaml"),
            "--repo",
            str(tmp_path / "r"),
            "-n",
            "x",
            "--config",
            str(config_dir),
            "--cluster",
            "nope",
        ],
        capture_output=True,
        text=True,
        env={"YS1000_REPO_KEY": "k", "PATH": "/usr/bin"},
    )
    assert out.returncode == 2, out
    assert "cluster 'nope' is not defined in" in out.stderr and "defined: source, target" in out.stderr
    out = subprocess.run(
        [
            YS1000,
            "backup",
            "--kubeconfig",
            str(config_dir / "clusters.yaml"),
            "--repo",
            str(tmp_path / "r"),
            "-n",
            "x",
            "--cluster",
            "source",
        ],
        capture_output=True,
        text=True,
        env={"YS1000_REPO_KEY": "k", "PATH": "/usr/bin"},
    )
    assert out.returncode == 2 and "--config and --cluster go together" in out.stderr
    assert load_config(config_dir).clusters["source"].max_concurrent_movers == 3
