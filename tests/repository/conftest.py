"""Fixtures for repository tests: stores on the loopback S3 and in a temp directory."""

from __future__ import annotations

import uuid

import pytest

from ys1000.repository import LocalStore, Repository, S3Store

from repo_helpers import PASSPHRASE


@pytest.fixture
def s3_store(s3, bucket) -> S3Store:
    return S3Store(s3.client(), bucket, prefix=f"repos/{uuid.uuid4().hex[:6]}")


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "repo")


@pytest.fixture(params=["s3", "local"])
def store(request):
    """The same behaviour is required of both stores."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def repo(store) -> Repository:
    return Repository.init(store, PASSPHRASE)


@pytest.fixture
def s3_repo(s3_store) -> Repository:
    return Repository.init(s3_store, PASSPHRASE)


@pytest.fixture
def locked_repo(s3, locked_bucket) -> Repository:
    return Repository.init(S3Store(s3.client(), locked_bucket, prefix="locked"), PASSPHRASE)
