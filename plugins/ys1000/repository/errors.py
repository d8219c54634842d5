"""Errors of the backup repository.

Every error says what failed in words an operator can act on: which object, which step,
which endpoint or bucket. None of them ever carries a secret (secret key, passphrase), because
these messages end up in task logs and reports.
"""

from __future__ import annotations

from datetime import datetime


class RepositoryError(Exception):
    """Base class of everything the repository raises on purpose."""


class StorageError(RepositoryError):
    """An object-store operation failed.

    ``kind`` is a stable machine-readable cause (``unreachable``, ``no_bucket``,
    ``unknown_access_key``, ``bad_secret_key``, ``access_denied``, ``no_credentials``,
    ``other``); ``reason`` is the human sentence.
    """

    def __init__(self, operation: str, reason: str, *, kind: str = "other", key: str | None = None):
        self.operation = operation
        self.reason = reason
        self.kind = kind
        self.key = key
        where = f" {key!r}" if key else ""
        super().__init__(f"{operation}{where} failed: {reason}")


class ConnectionTestError(StorageError):
    """The connection test failed at one named step (write/read/delete probe, list, open)."""

    def __init__(self, step: str, reason: str, *, kind: str = "other"):
        self.step = step
        StorageError.__init__(self, step, reason, kind=kind)
        Exception.__init__(self, f"connection test failed at step '{step}': {reason}")


class ObjectNotFound(StorageError):
    """The object does not exist in the store."""

    def __init__(self, key: str):
        super().__init__("read", "object does not exist", kind="not_found", key=key)


class ObjectLocked(RepositoryError):
    """An object is under S3 Object Lock retention and cannot be deleted before ``retain_until``."""

    def __init__(self, key: str, retain_until: datetime | None):
        self.key = key
        self.retain_until = retain_until
        when = retain_until.isoformat() if retain_until else "an unknown date"
        super().__init__(f"{key!r} is protected by Object Lock until {when}; not deleted")


class ChecksumError(RepositoryError):
    """Stored bytes do not match the sha256 (or size) recorded in the manifest."""

    def __init__(self, key: str, expected: str, actual: str, *, what: str = "sha256"):
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {key!r}: manifest says {what} {expected}, stored object has "
            f"{actual}; the object is corrupted or was modified"
        )


class DecryptionError(RepositoryError):
    """Authenticated decryption failed: wrong key, or the ciphertext was tampered with,
    truncated, extended or reordered."""


class IntegrityError(RepositoryError):
    """Decrypted content is inconsistent (archive and index disagree, JSON does not parse)."""


class WrongKeyError(DecryptionError):
    """The passphrase does not match the repository's key-check value."""


class RepositoryNotInitialized(RepositoryError):
    """No ``repo.json`` under the prefix: the repository was never initialised."""


class RepositoryExists(RepositoryError):
    """``init`` on a prefix that already holds a repository."""


class BackupNotFound(RepositoryError):
    """No object at all exists for the backup id."""

    def __init__(self, backup_id: str):
        self.backup_id = backup_id
        super().__init__(f"backup {backup_id!r} not found in the repository")


class IncompleteBackupError(RepositoryError):
    """The backup has objects but no manifest: it never finished and must not be restored."""

    def __init__(self, backup_id: str):
        self.backup_id = backup_id
        super().__init__(
            f"backup {backup_id!r} is incomplete (no manifest): it did not finish and cannot be "
            "used; it is removed by the incomplete-backup cleanup"
        )


class BackupExists(RepositoryError):
    """A completed backup with this id exists already; ids are never reused."""

    def __init__(self, backup_id: str):
        self.backup_id = backup_id
        super().__init__(f"backup {backup_id!r} already exists and is complete")
