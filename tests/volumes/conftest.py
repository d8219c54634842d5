"""Fixtures for volume-data tests (helpers are in ``volume_helpers``)."""

from __future__ import annotations

import uuid

import pytest

from ys1000.repository import open_repository


@pytest.fixture
def volume_repo(sandbox_s3):
    bucket = sandbox_s3.new_bucket(f"vol-{uuid.uuid4().hex[:8]}")
    cfg = sandbox_s3.repository_config(bucket, "v")
    return open_repository(cfg, "volume-key", create=True), cfg, bucket
