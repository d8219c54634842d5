"""Fixtures for the Airflow tier: config directories, the metadata DB, sandbox connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from af_helpers import DAGS


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised metadata DB (SQLite under the session's AIRFLOW_HOME)."""
    from airflow.utils import db

    db.initdb()
    return True


@pytest.fixture
def dagbag(monkeypatch):
    """``dagbag(config_dir)``: the DagBag of dags/ with YS1000_CONFIG_DIR set to ``config_dir``."""

    def make(config_dir: Path):
        from airflow.dag_processing.dagbag import DagBag

        monkeypatch.setenv("YS1000_CONFIG_DIR", str(config_dir))
        return DagBag(dag_folder=str(DAGS), bundle_path=DAGS)

    return make
