"""``ys1000.config.paths.hooks_dir``: hook material found through configuration, never relative to
the package's own files (which sit in site-packages in a non-editable install)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ys1000.config.paths import HooksDirNotFound, hooks_dir
from ys1000.hooks.custom import include_hooks_dir, playbook_files

REPO = Path(__file__).resolve().parents[2]


def test_env_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("YS1000_HOOKS_DIR", str(tmp_path))
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(REPO / "config"))
    assert hooks_dir() == tmp_path
    assert include_hooks_dir() == tmp_path


def test_beside_the_config_dir(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "include" / "hooks" / "app").mkdir(parents=True)
    (tmp_path / "include" / "hooks" / "app" / "play.yml").write_text("- hosts: localhost\n")
    monkeypatch.delenv("YS1000_HOOKS_DIR", raising=False)
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(tmp_path / "config"))
    assert hooks_dir() == tmp_path / "include" / "hooks"
    files = playbook_files({"name": "h", "playbook_file": "app/play.yml"})
    assert files == {"playbook.yml": "- hosts: localhost\n"}


def test_missing_names_both_variables(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    monkeypatch.delenv("YS1000_HOOKS_DIR", raising=False)
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(tmp_path / "config"))
    with pytest.raises(
        HooksDirNotFound,
        match=r"YS1000_HOOKS_DIR is not set.*"
        r"YS1000_CONFIG_DIR=.*config",
    ) as err:
        hooks_dir()
    assert str(tmp_path / "include" / "hooks") in str(err.value)


def test_env_variable_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("YS1000_HOOKS_DIR", str(tmp_path / "nope"))
    with pytest.raises(HooksDirNotFound, match=r"YS1000_HOOKS_DIR=.*nope is not a directory"):
        hooks_dir()


def test_display_path_of_a_relative_config_dir_follows_the_working_directory(tmp_path, monkeypatch):
    """The resolved config directory is cached only when absolute: a relative one means another
    directory after a chdir, and each is shown relative to its own parent."""
    from ys1000.config.loader import display_path

    for d in ("a", "b"):
        (tmp_path / d / "config" / "plans").mkdir(parents=True)
        (tmp_path / d / "config" / "plans" / "p.yaml").write_text("")
    for d in ("a", "b"):
        monkeypatch.chdir(tmp_path / d)
        plan = tmp_path / d / "config" / "plans" / "p.yaml"
        assert display_path(plan, Path("config")) == "config/plans/p.yaml"
        assert display_path(plan, tmp_path / d / "config") == "config/plans/p.yaml"
