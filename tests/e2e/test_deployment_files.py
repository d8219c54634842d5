"""docker-compose.yaml, Dockerfile and Dockerfile.mover: no container engine runs here, so check
what can be checked without one — valid YAML, the services of the official Airflow layout, one
shared Airflow environment, every Airflow option a real option, and consistency with the
project's config (connections, key Variable, bucket, mounts) and pins (Airflow, restic)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())  # merges the << anchors


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def _default(value: str) -> str:
    """``${VAR:-default}`` → default (what compose substitutes without a .env)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_services_and_shared_airflow_environment(compose):
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "minio", "createbuckets"} <= set(services)
    assert "x-airflow-common" in compose
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }
    common = _env(compose["x-airflow-common"])
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        assert {k: v for k, v in env.items() if k in common} == common, name  # the anchor, merged
        assert services[name]["image"] == compose["x-airflow-common"]["image"]
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "@postgres/" in common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert (
        common["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and "@redis:6379" in common["AIRFLOW__CELERY__BROKER_URL"]
    )
    # the workers reach the API server's execution API by its service name and port
    api_port = services["airflow-apiserver"]["ports"][0].split(":")[-1]
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://airflow-apiserver:{api_port}/execution/"
    # the init step migrates the DB and creates the cluster pools before anything starts
    init = "\n".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init and "ys1000 airflow pools" in init
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_airflow_options_exist():
    """Every ``AIRFLOW__SECTION__KEY`` in the file is an option Airflow (or a provider) knows."""
    from airflow.configuration import conf

    text = (REPO / "docker-compose.yaml").read_text()
    keys = set(re.findall(r"^\s+AIRFLOW__([A-Z_]+?)__([A-Z_]+):", text, re.M))
    assert len(keys) > 10
    known = conf.configuration_description  # Airflow's and the installed providers' options
    unknown = [f"{s}.{k}".lower() for s, k in keys if k.lower() not in (known.get(s.lower()) or {}).get("options", {})]
    assert unknown == []


def test_consistent_with_the_config(compose):
    from ys1000.config import load_config

    common = _env(compose["x-airflow-common"])
    volumes = {_default(v).split(":")[1]: _default(v).split(":")[0] for v in compose["x-airflow-common"]["volumes"]}
    # the project is mounted: dags/, config/ (YS1000_CONFIG_DIR) and include/
    assert volumes["/opt/airflow/dags"] == "./dags"
    assert volumes[common["YS1000_CONFIG_DIR"]] == "./config"
    assert volumes["/opt/ys1000/include"] == "./include"

    config = load_config(REPO / "config")
    conns = {
        k.removeprefix("AIRFLOW_CONN_").lower(): json.loads(_default(v))
        for k, v in common.items()
        if k.startswith("AIRFLOW_CONN_")
    }
    for name, cluster in config.clusters.items():
        conn = conns[cluster.connection_id]
        assert conn["conn_type"] == "kubernetes"
        mount = conn["extra"]["kube_config_path"].rsplit("/", 1)[0]
        assert mount in volumes, f"cluster {name}: kubeconfig folder {mount} is not mounted"
    minio = compose["services"]["minio"]
    created = "\n".join(compose["services"]["createbuckets"]["command"])
    for name, repo in config.repositories.items():
        if repo.type != "s3":
            continue
        conn = conns[repo.connection_id]
        assert conn["conn_type"] == "aws" and conn["extra"]["endpoint_url"] == "http://minio:9000", name
        assert conn["login"] == _default(minio["environment"]["MINIO_ROOT_USER"])
        assert conn["password"] == _default(minio["environment"]["MINIO_ROOT_PASSWORD"])
        assert f"/{repo.bucket}" in created, f"bucket {repo.bucket} of repository {name} is not created"
        variable = repo.key.variable
        if variable:
            assert f"AIRFLOW_VAR_{variable.upper()}" in common


def test_images_match_the_pins():
    pyproject = (REPO / "pyproject.toml").read_text()
    airflow = re.search(r'"apache-airflow==([\d.]+)"', pyproject).group(1)
    restic = re.search(r"^RESTIC_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={airflow}" in dockerfile
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python3\.11$", dockerfile, re.M)
    assert f"ARG RESTIC_VERSION={restic}" in dockerfile
    assert "[production]" in dockerfile and "requirements.lock" in dockerfile
    mover = (REPO / "Dockerfile.mover").read_text()
    assert f"ARG RESTIC_VERSION={restic}" in mover
    assert re.search(r"^FROM python:3\.11", mover, re.M)
    assert 'ENTRYPOINT ["python", "-m", "ys1000.mover"]' in mover
    # the image tag clusters use for movers by default is the one Dockerfile.mover documents
    from ys1000.config.clusters import DEFAULT_MOVER_IMAGE

    assert f"-t {DEFAULT_MOVER_IMAGE} " in mover
    # every project path the Dockerfiles copy exists
    for text in (dockerfile, mover):
        for line in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+)$", text, re.M):
            for src in line.split()[:-1]:
                assert (REPO / src).exists(), src
