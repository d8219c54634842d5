"""Helpers of the Airflow tests (config directories)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "config"
DAGS = REPO / "dags"


def copy_config(dest: Path, *, plans: bool = True) -> Path:
    """A copy of the example config in ``dest`` (optionally without its plans)."""
    shutil.copytree(EXAMPLE_CONFIG, dest)
    if not plans:
        shutil.rmtree(dest / "plans")
        (dest / "plans").mkdir()
    return dest


def write_plan(config_dir: Path, filename: str, text: str) -> Path:
    path = config_dir / "plans" / filename
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def set_bucket(config_dir: Path, repository: str, bucket: str) -> None:
    """Point an s3 repository of ``config_dir`` at another bucket."""
    import yaml

    path = config_dir / "repositories.yaml"
    data = yaml.safe_load(path.read_text())
    data[repository]["bucket"] = bucket
    path.write_text(yaml.safe_dump(data, sort_keys=False))
