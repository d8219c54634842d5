"""Fixtures for volume-data tests (helpers are in ``volume_helpers``)."""

from __future__ import annotations

import uuid

import pytest

from ys1000.repository import RepositoryConfig, open_repository


@pytest.fixture
def volume_repo(sandbox_s3):
    bucket = sandbox_s3.new_bucket(f"vol-{uuid.uuid4().hex[:8]}")
    cfg = RepositoryConfig(
        type="s3",
        bucket=bucket,
        prefix="v",
        endpoint_url=sandbox_s3.endpoint_url,
        access_key=sandbox_s3.access_key,
        secret_key=sandbox_s3.secret_key,
        region=sandbox_s3.region,
    )
    return open_repository(cfg, "volume-key", create=True), cfg, bucket
