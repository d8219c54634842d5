"""Where a repository lives, as the CLI and the Airflow operators both describe it.

The CLI fills a ``RepositoryConfig`` from flags/env, the operators from an Airflow connection;
``open_repository`` turns either into an opened ``Repository``. The secret key is a
``SecretStr`` so it never shows up in a repr, a log line or a validation error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .repository import Repository
from .storage import DEFAULT_LOCK_MODE, LocalStore, ObjectStore, S3Store


class RepositoryConfig(BaseModel):
    """A repository location: an S3 bucket (+ prefix) at any endpoint, or a local directory."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["s3", "local"] = "s3"
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = Field(None, description="MinIO/QingStor/sandbox URL; None for AWS")
    access_key: str | None = None
    secret_key: SecretStr | None = None
    path: str | None = Field(None, description="directory for type local")
    addressing_style: Literal["auto", "path", "virtual"] | None = Field(
        None, description="default: path when endpoint_url is set (MinIO), else auto"
    )
    verify_tls: bool = True
    lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = DEFAULT_LOCK_MODE
    connect_timeout: float = 5.0
    max_attempts: int = 3

    @model_validator(mode="after")
    def _check(self) -> "RepositoryConfig":
        if self.type == "s3" and not self.bucket:
            raise ValueError("repository type s3 needs 'bucket'")
        if self.type == "local" and not self.path:
            raise ValueError("repository type local needs 'path'")
        return self

    def describe(self) -> str:
        if self.type == "local":
            return f"local:{self.path}"
        where = f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")
        return f"{where} ({self.endpoint_url or 'AWS'})"


def make_store(config: RepositoryConfig) -> ObjectStore:
    """Build the object store (a boto3 client with short connect timeout and few retries, so an
    unreachable endpoint fails in seconds, not minutes)."""
    if config.type == "local":
        assert config.path is not None  # a local repository has one
        return LocalStore(config.path)
    import boto3
    from botocore.config import Config

    style = config.addressing_style or ("path" if config.endpoint_url else "auto")
    client = boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=config.region,
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key.get_secret_value() if config.secret_key else None,
        verify=config.verify_tls,
        config=Config(
            connect_timeout=config.connect_timeout,
            retries={"max_attempts": config.max_attempts, "mode": "standard"},
            s3={"addressing_style": style},
        ),
    )
    assert config.bucket is not None  # an s3 repository has one
    return S3Store(client, config.bucket, config.prefix, lock_mode=config.lock_mode)


def open_repository(config: RepositoryConfig, passphrase: str, *, create: bool = False) -> Repository:
    """Open the repository at ``config`` (``create=True`` initialises it when absent)."""
    store = make_store(config)
    repo = Repository.init(store, passphrase, exist_ok=True) if create else Repository.open(store, passphrase)
    repo.location = config  # where movers (restic inside the cluster) find the same repository
    return repo
