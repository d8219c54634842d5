"""The backup repository: encrypted resource archives, index, manifest and catalog in S3 or a
local directory (format described in ``layout`` and DESIGN.md, "Repository format")."""

from .config import RepositoryConfig, make_store, open_repository
from .connection import ConnectionReport, check_connection
from .crypto import RepositoryKey, restic_password
from .errors import (
    BackupExists,
    BackupNotFound,
    ChecksumError,
    ConnectionTestError,
    DecryptionError,
    IncompleteBackupError,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    RepositoryError,
    RepositoryExists,
    RepositoryNotInitialized,
    StorageError,
    WrongKeyError,
)
from .manifest import CatalogEntry, IndexEntry, Manifest, ObjectRef
from .repository import (
    BackupWriter,
    CleanupReport,
    LockedBackup,
    Repository,
    RetentionReport,
    VerifyResult,
    encode_document,
    parse_document,
)
from .storage import LocalStore, ObjectInfo, ObjectStore, S3Store

__all__ = [
    "BackupExists",
    "BackupNotFound",
    "BackupWriter",
    "CatalogEntry",
    "ChecksumError",
    "CleanupReport",
    "ConnectionReport",
    "ConnectionTestError",
    "DecryptionError",
    "IncompleteBackupError",
    "IndexEntry",
    "IntegrityError",
    "LocalStore",
    "LockedBackup",
    "Manifest",
    "ObjectInfo",
    "ObjectLocked",
    "ObjectNotFound",
    "ObjectRef",
    "ObjectStore",
    "Repository",
    "RepositoryConfig",
    "RepositoryError",
    "RepositoryExists",
    "RepositoryKey",
    "RepositoryNotInitialized",
    "RetentionReport",
    "S3Store",
    "StorageError",
    "VerifyResult",
    "encode_document",
    "parse_document",
    "WrongKeyError",
    "check_connection",
    "make_store",
    "open_repository",
    "restic_password",
]
