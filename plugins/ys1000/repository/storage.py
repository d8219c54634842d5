"""Object stores the repository writes to: S3 (any endpoint) and a local directory.

The repository only needs a handful of operations (put, get, streaming open, list, delete,
exists) plus one question — does the bucket enforce S3 Object Lock — so both stores implement
the small ``ObjectStore`` protocol and the rest of the code never sees boto3. All keys are
relative to the store's prefix and use ``/`` separators.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
import builtins
from typing import BinaryIO, Final, Iterator, Protocol, cast, runtime_checkable

from .errors import ObjectLocked, ObjectNotFound, StorageError

#: S3 refuses Object Lock writes without a checksum header; boto3 adds one by default, and the
#: mode is COMPLIANCE so not even the account root can shorten the retention (immutability, B7).
DEFAULT_LOCK_MODE: Final = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One listed object: key relative to the store prefix, size in bytes, last write time."""

    key: str
    size: int
    last_modified: datetime


@runtime_checkable
class ObjectStore(Protocol):
    """What the repository needs from a storage backend."""

    def put(self, key: str, data: bytes | BinaryIO, *, retain_until: datetime | None = None) -> None:
        """Store bytes or a file object (read to its end) at ``key``, replacing any old object.

        ``retain_until`` applies S3 Object Lock retention when the bucket supports it.
        """

    def get(self, key: str) -> bytes:
        """Whole object; raises ``ObjectNotFound``."""

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object (caller closes it); raises ``ObjectNotFound``."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object (a ranged GET); raises ``ObjectNotFound``."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order."""

    def delete(self, key: str) -> None:
        """Remove the object (every version in a versioned bucket).

        Raises ``ObjectLocked`` without attempting anything when a version is retained.
        Deleting a missing key is not an error.
        """

    def exists(self, key: str) -> bool: ...

    def object_lock_enabled(self) -> bool: ...

    def describe(self) -> str:
        """Where the store points, for messages (never credentials)."""


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


# --------------------------------------------------------------------------------------- S3


def _mask(access_key: str | None) -> str:
    if not access_key:
        return "(none)"
    return access_key[:4] + "…" if len(access_key) > 4 else "…"


class S3Store:
    """An S3 bucket (optionally under a prefix) through a boto3 client.

    Streams go through ``upload_fileobj`` so large archives are uploaded in parts with bounded
    memory; listings are paginated. Object Lock: the bucket's configuration is read once; on a
    locked bucket writes carry a COMPLIANCE retention and deletes remove every version, after
    checking each version's retention so a retained one is reported instead of attempted.
    """

    def __init__(self, client, bucket: str, prefix: str = "", *, lock_mode: str = DEFAULT_LOCK_MODE):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.lock_mode = lock_mode
        self._lock_enabled: bool | None = None

    # -- naming and errors
    def _full(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    @property
    def endpoint(self) -> str:
        return getattr(self.client.meta, "endpoint_url", None) or "(default AWS endpoint)"

    def _access_key(self) -> str | None:
        signer = getattr(self.client, "_request_signer", None)
        creds = getattr(signer, "_credentials", None)
        return getattr(creds, "access_key", None)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.endpoint}"

    def classify(self, exc: BaseException) -> tuple[str, str]:
        """Map a boto3/botocore exception to ``(kind, human reason)``."""
        from botocore import exceptions as bx

        where = f"S3 endpoint {self.endpoint} (bucket {self.bucket!r})"
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
            return "unreachable", f"{where} is unreachable (no route or connection refused)"
        if isinstance(exc, (bx.HTTPClientError, bx.ConnectionError)):  # closed, reset, timed out mid-request
            return "unreachable", f"{where} is unreachable: the connection failed ({type(exc).__name__})"
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return "no_credentials", "no S3 credentials configured (access key and secret key)"
        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",):
                return "no_bucket", f"bucket {self.bucket!r} does not exist at {self.endpoint}"
            if code in ("InvalidAccessKeyId",):
                return "unknown_access_key", (f"access key {_mask(self._access_key())} is not known to {self.endpoint}")
            if code in ("SignatureDoesNotMatch",):
                return "bad_secret_key", (
                    f"secret key is wrong for access key {_mask(self._access_key())} (SignatureDoesNotMatch)"
                )
            if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
                return "access_denied", f"access denied to bucket {self.bucket!r} ({code or status})"
            if code in ("NoSuchKey", "404") or status == 404:
                return "not_found", "object does not exist"
            return "other", f"{code or status}: {err.get('Message', exc)}"
        return "other", f"{type(exc).__name__}: {exc}"

    def _error(self, operation: str, exc: BaseException, key: str | None = None) -> StorageError:
        kind, reason = self.classify(exc)
        if kind == "not_found" and key is not None:
            return ObjectNotFound(key)
        return StorageError(operation, reason, kind=kind, key=key)

    # -- protocol
    def object_lock_enabled(self) -> bool:
        if self._lock_enabled is None:
            from botocore.exceptions import ClientError

            try:
                cfg = self.client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = cfg.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("ObjectLockConfigurationNotFoundError", "NotImplemented", "MethodNotAllowed"):
                    enabled = False
                else:
                    raise self._error("read Object Lock configuration", exc) from exc
            except Exception as exc:  # noqa: BLE001 - classify every transport error
                raise self._error("read Object Lock configuration", exc) from exc
            self._lock_enabled = enabled
        return self._lock_enabled

    def put(self, key: str, data: bytes | BinaryIO, *, retain_until: datetime | None = None) -> None:
        full = self._full(key)
        extra: dict = {}
        lock = retain_until is not None and self.object_lock_enabled()
        if lock:
            extra = {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": retain_until}
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                self.client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data), **extra)
            else:
                self.client.upload_fileobj(data, self.bucket, full, ExtraArgs=extra or None)
            if lock:
                assert retain_until is not None  # lock implies it
                self._ensure_retention(full, retain_until)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error("write", exc, key) from exc

    def _ensure_retention(self, full: str, retain_until: datetime) -> None:
        """Some S3 implementations drop lock headers on multipart uploads: set it explicitly."""
        head = self.client.head_object(Bucket=self.bucket, Key=full)
        have = head.get("ObjectLockRetainUntilDate")
        if have is None or have < retain_until.replace(microsecond=0):
            kw = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=full,
                Retention={"Mode": self.lock_mode, "RetainUntilDate": retain_until},
                **kw,
            )

    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error("read", exc, key) from exc
        return cast(BinaryIO, _BodyStream(resp["Body"]))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key), Range=f"bytes={start}-{end - 1}")
            with _BodyStream(resp["Body"]) as body:
                return body.read()
        except Exception as exc:  # noqa: BLE001
            raise self._error("read", exc, key) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", ()):
                    lm = obj["LastModified"]
                    yield ObjectInfo(self._rel(obj["Key"]), obj["Size"], lm.astimezone(timezone.utc))
        except Exception as exc:  # noqa: BLE001
            raise self._error("list", exc, prefix or None) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except Exception as exc:  # noqa: BLE001
            err = self._error("read", exc, key)
            if isinstance(err, ObjectNotFound):
                return False
            raise err from exc

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            if not self.object_lock_enabled():
                self.client.delete_object(Bucket=self.bucket, Key=full)
                return
            versions = self._versions(full)
            now = datetime.now(timezone.utc)
            for vid, is_marker in versions:
                if is_marker:
                    continue
                head = self.client.head_object(Bucket=self.bucket, Key=full, VersionId=vid)
                until = head.get("ObjectLockRetainUntilDate")
                if until is not None and until > now or head.get("ObjectLockLegalHoldStatus") == "ON":
                    raise ObjectLocked(key, until)
            for vid, _ in versions:
                self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=vid)
        except (ObjectLocked, StorageError):
            raise
        except Exception as exc:  # noqa: BLE001
            kind, _ = self.classify(exc)
            worm = "WORM protected" in str(exc)  # MinIO's answer (400 InvalidRequest); AWS: 403 AccessDenied
            if (kind == "access_denied" or worm) and self.object_lock_enabled():
                # the store refused: most likely a retention we could not see (e.g. a default rule)
                raise ObjectLocked(key, None) from exc
            raise self._error("delete", exc, key) from exc

    def _versions(self, full: str) -> builtins.list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full)
        for page in pages:
            for v in page.get("Versions", ()):
                if v["Key"] == full:
                    out.append((v["VersionId"], False))
            for m in page.get("DeleteMarkers", ()):
                if m["Key"] == full:
                    out.append((m["VersionId"], True))
        return out


class _BodyStream(io.RawIOBase):
    """botocore's StreamingBody as a proper binary file object (readinto, context manager)."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._body.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        return self._body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


