"""Session-wide fixtures: one sandbox (two real control planes + S3) per test session.

Airflow settings are fixed here, before anything imports airflow, so tests never touch a
developer's own AIRFLOW_HOME.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(os.environ.get("YS1000_TEST_DIR") or tempfile.mkdtemp(prefix="ys1000-test-"))
_SESSION_DIR.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))

import pytest  # noqa: E402

from ys1000_dev.sandbox.s3 import S3Endpoint, bootstrap, start_s3  # noqa: E402


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def s3(session_dir: Path):
    """S3 on loopback (MinIO, credentials enforced) with one default bucket."""
    proc, url = start_s3(session_dir / "s3-tests.log", session_dir / "s3-tests-data")
    try:
        yield bootstrap(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def bucket(s3: S3Endpoint) -> str:
    """A fresh, empty bucket for one test."""
    return s3.new_bucket(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def locked_bucket(s3: S3Endpoint) -> str:
    """A fresh bucket with S3 Object Lock enabled."""
    return s3.new_bucket(f"l-{uuid.uuid4().hex[:12]}", object_lock=True)


# -- the sandbox: two real control planes (source, target) + S3, started once per session --------

from dataclasses import dataclass  # noqa: E402

from kubernetes import client, config  # noqa: E402

from ys1000_dev.sandbox import supervisor  # noqa: E402


@dataclass
class Cluster:
    """One sandbox cluster as tests use it."""

    name: str
    kubeconfig: str
    root: Path  # the cluster's folder in the sandbox dir (volumes, snapshots, pod logs)

    def api(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=self.kubeconfig)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api())

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api())

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api())

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api())


@pytest.fixture(scope="session")
def sandbox(session_dir: Path):
    """The session's sandbox. Reuses one already up in $YS1000_SANDBOX_DIR, else starts one.

    Without the control-plane binary the cluster tests are skipped, except under
    ``make test`` (YS1000_REQUIRE_SANDBOX=1), where a missing sandbox is an error.
    """
    shared = os.environ.get("YS1000_SANDBOX_DIR")
    if shared and supervisor.status(Path(shared)):
        yield supervisor.status(Path(shared)) | {"dir": shared}
        return
    if not supervisor.controlplane_binary().exists():
        if os.environ.get("YS1000_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"{supervisor.controlplane_binary()} missing: run `make controlplane`")
        pytest.skip("control plane not built (make controlplane)")
    root = session_dir / "sandbox"
    info = supervisor.up(root)
    try:
        yield info | {"dir": str(root)}
    finally:
        supervisor.down(root)


def _cluster(sandbox: dict, name: str) -> Cluster:
    c = sandbox["clusters"][name]
    return Cluster(name, c["kubeconfig"], Path(sandbox["dir"]) / name)


@pytest.fixture(scope="session")
def source(sandbox) -> Cluster:
    return _cluster(sandbox, "source")


@pytest.fixture(scope="session")
def target(sandbox) -> Cluster:
    return _cluster(sandbox, "target")


@pytest.fixture(scope="session")
def sandbox_s3(sandbox) -> S3Endpoint:
    return S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))


@pytest.fixture
def make_namespace():
    """Factory: ``make_namespace(cluster)`` creates a fresh namespace, deleted after the test."""
    made: list[tuple[Cluster, str]] = []

    def make(cluster: Cluster, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        cluster.core.create_namespace({"metadata": {"name": name, "labels": {"ys1000.io/test": "true"}}})
        made.append((cluster, name))
        return name

    yield make
    for cluster, name in made:
        try:
            cluster.core.delete_namespace(name)
        except client.exceptions.ApiException:
            pass


@pytest.fixture
def namespace(source: Cluster, make_namespace) -> str:
    """A fresh namespace in the source cluster."""
    return make_namespace(source)


def pytest_collection_modifyitems(config, items):
    """Tests that use the sandbox carry the ``cluster`` marker (``make test-fast`` skips them).

    Modules run longest-first: those with a ``slow`` test (the demo first), then the cluster
    ones, then the rest, each module's tests in file order. ``make test`` hands whole modules to
    two xdist workers in this order (``--dist loadfile --no-loadscope-reorder``), so the long
    end-to-end modules — mostly waiting on Airflow and throttled movers — start early and
    overlap, and the short ones fill in at the end."""
    for item in items:
        if "sandbox" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
    rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        r = 0 if module.endswith("test_demo.py") else 1 if item.get_closest_marker("slow") else 2
        r = r if item.get_closest_marker("cluster") or r < 2 else 3
        rank[module] = min(rank.get(module, r), r)
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])  # stable: file order kept
