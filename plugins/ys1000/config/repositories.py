"""``config/repositories.yaml``: repository name → where backups are stored and where the
encryption passphrase lives.

S3 credentials and endpoint live in an Airflow connection of type ``aws`` (``endpoint_url`` in its
extra for MinIO/QingStor/the sandbox). The passphrase is never in the YAML: ``key`` names an
Airflow Variable or an Airflow connection (its password field) holding it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .types import ConnId, Redacted, StrictModel, invalid

if TYPE_CHECKING:
    from ys1000.repository import RepositoryConfig

_KEY_IN_YAML = (
    "must not hold the encryption key itself; put the passphrase in an Airflow Variable or "
    "connection and write 'key: {variable: NAME}' or 'key: {connection_id: CONN}'"
)

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class KeyRef(StrictModel):
    """Where the repository passphrase lives: exactly one of ``connection_id`` (the connection's
    password field) or ``variable`` (an Airflow Variable)."""

    connection_id: ConnId | None = None
    variable: ConnId | None = None

    _refused_keys: ClassVar[dict[str, str]] = {
        k: _KEY_IN_YAML for k in ("passphrase", "password", "secret", "value", "key")
    }

    @model_validator(mode="after")
    def _exactly_one(self) -> "KeyRef":
        if (self.connection_id is None) == (self.variable is None):
            raise invalid(
                "needs exactly one of 'connection_id' (an Airflow connection whose password is "
                "the passphrase) or 'variable' (an Airflow Variable holding it)",
                value=self.model_dump(exclude_none=True) or None,
            )
        return self

    def describe(self) -> str:
        return f"Variable {self.variable}" if self.variable else f"connection {self.connection_id}"


class ObjectLock(StrictModel):
    """S3 Object Lock on backup objects (the bucket must have Object Lock enabled)."""

    mode: Literal["COMPLIANCE", "GOVERNANCE"] = "GOVERNANCE"


class RepositorySpec(StrictModel):
    """One backup repository: an S3 bucket (+ prefix) or a local directory."""

    type: Literal["s3", "local"]
    connection_id: ConnId | None = Field(None, description="Airflow connection (conn type 'aws'); s3 only")
    bucket: str | None = Field(None, description="s3 only")
    prefix: str = ""
    region: str = "us-east-1"
    path: str | None = Field(None, description="directory; local only")
    key: KeyRef
    object_lock: ObjectLock | None = None

    _refused_keys: ClassVar[dict[str, str]] = {
        k: _KEY_IN_YAML for k in ("passphrase", "password", "encryption_key", "secret_key", "access_key")
    }

    @classmethod
    def _check_input(cls, data: dict) -> None:
        if "key" in data and not isinstance(data["key"], dict):
            raise invalid(_KEY_IN_YAML, field="key", value=Redacted())

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, bucket: str | None) -> str | None:
        if bucket is None:
            return bucket
        ok = bool(_BUCKET.match(bucket)) and ".." not in bucket and ".-" not in bucket and "-." not in bucket
        try:
            ipaddress.ip_address(bucket)
            ok = False
        except ValueError:
            pass
        if bucket.startswith("xn--") or bucket.endswith("-s3alias"):
            ok = False
        if not ok:
            raise invalid(
                "is not a valid S3 bucket name; expected 3–63 characters of lowercase letters, "
                "digits, '.' and '-', starting and ending with a letter or digit"
            )
        return bucket

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise invalid("is not a valid prefix; expected path segments like 'team/prod'")
        return prefix

    @model_validator(mode="after")
    def _by_type(self) -> "RepositorySpec":
        if self.type == "s3":
            for name in ("connection_id", "bucket"):
                if getattr(self, name) is None:
                    raise invalid("is required for a repository of type s3", field=name, value=None)
            if self.path is not None:
                raise invalid(
                    "is only for type local; an s3 repository uses bucket/prefix", field="path", value=self.path
                )
        else:
            if self.path is None:
                raise invalid("is required for a repository of type local", field="path", value=None)
            for name in ("connection_id", "bucket", "object_lock"):
                if getattr(self, name) is not None:
                    raise invalid(
                        "is only for type s3",
                        field=name,
                        value=getattr(self, name)
                        if name != "object_lock" or self.object_lock is None
                        else self.object_lock.mode,
                    )
        return self

    def describe(self) -> str:
        if self.type == "local":
            return f"local:{self.path}"
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def to_repository_config(
        self,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
        **extra: Any,
    ) -> "RepositoryConfig":
        """The engine's ``ys1000.repository.RepositoryConfig`` for this repository, with the
        connection's credentials/endpoint filled in by the caller (the operator resolves the
        Airflow connection). ``extra`` passes other RepositoryConfig fields (verify_tls, …)."""
        from ys1000.repository import RepositoryConfig

        fields: dict[str, Any] = {"type": self.type, "prefix": self.prefix}
        if self.type == "local":
            fields["path"] = self.path
        else:
            fields.update(
                bucket=self.bucket,
                region=region or self.region,
                endpoint_url=endpoint_url,
                access_key=access_key,
                secret_key=secret_key,
            )
            if self.object_lock is not None:
                fields["lock_mode"] = self.object_lock.mode
        fields.update(extra)
        return RepositoryConfig(**fields)
