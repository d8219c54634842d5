"""Engine errors → Airflow semantics.

- Permanent problems (bad configuration, a selection or limit the cluster refuses, a corrupted
  archive, a wrong repository key, a restore conflict, a missing backup or connection) fail the
  task with ``AirflowFailException``: retrying cannot help, and the message is kept as is.
- Transient problems (the API server throttling or failing with 5xx, an unreachable endpoint,
  timeouts, S3 server errors) are re-raised unchanged, so Airflow retries with backoff.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from airflow.sdk.exceptions import AirflowException, AirflowFailException

#: ``StorageError.kind`` values that a retry cannot fix.
PERMANENT_STORAGE_KINDS = frozenset(
    {"no_bucket", "unknown_access_key", "bad_secret_key", "access_denied", "no_credentials", "not_found"}
)


class Cancelled(AirflowException):
    """The run was cancelled (``on_kill``); what it had written was removed."""


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is a problem a retry cannot fix."""
    from ys1000.backup import LimitExceeded, SelectionError
    from ys1000.config import ConfigError
    from ys1000.kube import KubeError
    from ys1000.repository import (
        BackupExists,
        BackupNotFound,
        ChecksumError,
        DecryptionError,
        IncompleteBackupError,
        IntegrityError,
        RepositoryError,
        RepositoryNotInitialized,
        StorageError,
    )
    from ys1000.restore import ConflictError

    from kubernetes.config import ConfigException

    if isinstance(exc, (AirflowFailException, ConfigException)):  # ConfigException: bad kubeconfig
        return True
    if isinstance(exc, KubeError):
        return not exc.transient
    if isinstance(exc, StorageError):
        return exc.kind in PERMANENT_STORAGE_KINDS
    if isinstance(
        exc,
        (
            ConfigError,
            SelectionError,
            LimitExceeded,
            ChecksumError,
            DecryptionError,
            IntegrityError,
            ConflictError,
            BackupNotFound,
            IncompleteBackupError,
            RepositoryNotInitialized,
            BackupExists,
        ),
    ):
        return True
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError)):
        return False
    if isinstance(exc, RepositoryError):
        return True
    if isinstance(exc, (ValueError, TypeError, KeyError, LookupError)):
        return True  # programming or input errors: a retry repeats them
    return False


@contextlib.contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Run engine code; permanent errors become ``AirflowFailException("<what>: <message>")``."""
    try:
        yield
    except AirflowException:
        raise
    except Exception as exc:
        if is_permanent(exc):
            raise AirflowFailException(f"{what}: {exc}") from exc
        raise
