"""Fixtures for the fault matrix: a real TCP fault proxy (toxiproxy) in front of the sandbox's S3.

The repository under test is configured with the proxy's address as its endpoint, so the engine's
boto3 client and the movers' restic (which get the same endpoint from the repository config)
both reach S3 only through the proxy; assertions about what S3 holds use a direct client."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ys1000.repository import open_repository
from ys1000_dev.toxiproxy import Toxiproxy

KEY = "fault-matrix-key"


@pytest.fixture(scope="session")
def toxiproxy(session_dir: Path):
    try:
        server = Toxiproxy.start(session_dir / "toxiproxy.log")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_proxy(toxiproxy: Toxiproxy, sandbox_s3):
    """A fresh proxy to the sandbox's S3 (no toxics); removed after the test."""
    upstream = urlsplit(sandbox_s3.endpoint_url).netloc
    proxy = toxiproxy.proxy(f"s3-{uuid.uuid4().hex[:8]}", upstream)
    yield proxy
    toxiproxy.request("DELETE", f"/proxies/{proxy.name}")


@pytest.fixture
def proxied_repo(sandbox_s3, s3_proxy):
    """``(repo, cfg, bucket)``: a repository in a fresh bucket, reached through ``s3_proxy``."""
    bucket = sandbox_s3.new_bucket(f"f-{uuid.uuid4().hex[:10]}")
    cfg = sandbox_s3.repository_config(bucket, "r", endpoint_url=s3_proxy.url)
    return open_repository(cfg, KEY, create=True), cfg, bucket
