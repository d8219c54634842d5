"""``pip install .`` (non-editable, as in the Docker image) ships only the product and finds hook
material through configuration.

The wheel is built from a copy of the sources with the repository venv's setuptools (no build
isolation: offline) and installed with ``--no-deps`` into a fresh venv whose only extra path is
the repository venv's site-packages (for Airflow, kubernetes, pydantic …). ``.pth`` files of that
directory are not processed from there, so the editable ``ys1000`` and ``ys1000_dev`` of the
repository venv stay invisible: what imports is what the wheel installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = [
    "ys1000.sandbox",
    "ys1000.demo",
    "ys1000.ports",
    "ys1000.airflow.processes",
    "ys1000.cli.sandbox",
    "ys1000_dev",
]


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{cmd}\nstdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv python, clean environment) of a non-editable install."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy: building in the work tree would leave build/ and egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "plugins", src / "plugins", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            tmp / "wheels",
            src,
        ]
    )
    [wheel] = (tmp / "wheels").glob("ys1000-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel])
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz-repo-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "YS1000_", "AIRFLOW", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return wheel, py, env, tmp


def test_wheel_holds_the_product_only(installed):
    wheel = installed[0]
    names = zipfile.ZipFile(wheel).namelist()
    assert "ys1000/airflow/dagfactory.py" in names
    assert any(n.startswith("ys1000/ui/templates/") for n in names)  # package data still ships
    leaked = [
        n
        for n in names
        if n.startswith(("ys1000/sandbox/", "ys1000_dev/"))
        or n in ("ys1000/demo.py", "ys1000/ports.py", "ys1000/airflow/processes.py", "ys1000/cli/sandbox.py")
    ]
    assert leaked == []


def test_installed_package_imports_and_resolves_the_migration_playbook(installed):
    _, py, env, tmp = installed
    script = textwrap.dedent(f"""
        import importlib.util, json, os
        from pathlib import Path

        out = {{}}
        import ys1000, ys1000.airflow.dagfactory, ys1000.cli, ys1000.mover
        import ys1000.ui.plugin
        out["package"] = str(Path(ys1000.__file__).resolve().parent)
        out["dev_only"] = {{m: importlib.util.find_spec(m) is not None for m in {DEV_ONLY!r}}}
        out["dirs"] = sorted({{p.name for p in Path(ys1000.__file__).parent.rglob("*") if p.is_dir()}})

        from ys1000.config import load_config
        from ys1000.config.paths import HooksDirNotFound, hooks_dir
        from ys1000.hooks.custom import include_hooks_dir

        # YS1000_CONFIG_DIR unset: the package's own location says nothing about the install
        try:
            hooks_dir()
            out["unset"] = None
        except HooksDirNotFound as exc:
            out["unset"] = str(exc)

        os.environ["YS1000_CONFIG_DIR"] = {str(REPO / "config")!r}
        config = load_config(Path(os.environ["YS1000_CONFIG_DIR"]))
        [hook] = [h for h in config.plans["wordpress-migrate"].hooks if h.playbook_file]
        out["playbook_file"] = hook.playbook_file
        out["hooks_dir"] = str(include_hooks_dir().resolve())
        out["playbook"] = (include_hooks_dir() / hook.playbook_file).read_text()
        from ys1000.hooks import custom
        if hasattr(custom, "playbook_files"):
            out["configmap"] = custom.playbook_files(hook)["playbook.yml"]
        print(json.dumps(out))
    """)
    res = json.loads(_run([py, "-c", script], cwd=tmp, env=env).stdout.splitlines()[-1])

    assert Path(res["package"]).is_relative_to(tmp / "venv"), res["package"]  # not the editable source
    assert res["dev_only"] == {m: False for m in DEV_ONLY}
    assert "sandbox" not in res["dirs"] and "crds" not in res["dirs"]

    assert res["unset"] and "YS1000_HOOKS_DIR" in res["unset"] and "YS1000_CONFIG_DIR" in res["unset"]

    assert res["playbook_file"] == "wordpress/rewrite-url.yml"
    assert res["hooks_dir"] == str((REPO / "include" / "hooks").resolve())
    expected = (REPO / "include" / "hooks" / "wordpress" / "rewrite-url.yml").read_text()
    assert res["playbook"] == expected
    if "configmap" in res:
        assert res["configmap"] == expected


def test_console_script_is_the_product_cli(installed):
    _, py, env, tmp = installed
    out = _run([py.parent / "ys1000", "--help"], cwd=tmp, env=env).stdout
    assert "collect-logs" in out and "backup" in out
    assert "sandbox " not in out and not (py.parent / "ys1000-dev").exists()