# ------------------------------------------------------------------------------------ local


class LocalStore:
    """A directory as an object store (the embedded default and tests).

    Writes go to a temporary file in the destination directory, are fsynced, then renamed over
    the key, so a reader never sees a half-written object and a crash leaves at most a stray
    ``.tmp-*`` file (ignored by ``list``). Object Lock does not exist here: ``retain_until`` is
    ignored.
    """

    _TMP = ".tmp-"

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def object_lock_enabled(self) -> bool:
        return False

    def put(self, key: str, data: bytes | BinaryIO, *, retain_until: datetime | None = None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self._TMP, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    if isinstance(data, (bytes, bytearray, memoryview)):
                        out.write(data)
                    else:
                        while chunk := data.read(1 << 20):
                            out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError("write", f"{exc.strerror or exc} ({self.root})", key=key) from exc

    def get(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError("read", f"{exc.strerror or exc}", key=key) from exc

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self.open(key) as f:
            f.seek(start)
            return f.read(end - start)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise StorageError("list", f"directory {self.root} does not exist", kind="no_bucket")
        found: list[ObjectInfo] = []
        start = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        for dirpath, _dirs, files in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(self._TMP):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    st = os.stat(os.path.join(dirpath, name))
                    found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        found.sort(key=lambda o: o.key)
        yield from found

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError("delete", f"{exc.strerror or exc}", key=key) from exc
        parent = path.parent
        while parent != self.root:  # prune empty directories so listings stay small
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
