"""The backup repository: write backups, list, read, verify, delete and expire them.

Write path (``BackupWriter``): each resource document is serialised, appended as a tar member to
a gzip stream that feeds the streaming encryptor, whose output is hashed on its way to a spooled
temporary file; the index line goes to a second gzip stream. Nothing per object stays in memory,
so a 300k-object backup costs the same RAM as a 30-object one. ``commit`` uploads archive, index,
index map, then the manifest (the "complete" marker), then the catalog entry. The writer reads
the encrypted archive back as it goes (``_StreamVerifier``, a thread: every segment
authenticated, every member against the entry added, every document a JSON object), so a writer
bug fails the commit; the manifest records what was read back, and a pending backup's ``verify``
proves the stored archive and index against that record instead of decrypting it again.

The archive is a concatenation of gzip members, each ending where a run of objects of one type
in one namespace ends (capture lists type by type, each type's objects in namespace order) once
it holds 256 KiB of tar; every index line names the plaintext offset of its member, and the
archive is sealed in 64 KiB segments. So the objects of a few namespaces can be read with ranged
GETs of just their members' segments: a restore of one namespace out of a 1,000-namespace backup
fetches, per type, at most one member and two segments — not the archive. (A member per run
would bound that further but loses gzip's context: 2.5 times the size on a 1,000-namespace
backup.) Decompressed whole, it is still one tar.gz stream. The index's gzip members end with
the archive's; ``index-map.json`` (checksummed in the manifest) lists, per member, the archive
offset, the index bytes with their sha256, and the namespaces in it — so a read that names its
namespaces fetches only their index members too, and its time no longer grows with the backup.
``verify`` proves the map against the whole index.

Read path: a whole archive is downloaded once into a spooled temporary file while its sha256 is
computed and compared with the manifest *before* anything is decrypted or yielded, so a restore
from a corrupted archive writes nothing. Decryption then authenticates every segment. A partial
read (``iter_documents(select=…)``) relies on the segments' authentication instead: each is bound
to its number, the backup and the repository, so a moved or altered segment fails.
"""

from __future__ import annotations

import gzip
import io
import json
import queue
import tarfile
import tempfile
import threading
import uuid
import zlib
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from typing import Any, BinaryIO, Callable, Collection, Generator, Iterable, Iterator, cast

import msgspec

from . import layout
from .connection import ConnectionReport, check_connection
from .crypto import (
    HEADER_SIZE,
    TAG_SIZE,
    EncryptingWriter,
    HashingWriter,
    RepositoryKey,
    decrypt_segments,
    new_kdf_params,
    open_decrypting,
    segment_count,
    segment_span,
)
from .errors import (
    BackupExists,
    BackupNotFound,
    ChecksumError,
    DecryptionError,
    IncompleteBackupError,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    RepositoryError,
    RepositoryExists,
    RepositoryNotInitialized,
    StorageError,
)
from .manifest import FORMAT_VERSION, CatalogEntry, IndexEntry, Manifest, ObjectRef
from .storage import ObjectStore

REPO_FORMAT = "ys1000-repository"
ENCRYPTION_SCHEME = "ys1000-stream-aes256gcm-v1"
SPOOL_MEMORY = 8 << 20  # bytes kept in RAM before a spool rolls over to a temp file
ARCHIVE_SEGMENT_SIZE = 64 << 10  # small: a ranged read of one run pays at most two segments extra
MEMBER_SIZE = 256 << 10  # tar bytes after which the next run starts a new gzip member
MAX_MEMBER_READ = 4 << 20  # a partial read holds a member in memory: larger ones are streamed whole
_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)
_WRITE_SIZE = 64 << 10
# msgspec (Airflow's task SDK depends on it) writes the same compact UTF-8 JSON as
# json.dumps(separators=(",", ":"), ensure_ascii=False), keys in their order, five times faster:
# encoding was a third of adding an object to a backup. Its one difference, NaN as null, cannot
# occur in what an API server sends.
_ENCODE = msgspec.json.Encoder().encode


def encode_document(obj: dict) -> bytes:
    """An object as the archive stores it: compact UTF-8 JSON, its keys in their order."""
    return _ENCODE(obj)


# an index chunk straight into IndexEntry objects (twice as fast as json + from_json); what it
# refuses (an older or damaged index) goes through the tolerant path, which names the line
_DECODE_ENTRIES = msgspec.json.Decoder(list[IndexEntry]).decode
_DECODE = msgspec.json.Decoder().decode


class _AnyObject(msgspec.Struct):
    """Any JSON object: decoding into it checks the syntax and skips every member."""


_CHECK_OBJECT = msgspec.json.Decoder(_AnyObject).decode
_RECORD = tarfile.RECORDSIZE


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _spool() -> BinaryIO:
    return cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, prefix="ys1000-"))


# ------------------------------------------------------------------------------------ results


@dataclass
class VerifyResult:
    """A backup that passed every check: checksums, decryption, JSON, index ↔ archive."""

    backup_id: str
    objects: int
    archive_size: int
    uncompressed_size: int
    checks: list[str] = field(default_factory=list)
    ok: bool = True


@dataclass(frozen=True)
class LockedBackup:
    """A backup due for deletion that waits for its Object Lock retention to expire."""

    backup_id: str
    retain_until: datetime | None


@dataclass
class RetentionReport:
    deleted: list[str] = field(default_factory=list)
    waiting: list[LockedBackup] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)  # backup id → why it is kept though old


@dataclass
class CleanupReport:
    deleted: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    waiting: list[LockedBackup] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- writer


class _StreamVerifier:
    """Reads the archive back while it is written, in a thread: every segment decrypted and
    authenticated, the gzip stream and its CRCs, every tar member against the entry the writer
    added (path and size, in order) and every document a JSON object — what ``verify`` does with
    the stored archive, done while the capture waits on the API server. The verify step then
    only proves the stored archive is these bytes (sha256) and the index these entries
    (``members_sha256``), instead of reading the archive a second time after the capture."""

    def __init__(self, key: bytes, aad: bytes, name: str):
        self._key, self._aad, self._name = key, aad, name
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._expected: deque[tuple[str, int]] = deque()
        self._members = sha256()  # of the verified members' "path\0size\n", in order
        self.count = 0
        self.error: BaseException | None = None
        self._stopped = False
        self._buf, self._pos, self._ended = b"", 0, False  # the reading side (read)
        # started at the first member: a capture forks its listing before that (the stream's
        # header waits in the queue), with no thread of this one's in the middle of anything
        self._thread = threading.Thread(target=self._run, name="archive-verify", daemon=True)

    def _start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def expect(self, path: str, size: int) -> None:
        """The writer's next member (called before its bytes are written, so never late)."""
        self._start()
        self._expected.append((path, size))

    def write(self, b) -> int:  # the encrypted stream, as it goes to the spool
        self._put(bytes(b))
        return len(b)

    def _put(self, item: bytes | None) -> None:
        if self._thread.ident is None:
            if not self._chunks.full():
                self._chunks.put_nowait(item)
                return
            self._thread.start()
        while self._thread.is_alive():  # a verifier that stopped (an error) takes nothing more
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self) -> dict[str, Any]:
        """After the last byte: wait for the verifier; its record for the manifest, or its error."""
        self._start()  # when no member was added: it reads the empty archive
        self._put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return {"documents": self.count, "members_sha256": self._members.hexdigest()}

    def stop(self) -> None:
        """The backup is abandoned: end the verifier without a verdict."""
        self._stopped = True
        if self._thread.ident is not None:
            self._put(None)
            self._thread.join()

    def read(self, n: int = -1) -> bytes:
        """The stream as written so far, blocking for more (the decryptor's input, in ``_run``)."""
        if self._pos >= len(self._buf):
            item = None if self._ended else self._chunks.get()
            if item is None or self._stopped:
                self._ended = True  # every later read is the end too
                return b""
            self._buf, self._pos = item, 0
        out = self._buf[self._pos : self._pos + n] if n >= 0 else self._buf[self._pos :]
        self._pos += len(out)
        return out

    def _run(self) -> None:
        try:
            for path, data in _archive_files(cast(BinaryIO, self), self._key, self._aad, self._name):
                if self._stopped:
                    return
                want = self._expected.popleft() if self._expected else None
                if want != (path, len(data)):
                    raise IntegrityError(
                        f"{self._name!r}: the archive holds {path!r} ({len(data)} bytes) where the writer "
                        f"added {want!r}"
                    )
                _check_document(path, data)
                self._members.update(_member_line(path, len(data)))
                self.count += 1
            if self._expected and not self._stopped:
                raise IntegrityError(f"{self._name!r}: {len(self._expected)} added members are not in the archive")
        except BaseException as exc:
            self.error = exc


def _archive_files(raw: BinaryIO, key: bytes, aad: bytes, name: str) -> Generator[tuple[str, bytes], None, None]:
    """An encrypted archive's ``(path, document bytes)``: decrypted, gunzipped, untarred, and
    drained to the end (authenticates the final segment, checks the last gzip CRC)."""
    try:
        plain = open_decrypting(raw, key, aad, name=name)
        with gzip.GzipFile(fileobj=plain, mode="rb") as gz:
            yield from _tar_files(gz.read, name)
            while gz.read(1 << 16):
                pass
    except (DecryptionError, IntegrityError):
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise IntegrityError(f"{name!r} is not a valid archive after decryption: {exc}") from None


def _check_counts(m: Manifest, count: int, counts: Counter[str], read: str) -> None:
    if count != m.total or dict(counts) != {k: v for k, v in m.counts.items() if v}:
        raise IntegrityError(
            f"backup {m.backup_id!r}: manifest counts ({m.total} objects, {m.counts}) differ from the "
            f"{read} ({count} objects, {dict(counts)})"
        )


def _member_line(path: str, size: int) -> bytes:
    return f"{path}\0{size}\n".encode("utf-8", "surrogateescape")


class _Tee:
    def __init__(self, *outs: Any):
        self._outs = outs

    def write(self, b) -> int:
        for out in self._outs:
            out.write(b)
        return len(b)


class BackupWriter:
    """Streams resource documents of one backup into the repository (not thread-safe).

    Use as a context manager: an exception inside the block aborts (deletes what was uploaded).
    """

    def __init__(
        self,
        repo: "Repository",
        backup_id: str,
        plan: str,
        *,
        created: datetime,
        retain_until: datetime | None,
        compresslevel: int = 6,
        verify: bool = True,
    ):
        self.repo = repo
        self.backup_id = backup_id
        self.plan = plan
        self.created = created
        self.retain_until = retain_until
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.restorable = 0
        self.uncompressed_size = 0
        self._uploaded: list[str] = []
        self._state = "open"
        self._mtime = int(created.timestamp())
        # archive: tar → gzip (members ending at run boundaries, see the module docstring) →
        # encrypt → sha256 → spool
        self._archive_spool = _spool()
        # read back as it is written (_StreamVerifier), unless the caller verifies otherwise
        self._verifier = (
            _StreamVerifier(repo.key.archive_key, repo.archive_aad(backup_id), layout.archive_key(backup_id))
            if verify
            else None
        )
        self._archive_hash = HashingWriter(
            cast(BinaryIO, _Tee(self._archive_spool, self._verifier) if self._verifier else self._archive_spool)
        )
        self._enc = EncryptingWriter(
            cast(BinaryIO, self._archive_hash), repo.key.archive_key, repo.archive_aad(backup_id), ARCHIVE_SEGMENT_SIZE
        )
        self._level = compresslevel
        self._run: tuple[str, str, str | None] | None = None
        self._member = 0  # plaintext offset where the current gzip member starts
        self._member_tar = 0  # tar bytes in the current member
        self._tar_gz = gzip.GzipFile(fileobj=self._enc, mode="wb", compresslevel=compresslevel, mtime=0)
        self._tar_bytes = 0
        # index: jsonl → gzip → sha256 → spool
        self._index_spool = _spool()
        self._index_hash = HashingWriter(self._index_spool)
        # the index's gzip members end with the archive's: each hashed on its own for the map
        self._index_part = HashingWriter(cast(BinaryIO, self._index_hash))
        self._index_gz = gzip.GzipFile(fileobj=self._index_part, mode="wb", compresslevel=6, mtime=0)
        self._index_map: list[list[Any]] = []  # [archive member offset, index offset, size, sha256, namespaces]
        self._member_namespaces: set[str] = set()  # "" for cluster-scoped objects
        # both written to their gzip streams 64 KiB at a time: GzipFile.write per object cost
        # as much again as compressing
        self._tar_buf: list[bytes] = []
        self._tar_buf_size = 0
        self._index_buf: list[bytes] = []
        self._index_buf_size = 0

    def __enter__(self) -> "BackupWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._state != "committed":
            self.abort()

    def add(
        self,
        obj: dict,
        *,
        group: str,
        version: str,
        resource: str,
        kind: str,
        restore: bool = True,
        reason: str | None = None,
    ) -> IndexEntry:
        """Append one object (its ``metadata.name``/``namespace`` decide its archive path)."""
        meta = obj.get("metadata") or {}
        return self.add_document(
            encode_document(obj),
            namespace=meta.get("namespace") or None,
            name=meta.get("name") or "",
            group=group,
            version=version,
            resource=resource,
            kind=kind,
            restore=restore,
            reason=reason,
        )

    def add_document(
        self,
        data: bytes,
        *,
        namespace: str | None,
        name: str,
        group: str,
        version: str,
        resource: str,
        kind: str,
        restore: bool = True,
        reason: str | None = None,
    ) -> IndexEntry:
        """Append one object already encoded (``encode_document``): a capture encodes where it
        lists, in another process."""
        if self._state != "open":
            raise RepositoryError(f"backup {self.backup_id!r} is {self._state}; cannot add objects")
        if not name:
            raise ValueError(f"object of kind {kind} has no metadata.name")
        if (run := (group, resource, namespace)) != self._run:
            if self._member_tar >= MEMBER_SIZE:  # end the member (the next one starts at this offset)
                self._flush_tar()
                self._tar_gz.close()
                self._end_index_member(reopen=True)
                self._member, self._member_tar = self._enc.plain_size, 0
                self._tar_gz = gzip.GzipFile(fileobj=self._enc, mode="wb", compresslevel=self._level, mtime=0)
            self._run = run
        self._member_namespaces.add(namespace or "")
        path = layout.member_path(layout.group_resource(resource, group), version, namespace, name)
        if self._verifier is not None:
            self._verifier.expect(path, len(data))
        header = _ustar_header(path, len(data), self._mtime)
        if header is None:  # a long or non-ASCII path: tarfile writes it a PAX header
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), self._mtime, 0o600
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        pad = -len(data) % _BLOCK
        self._tar_buf += (header, data, _ZERO_BLOCK[:pad])
        self._tar_bytes += len(header) + len(data) + pad
        self._member_tar += len(header) + len(data) + pad
        self._tar_buf_size += len(header) + len(data) + pad
        if self._tar_buf_size >= _WRITE_SIZE:
            self._flush_tar()
        entry = IndexEntry(
            group=group or "",
            version=version,
            kind=kind,
            resource=resource,
            namespace=namespace,
            name=name,
            size=len(data),
            path=path,
            restore=restore,
            reason=None if restore else reason,
            member=self._member,
        )
        line = _ENCODE(entry.to_json()) + b"\n"
        self._index_buf.append(line)
        self._index_buf_size += len(line)
        if self._index_buf_size >= _WRITE_SIZE:
            self._flush_index()
        self.counts[kind] += 1
        self.total += 1
        self.restorable += bool(restore)
        self.uncompressed_size += len(data)
        return entry

    def _flush_tar(self) -> None:
        self._tar_gz.write(b"".join(self._tar_buf))
        self._tar_buf, self._tar_buf_size = [], 0

    def _flush_index(self) -> None:
        self._index_gz.write(b"".join(self._index_buf))
        self._index_buf, self._index_buf_size = [], 0

    def _finish_streams(self) -> None:
        end = b"\0" * (2 * _BLOCK)
        total = self._tar_bytes + len(end)
        self._flush_tar()
        self._tar_gz.write(end + b"\0" * (-total % _RECORD))
        self._tar_gz.close()
        self._enc.finish()
        self._end_index_member(reopen=False)

    def _end_index_member(self, *, reopen: bool) -> None:
        """Close the index's gzip member (it holds the entries of the archive member just ended)
        and note where it lies, its sha256 and its namespaces in the index map."""
        self._flush_index()
        self._index_gz.close()
        part = self._index_part
        self._index_map.append(
            [
                self._member,
                self._index_hash.size - part.size,
                part.size,
                part.hexdigest(),
                sorted(self._member_namespaces),
            ]
        )
        self._member_namespaces = set()
        if reopen:
            self._index_part = HashingWriter(cast(BinaryIO, self._index_hash))
            self._index_gz = gzip.GzipFile(fileobj=self._index_part, mode="wb", compresslevel=6, mtime=0)

    def _put(self, key: str, data: bytes | BinaryIO) -> None:
        self._uploaded.append(key)  # before the call: a failed multipart may leave parts
        self.repo.store.put(key, data, retain_until=self.retain_until)

    def commit(
        self,
        *,
        cluster_name: str | None = None,
        kubernetes_version: str | None = None,
        namespaces: list[str] | None = None,
        scope: str = "full",
        selection: dict[str, Any] | None = None,
        volumes: list[dict[str, Any]] | None = None,
        status: str = "Completed",
        warnings: list[str] | None = None,
        completed: datetime | None = None,
        final: bool = True,
        **extra: Any,
    ) -> Manifest:
        """Upload archive, index, manifest (last: marks the backup complete) and catalog entry.

        With ``final=False`` the manifest goes to ``pending.json`` instead (no catalog entry): the
        backup stays incomplete until ``Repository.finalize_backup`` — a pipeline copies volume
        data in between, and a run killed before that leaves nothing that looks usable.
        """
        if self._state != "open":
            raise RepositoryError(f"backup {self.backup_id!r} is {self._state}; cannot commit")
        self._state = "committing"
        try:
            self._finish_streams()
            bid = self.backup_id
            archive = ObjectRef(
                key=layout.archive_key(bid), sha256=self._archive_hash.hexdigest(), size=self._archive_hash.size
            )
            if self._verifier is not None:  # raises what the read-back found
                extra["stream_verified"] = {**self._verifier.finish(), "archive_sha256": archive.sha256}
            index = ObjectRef(
                key=layout.index_key(bid), sha256=self._index_hash.hexdigest(), size=self._index_hash.size
            )
            index_map = json.dumps({"members": self._index_map}, separators=(",", ":")).encode()
            map_ref = ObjectRef(
                key=layout.index_map_key(bid), sha256=sha256(index_map).hexdigest(), size=len(index_map)
            )
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                backup_id=bid,
                plan=self.plan,
                created=self.created,
                completed=_aware(completed) if completed else _utcnow(),
                cluster_name=cluster_name,
                kubernetes_version=kubernetes_version,
                namespaces=list(namespaces or []),
                scope=scope,
                selection=dict(selection or {}),
                counts=dict(sorted(self.counts.items())),
                total=self.total,
                restorable=self.restorable,
                uncompressed_size=self.uncompressed_size,
                archive=archive,
                index=index,
                index_map=map_ref,
                encryption={"scheme": ENCRYPTION_SCHEME, "segment_size": ARCHIVE_SEGMENT_SIZE},
                volumes=list(volumes or []),
                retain_until=self.retain_until,
                status=status,
                warnings=list(warnings or []),
                **extra,
            )
            self._archive_spool.seek(0)
            self._put(archive.key, self._archive_spool)
            self._index_spool.seek(0)
            self._put(index.key, self._index_spool)
            self._put(map_ref.key, index_map)
            if not final:
                # unlocked: it is replaced by the manifest at finalize time
                self._uploaded.append(layout.pending_key(bid))
                self.repo.store.put(layout.pending_key(bid), manifest.model_dump_json(indent=2).encode())
            else:
                self._put(layout.manifest_key(bid), manifest.model_dump_json(indent=2).encode())
                entry = CatalogEntry.from_manifest(manifest)
                self._put(layout.catalog_key(self.plan, bid), entry.model_dump_json().encode())
        except BaseException:
            self._state = "failed"
            raise
        finally:
            self._close_spools()
            if self._verifier is not None:
                self._verifier.stop()
        self._state = "committed"
        return manifest

    def _close_spools(self) -> None:
        for f in (self._archive_spool, self._index_spool):
            f.close()

    def abort(self) -> list[str]:
        """Delete what was uploaded; returns keys left behind (Object Lock keeps them)."""
        if self._state == "committed":
            raise RepositoryError(f"backup {self.backup_id!r} is committed; use delete_backup")
        self._state = "aborted"
        self._close_spools()
        if self._verifier is not None:
            self._verifier.stop()
        left: list[str] = []
        # catalog and manifest first, like delete_backup
        for key in sorted(self._uploaded, key=_delete_order):
            try:
                self.repo.store.delete(key)
            except (ObjectLocked, StorageError):
                left.append(key)
        return left


# the header fields that never change: mode 0600, uid and gid 0 (100..124); type "0", empty
# linkname, "ustar\000" and the empty rest (156..512)
_HEADER_MODE = b"0000600\x000000000\x000000000\x00"
_HEADER_TAIL = b"0" + bytes(100) + b"ustar\x0000" + bytes(247)


def _byte_sum(data: bytes) -> int:
    """The sum of up to 512 bytes (a tar checksum): adler32's low half is 1 + the byte sum mod
    65,521, exact for 256 bytes (at most 65,280) — C speed, where ``sum`` was a fifth of a verify."""
    return (zlib.adler32(data[:256]) & 0xFFFF) + (zlib.adler32(data[256:512]) & 0xFFFF) - 2


_HEADER_FIXED_SUM = _byte_sum(_HEADER_MODE) + _byte_sum(_HEADER_TAIL) + 8 * ord(" ")  # checksum field as spaces


def _ustar_header(path: str, size: int, mtime: int) -> bytes | None:
    """The 512-byte header ``tarfile`` writes (``PAX_FORMAT``) for a regular file of mode 0600,
    owner 0:0, when the path is ASCII and fits the ustar name field (None otherwise) — built
    directly: ``TarInfo.tobuf`` was 40 % of adding an object to a backup."""
    if not path.isascii():
        return None
    name = path.encode("ascii")
    if not name or len(name) > 100 or size >= 8**11 or not 0 <= mtime < 8**11:
        return None
    numbers = b"%011o\x00%011o\x00" % (size, mtime)
    checksum = _HEADER_FIXED_SUM + _byte_sum(name) + _byte_sum(numbers)
    return b"".join((name, bytes(100 - len(name)), _HEADER_MODE, numbers, b"%06o\x00 " % checksum, _HEADER_TAIL))


def _delete_order(key: str) -> int:
    if key.startswith(layout.CATALOG):
        return 0
    if key.endswith(("/" + layout.MANIFEST_NAME, "/" + layout.PENDING_NAME)):
        return 1
    return 2


# --------------------------------------------------------------------------------- repository


class Repository:
    """An opened repository: a store plus the key material from ``repo.json`` and a passphrase."""

    def __init__(self, store: ObjectStore, key: RepositoryKey, config: dict[str, Any]):
        self.store = store
        self.key = key
        self.config = config
        self.id: str = config["id"]
        self.location: Any = None  # the RepositoryConfig it was opened from (open_repository sets it)

    def __repr__(self) -> str:
        return f"Repository({self.store.describe()}, id={self.id})"

    # -- lifecycle
    @classmethod
    def init(cls, store: ObjectStore, passphrase: str, *, exist_ok: bool = False) -> "Repository":
        """Create ``repo.json`` (fresh salt and key-check); ``exist_ok`` opens an existing one."""
        if store.exists(layout.REPO_CONFIG):
            if exist_ok:
                return cls.open(store, passphrase)
            raise RepositoryExists(f"a repository already exists at {store.describe()}")
        kdf = new_kdf_params()
        key = RepositoryKey.from_passphrase(passphrase, kdf, None)
        config = {
            "format": REPO_FORMAT,
            "version": FORMAT_VERSION,
            "id": uuid.uuid4().hex,
            "created": _utcnow().isoformat(),
            "kdf": kdf,
            "key_check": key.check_value,
            "encryption": ENCRYPTION_SCHEME,
        }
        store.put(layout.REPO_CONFIG, json.dumps(config, indent=2).encode())
        return cls(store, key, config)

    @classmethod
    def open(cls, store: ObjectStore, passphrase: str) -> "Repository":
        """Read ``repo.json`` and check the passphrase (``WrongKeyError`` when it is wrong)."""
        try:
            raw = store.get(layout.REPO_CONFIG)
        except ObjectNotFound:
            raise RepositoryNotInitialized(
                f"no repository at {store.describe()} ({layout.REPO_CONFIG} is missing); initialise it first"
            ) from None
        try:
            config = json.loads(raw)
            if config.get("format") != REPO_FORMAT:
                raise ValueError(f"format is {config.get('format')!r}")
            if int(config.get("version", 0)) > FORMAT_VERSION:
                raise ValueError(f"version {config['version']} is newer than this software supports")
            kdf, check = config["kdf"], config["key_check"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RepositoryError(f"{layout.REPO_CONFIG} at {store.describe()} is not valid: {exc}") from None
        return cls(store, RepositoryKey.from_passphrase(passphrase, kdf, check), config)

    def test_connection(self) -> ConnectionReport:
        return check_connection(self.store)

    def restic_password(self) -> str:
        """Password for the restic repositories of volume data under ``restic/``."""
        return self.key.restic_password()

    def archive_aad(self, backup_id: str) -> bytes:
        """Binds an archive to this repository and backup id: moved elsewhere, it won't decrypt."""
        return f"ys1000-archive\0{self.id}\0{backup_id}".encode()

    # -- writing
    def begin_backup(
        self,
        backup_id: str,
        plan: str,
        *,
        retention: timedelta | None = None,
        now: datetime | None = None,
        compresslevel: int = 6,
    ) -> BackupWriter:
        """Start a backup. With Object Lock on the bucket and a ``retention``, every object of
        the backup is written with retain-until = now + retention (COMPLIANCE)."""
        layout.check_segment(backup_id, "backup id")
        layout.check_segment(plan, "plan name")
        if self.store.exists(layout.manifest_key(backup_id)):
            raise BackupExists(backup_id)
        created = _aware(now) if now else _utcnow()
        retain_until = None
        if retention is not None and retention > timedelta(0) and self.store.object_lock_enabled():
            retain_until = created + retention
            if retain_until <= _utcnow():  # back-dated backups (imports, tests): S3 refuses past dates
                retain_until = None
        return BackupWriter(
            self, backup_id, plan, created=created, retain_until=retain_until, compresslevel=compresslevel
        )

    # -- reading
    def list_backups(self, plan: str | None = None) -> list[CatalogEntry]:
        """Completed backups (from the catalog only), newest first."""
        keys = [o.key for o in self.store.list(layout.catalog_prefix(plan)) if o.key.endswith(".json")]

        def load(key: str) -> CatalogEntry | None:
            try:
                return CatalogEntry.model_validate_json(self.store.get(key))
            except ObjectNotFound:
                return None  # deleted while listing

        # one small GET per backup: overlap the round trips (boto3 clients are thread-safe)
        with ThreadPoolExecutor(max_workers=min(8, len(keys) or 1)) as pool:
            entries = [e for e in pool.map(load, keys) if e is not None]
        entries.sort(key=lambda e: (e.created, e.backup_id), reverse=True)
        states = self.drill_states()
        flagged = {e.backup_id for e in entries if (e.anomaly or {}).get("suspicious")}
        reviews = self.anomaly_reviews(flagged) if flagged else {}
        for e in entries:
            e.drill = states.get(e.backup_id)
            # manifests are write-once: a human's "this change was expected" is an approvals/ record
            e.review = reviews.get(e.backup_id)
            e.suspicious = e.backup_id in flagged and (e.review or {}).get("decision") != "approved"
        return entries

    # -- restore drills (ys1000.drill)
    def save_drill(self, evidence: dict[str, Any]) -> str:
        key = layout.drill_key(evidence["backup_id"], evidence["drill_id"])
        self.store.put(key, json.dumps(evidence, indent=2, default=str).encode())
        return key

    def drills(self, backup_id: str | None = None) -> list[dict[str, Any]]:
        """Evidence documents of restore drills (of one backup, or all), newest first."""
        prefix = layout.DRILLS + (f"{layout.check_segment(backup_id, 'backup id')}/" if backup_id else "")
        keys = sorted((o.key for o in self.store.list(prefix) if o.key.endswith(".json")), reverse=True)
        return [json.loads(self.store.get(k)) for k in keys]

    def drill_states(self) -> dict[str, dict[str, Any]]:
        """backup id → its newest drill's outcome (drill ids sort by time)."""
        newest: dict[str, str] = {}
        for info in self.store.list(layout.DRILLS):
            parts = info.key[len(layout.DRILLS) :].split("/")
            if len(parts) == 2 and parts[1].endswith(".json") and parts[1] > newest.get(parts[0], ""):
                newest[parts[0]] = parts[1]
        out = {}
        for bid, name in newest.items():
            try:
                ev = json.loads(self.store.get(f"{layout.DRILLS}{bid}/{name}"))
            except ObjectNotFound:
                continue
            out[bid] = {
                "state": ev.get("status"),
                "drill_id": ev.get("drill_id"),
                "rto_seconds": ev.get("rto_seconds"),
                "reason": ev.get("reason"),
                "finished": ev.get("finished"),
                **({"rto_met": ev["rto_met"]} if "rto_met" in ev else {}),
            }
        return out

    def manifest(self, backup_id: str) -> Manifest:
        """The manifest; ``IncompleteBackupError`` if the backup has objects but no manifest,
        ``BackupNotFound`` if it has nothing."""
        try:
            raw = self.store.get(layout.manifest_key(backup_id))
        except ObjectNotFound:
            if any(True for _ in self.store.list(layout.backup_prefix(backup_id))):
                raise IncompleteBackupError(backup_id) from None
            raise BackupNotFound(backup_id) from None
        try:
            return Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise IntegrityError(f"manifest of backup {backup_id!r} is not valid: {exc}") from None

    def pending_manifest(self, backup_id: str) -> Manifest:
        """The manifest-to-be of a captured, not yet finalized backup."""
        try:
            raw = self.store.get(layout.pending_key(backup_id))
        except ObjectNotFound:
            raise IncompleteBackupError(backup_id) from None
        return Manifest.model_validate_json(raw)

    def finalize_backup(
        self,
        backup_id: str,
        *,
        volumes: list[dict[str, Any]] | None = None,
        status: str | None = None,
        warnings: list[str] | None = None,
        **extra: Any,
    ) -> Manifest:
        """Turn a pending backup into a complete one: write the manifest (last), the catalog
        entry, then drop ``pending.json``. Idempotent: a retry after success returns the manifest."""
        if not self.store.exists(layout.pending_key(backup_id)) and self.store.exists(layout.manifest_key(backup_id)):
            return self.manifest(backup_id)
        m = self.pending_manifest(backup_id)
        update: dict[str, Any] = {"completed": _utcnow(), **extra}
        if volumes is not None:
            update["volumes"] = list(volumes)
        if status is not None:
            update["status"] = status
        if warnings:
            update["warnings"] = [*m.warnings, *warnings]
        m = Manifest.model_validate({**m.model_dump(), **update})
        self.store.put(
            layout.manifest_key(backup_id), m.model_dump_json(indent=2).encode(), retain_until=m.retain_until
        )
        entry = CatalogEntry.from_manifest(m)
        self.store.put(
            layout.catalog_key(m.plan, backup_id), entry.model_dump_json().encode(), retain_until=m.retain_until
        )
        self.store.delete(layout.pending_key(backup_id))
        return m

    def discard_pending(self, backup_id: str) -> list[str]:
        """Delete a captured backup that will not be finalized (its pipeline failed or was
        cancelled); returns keys Object Lock keeps. A complete backup is refused."""
        if self.store.exists(layout.manifest_key(backup_id)):
            raise RepositoryError(f"backup {backup_id!r} is complete; use delete_backup")
        left: list[str] = []
        for key in sorted((o.key for o in self.store.list(layout.backup_prefix(backup_id))), key=_delete_order):
            try:
                self.store.delete(key)
            except ObjectLocked:
                left.append(key)
        return left

    def _fetch_verified(self, ref: ObjectRef) -> BinaryIO:
        """Download into a spool while hashing; ``ChecksumError`` unless size and sha256 match."""
        spool = _spool()
        h = sha256()
        size = 0
        try:
            with self.store.open(ref.key) as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    spool.write(chunk)
                    size += len(chunk)
            if h.hexdigest() != ref.sha256:
                raise ChecksumError(ref.key, ref.sha256, h.hexdigest())
            if size != ref.size:
                raise ChecksumError(ref.key, str(ref.size), str(size), what="size")
        except ObjectNotFound:
            spool.close()
            raise IntegrityError(f"{ref.key!r} is listed in the manifest but missing from the store") from None
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool

    def read_index(self, backup_id: str, *, pending: bool = False) -> Iterator[IndexEntry]:
        """The index entries in archive order (checksum verified before the first entry);
        ``pending=True`` reads a captured backup that is not finalized yet."""
        m = self.pending_manifest(backup_id) if pending else self.manifest(backup_id)
        return self._index_entries(self._fetch_verified(m.index), m.index.key)

    @staticmethod
    def _index_entries(spool: BinaryIO, key: str) -> Generator[IndexEntry, None, None]:
        try:
            with spool, gzip.GzipFile(fileobj=spool, mode="rb") as gz:
                n, tail = 0, b""
                # a thousand lines per decode: per-call overhead was most of reading an index
                while (chunk := gz.read(1 << 18)) or tail:
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop() if chunk else b""
                    if not lines:
                        continue
                    try:
                        entries = _DECODE_ENTRIES(b"[" + b",".join(lines) + b"]")
                        if len(entries) != len(lines):  # a line holding two entries, or none
                            raise ValueError("entries do not match lines")
                    except (ValueError, msgspec.ValidationError, msgspec.DecodeError):
                        entries = []
                        for i, line in enumerate(lines, n + 1):  # the line to blame
                            try:
                                entries.append(IndexEntry.from_json(json.loads(line)))
                            except (ValueError, KeyError, TypeError) as exc:
                                raise IntegrityError(f"{key!r} line {i} is not a valid index entry: {exc}") from None
                    n += len(lines)
                    yield from entries
        except (OSError, EOFError, zlib.error) as exc:
            raise IntegrityError(f"{key!r} is not a valid gzip stream: {exc}") from None

    def _archive_members(self, m: Manifest, spool: BinaryIO) -> Generator[tuple[str, bytes], None, None]:
        """Decrypt + gunzip + untar, yielding ``(path, document bytes)``; authenticates to the end."""
        with spool:
            yield from _archive_files(spool, self.key.archive_key, self.archive_aad(m.backup_id), m.archive.key)

    def _paired(self, backup_id: str) -> Generator[tuple[IndexEntry, bytes], None, None]:
        """Archive members matched one-to-one with index entries; both verified up front."""
        m = self.manifest(backup_id)
        archive = self._fetch_verified(m.archive)
        try:
            index = self._fetch_verified(m.index)
        except BaseException:
            archive.close()
            raise
        return self._pair(m, archive, index)

    def _pair(
        self,
        m: Manifest,
        archive: BinaryIO,
        index: BinaryIO,
        entries: Generator[IndexEntry, None, None] | None = None,
    ) -> Generator[tuple[IndexEntry, bytes], None, None]:
        entries = entries if entries is not None else self._index_entries(index, m.index.key)
        try:
            for path, data in self._archive_members(m, archive):
                entry = next(entries, None)
                if entry is None:
                    raise IntegrityError(f"backup {m.backup_id!r}: archive member {path!r} is not in the index")
                if entry.path != path or entry.size != len(data):
                    raise IntegrityError(
                        f"backup {m.backup_id!r}: archive and index disagree at {path!r} "
                        f"(index has {entry.path!r}, {entry.size} bytes; archive {len(data)} bytes)"
                    )
                yield entry, data
            extra = next(entries, None)
            if extra is not None:
                raise IntegrityError(f"backup {m.backup_id!r}: index entry {extra.path!r} has no archive member")
        finally:
            entries.close()
            index.close()  # read part by part (verify with a map), it is not closed by the entries

    def iter_documents(
        self,
        backup_id: str,
        *,
        restorable_only: bool = False,
        select: Callable[[IndexEntry], bool] | None = None,
        namespaces: Collection[str] | None = None,
    ) -> Iterator[tuple[IndexEntry, bytes]]:
        """Like ``iter_resources`` but yields each document's JSON bytes unparsed.

        A restore keeps documents as bytes until it applies them: far less memory than dicts.
        With ``select``, only the entries it accepts; when they lie in less than half of the
        archive, only their gzip members are fetched (ranged GETs, see the module docstring).
        ``namespaces`` promises that ``select`` accepts no namespaced entry outside them: then
        only the index members holding them (and cluster-scoped entries) are read, too.
        """
        if select is not None and (partial := self._partial_documents(backup_id, select, restorable_only, namespaces)):
            return partial
        pairs = self._paired(backup_id)

        def gen() -> Iterator[tuple[IndexEntry, bytes]]:
            try:
                for entry, data in pairs:
                    if (not restorable_only or entry.restore) and (select is None or select(entry)):
                        yield entry, data
            finally:
                pairs.close()

        return gen()

    def _partial_documents(
        self,
        backup_id: str,
        select: Callable[[IndexEntry], bool],
        restorable_only: bool,
        namespaces: Collection[str] | None = None,
    ) -> Iterator[tuple[IndexEntry, bytes]] | None:
        """The selected documents read member by member, or None when a whole read is as good
        (older backups without member offsets, or the selection covers half the archive)."""
        m = self.manifest(backup_id)
        starts: list[int] = []
        wanted: dict[int, list[IndexEntry]] = {}
        entries: Iterable[IndexEntry]
        if from_map := namespaces is not None and m.index_map is not None:
            members = self._read_index_map(m)
            starts = [row[0] for row in members]
            keep = {*cast(Collection[str], namespaces), ""}  # cluster-scoped entries may be selected with any namespace
            entries = self._index_members(m, [row for row in members if keep.intersection(row[4])])
        else:
            entries = self.read_index(backup_id)
        for entry in entries:
            if entry.member is None:
                return None
            if not from_map and (not starts or starts[-1] != entry.member):  # the map lists them all
                starts.append(entry.member)
            if (not restorable_only or entry.restore) and select(entry):
                wanted.setdefault(entry.member, []).append(entry)
        size = int(m.encryption.get("segment_size") or 0)
        if not size or not starts:
            return None
        plain = m.archive.size - HEADER_SIZE - segment_count(m.archive.size, size) * TAG_SIZE
        ends = dict(zip(starts, [*starts[1:], plain], strict=True))
        if stray := sorted(set(wanted) - set(ends)):
            raise IntegrityError(f"backup {backup_id!r}: index entries name archive members {stray} it does not have")
        if sum(ends[s] - s for s in wanted) * 2 > plain:
            return None
        if any(ends[s] - s > MAX_MEMBER_READ for s in wanted):  # one huge run: stream it, as a whole read does
            return None
        # consecutive wanted members within a segment of each other: one GET (at most 8 MiB)
        ranges: list[list[int]] = []
        for start in sorted(wanted):
            if ranges and start - ends[ranges[-1][-1]] < size and ends[start] - ranges[-1][0] <= 8 << 20:
                ranges[-1].append(start)
            else:
                ranges.append([start])
        return self._read_members(m, size, ranges, ends, wanted)

    def _read_index_map(self, m: Manifest) -> list[list[Any]]:
        """The index map's rows (archive member offset, index offset, size, sha256, namespaces),
        its checksum checked against the manifest."""
        ref = cast(ObjectRef, m.index_map)
        with self._fetch_verified(ref) as spool:
            raw = spool.read()
        try:
            rows = json.loads(raw)["members"]
            for row in rows:
                if not (len(row) == 5 and all(isinstance(v, int) for v in row[:3]) and isinstance(row[4], list)):
                    raise ValueError(f"bad row {row!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{ref.key!r} is not a valid index map: {exc}") from None
        self._check_index_tiling(m, rows)
        return rows

    @staticmethod
    def _check_index_tiling(m: Manifest, rows: list[list[Any]]) -> None:
        """The map's index members follow each other from the first byte of the index to its last,
        their archive members in increasing order."""
        at, last = 0, -1
        for member, offset, size, _, _ in rows:
            if offset != at or size < 0 or member <= last:
                raise IntegrityError(
                    f"backup {m.backup_id!r}: the index map's member at bytes {offset}-{offset + size} of "
                    f"{m.index.key!r} (archive offset {member}) does not follow the one before"
                )
            at, last = offset + size, member
        if at != m.index.size:
            raise IntegrityError(f"backup {m.backup_id!r}: the index map covers {at} of {m.index.size} index bytes")

    def _index_members(self, m: Manifest, rows: list[list[Any]]) -> Iterator[IndexEntry]:
        """The entries of the index members ``rows`` name: adjacent ones in one ranged GET (each
        checked against its row by ``_part_entries``)."""
        key = m.index.key
        runs: list[list[list[Any]]] = []
        for row in rows:
            if runs and runs[-1][-1][1] + runs[-1][-1][2] == row[1] and row[1] + row[2] - runs[-1][0][1] <= 8 << 20:
                runs[-1].append(row)
            else:
                runs.append([row])
        for run in runs:
            lo = run[0][1]
            blob = self.store.get_range(key, lo, run[-1][1] + run[-1][2])

            def part(row: list[Any], blob: bytes = blob, lo: int = lo) -> bytes:
                return blob[row[1] - lo : row[1] - lo + row[2]]

            yield from _part_entries(run, part, key)

    def _read_members(
        self, m: Manifest, size: int, ranges: list[list[int]], ends: dict[int, int], wanted: dict[int, list[IndexEntry]]
    ) -> Iterator[tuple[IndexEntry, bytes]]:
        key, name = m.archive.key, m.archive.key
        total = segment_count(m.archive.size, size)
        header = self.store.get_range(key, 0, HEADER_SIZE)
        aad = self.archive_aad(m.backup_id)
        for members in ranges:
            first, _, lo, hi = segment_span(members[0], ends[members[-1]], size)
            plain = decrypt_segments(
                header,
                self.key.archive_key,
                aad,
                first,
                self.store.get_range(key, lo, min(hi, m.archive.size)),
                total,
                name=name,
            )
            base = first * size
            for start in members:
                yield from _member_documents(plain[start - base : ends[start] - base], wanted[start], name)

    def iter_resources(self, backup_id: str, *, restorable_only: bool = False) -> Iterator[tuple[IndexEntry, dict]]:
        """Every stored object as ``(index entry, document)`` in backup order.

        Raises ``IncompleteBackupError``/``ChecksumError`` at the call, before yielding, when the
        manifest is missing or a checksum differs; decryption errors surface as ``DecryptionError``.
        """
        pairs = self._paired(backup_id)

        def gen() -> Iterator[tuple[IndexEntry, dict]]:
            try:
                for entry, data in pairs:
                    if restorable_only and not entry.restore:
                        continue
                    yield entry, parse_document(entry, data)
            finally:
                pairs.close()

        return gen()

    def get_resource(self, backup_id: str, group_resource: str, namespace: str | None, name: str) -> dict:
        """One document by group-resource (``deployments.apps``, ``configmaps``), namespace, name
        (only its gzip member is fetched, for backups that have member offsets)."""

        def wanted(e: IndexEntry) -> bool:
            return e.group_resource == group_resource and e.namespace == (namespace or None) and e.name == name

        docs = self.iter_documents(backup_id, select=wanted, namespaces=[namespace] if namespace else [])
        try:
            for entry, data in docs:
                return parse_document(entry, data)
        finally:
            docs.close()  # type: ignore[attr-defined]
        where = f"namespace {namespace!r}" if namespace else "cluster scope"
        raise KeyError(f"{group_resource} {name!r} ({where}) is not in backup {backup_id!r}")

    def verify(self, backup_id: str, *, pending: bool = False) -> VerifyResult:
        """Check every checksum, decrypt and parse every document, and match index to archive.

        Returns the result when everything holds; raises the first problem otherwise
        (``ChecksumError``, ``DecryptionError``, ``IntegrityError``, ``IncompleteBackupError``).
        ``pending=True`` verifies a captured backup that is not finalized yet.
        """
        m = self.pending_manifest(backup_id) if pending else self.manifest(backup_id)
        key = layout.pending_key(backup_id) if pending else layout.manifest_key(backup_id)
        checks = [f"manifest present ({key})"]
        count, size = 0, 0
        counts: Counter[str] = Counter()
        read_back = m.stream_verified or {}
        if pending and read_back.get("archive_sha256") == m.archive.sha256:
            return self._verify_read_back(m, checks)
        archive = self._fetch_verified(m.archive)
        try:
            index = self._fetch_verified(m.index)
        except BaseException:
            archive.close()
            raise
        rows, entries = self._verified_entries(m, index)
        for entry, data in self._pair(m, archive, index, entries):
            _check_document(entry.path, data)
            count += 1
            size += len(data)
            counts[entry.kind] += 1
        checks += [
            f"archive sha256 {m.archive.sha256} and size {m.archive.size} match",
            f"index sha256 {m.index.sha256} matches",
            "archive decrypts and authenticates to the last segment",
            f"{count} documents are JSON objects and match the index",
        ]
        _check_counts(m, count, counts, "archive")
        checks.append("manifest counts match the archive")
        if rows is not None:
            checks.append(f"index map matches the index ({len(rows)} members: checksums, offsets, namespaces)")
        return VerifyResult(backup_id, count, m.archive.size, size, checks)

    def _verified_entries(
        self, m: Manifest, index: BinaryIO
    ) -> tuple[list[list[Any]] | None, Generator[IndexEntry, None, None]]:
        """The index map's rows (None for a backup without one) and the index's entries: read part
        by part, each proven against its row, when there is a map."""
        rows = self._read_index_map(m) if m.index_map is not None else None
        if rows is None:
            return None, self._index_entries(index, m.index.key)
        return rows, _part_entries(rows, lambda row: _spool_range(index, row[1], row[2]), m.index.key)

    def _verify_read_back(self, m: Manifest, checks: list[str]) -> VerifyResult:
        """A pending backup whose writer read its archive back as it wrote it (``_StreamVerifier``):
        the stored archive must be those bytes (its sha256), and the stored index must list the
        members that read-back checked, in order (``members_sha256``) — then decrypting and
        parsing the archive again would only repeat what the writer proved."""
        read_back = m.stream_verified or {}
        self._fetch_verified(m.archive).close()  # raises unless the stored bytes are the verified ones
        index = self._fetch_verified(m.index)
        rows, entries = self._verified_entries(m, index)
        members, count, size = sha256(), 0, 0
        counts: Counter[str] = Counter()
        with index:
            for entry in entries:
                members.update(_member_line(entry.path, entry.size))
                count += 1
                size += entry.size
                counts[entry.kind] += 1
        if count != read_back.get("documents") or members.hexdigest() != read_back.get("members_sha256"):
            raise IntegrityError(
                f"backup {m.backup_id!r}: the index ({count} entries) does not list the archive members the "
                f"writer read back ({read_back.get('documents')})"
            )
        _check_counts(m, count, counts, "index")
        checks += [
            f"archive sha256 {m.archive.sha256} and size {m.archive.size} match",
            f"index sha256 {m.index.sha256} matches",
            f"archive decrypted, authenticated and its {count} documents checked as JSON objects as it was "
            "written (the stored archive is those bytes)",
            "the index lists exactly the members read back, in order",
            "manifest counts match the archive",
        ]
        if rows is not None:
            checks.append(f"index map matches the index ({len(rows)} members: checksums, offsets, namespaces)")
        return VerifyResult(m.backup_id, count, m.archive.size, size, checks)

    # -- restore reports
    def save_restore_report(self, restore_id: str, report: dict[str, Any]) -> str:
        key = layout.restore_report_key(restore_id)
        self.store.put(key, json.dumps(report, indent=2, default=str).encode())
        return key

    def load_restore_report(self, restore_id: str) -> dict[str, Any]:
        return json.loads(self.store.get(layout.restore_report_key(restore_id)))

    # -- human decisions (ys1000.airflow.approval): cutovers, restores, suspicious backups
    def save_approval(self, record: dict[str, Any]) -> str:
        """Store one decision: ``approval_id``, ``kind`` (cutover | restore | anomaly), ``plan``,
        ``subject`` (the backup, restore or migration it is about), ``decision`` (approved |
        rejected | timed_out), ``by``, ``at``, ``comment``, ``summary`` (what was asked)."""
        key = layout.approval_key(record["approval_id"])
        self.store.put(key, json.dumps(record, indent=2, default=str).encode())
        return key

    def approvals(self, *, subject: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored decisions, newest first (approval ids start with a UTC time stamp)."""
        keys = sorted((o.key for o in self.store.list(layout.APPROVALS) if o.key.endswith(".json")), reverse=True)
        out = []
        for key in keys:
            try:
                rec = json.loads(self.store.get(key))
            except ObjectNotFound:
                continue
            if (subject is None or rec.get("subject") == subject) and (kind is None or rec.get("kind") == kind):
                out.append(rec)
        return out

    def anomaly_reviews(self, backup_ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """backup id → the newest human decision about its anomaly mark (``approved`` clears the
        mark; ``rejected`` or ``timed_out`` keep it)."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self.approvals(kind="anomaly"):  # newest first
            bid = rec.get("subject")
            if bid and bid not in out and (backup_ids is None or bid in backup_ids):
                out[bid] = {
                    k: rec.get(k) for k in ("approval_id", "decision", "by", "at", "comment") if rec.get(k) is not None
                }
        return out

    # -- deleting
    def _catalog_keys_for(self, backup_id: str) -> list[str]:
        suffix = f"/{backup_id}.json"
        return [o.key for o in self.store.list(layout.CATALOG) if o.key.endswith(suffix)]

    def delete_backup(self, backup_id: str, *, now: datetime | None = None) -> None:
        """Delete catalog entry, then manifest (so it is never listed/usable half-deleted), then
        the rest. ``ObjectLocked`` (nothing deleted) while the backup's retention runs."""
        now = _aware(now) if now else _utcnow()
        try:
            m: Manifest | None = self.manifest(backup_id)
        except IncompleteBackupError:
            m = None
        if m is not None and m.retain_until is not None and m.retain_until > now:
            raise ObjectLocked(layout.manifest_key(backup_id), m.retain_until)
        keys = [layout.catalog_key(m.plan, backup_id)] if m else self._catalog_keys_for(backup_id)
        keys.append(layout.manifest_key(backup_id))
        rest = [o.key for o in self.store.list(layout.backup_prefix(backup_id))]
        keys += [k for k in rest if k not in keys]
        for key in keys:
            self.store.delete(key)

    def apply_retention(self, plan: str, older_than: timedelta, now: datetime | None = None) -> RetentionReport:
        """Delete the plan's backups created before ``now - older_than``; locked ones wait.

        Kept however old (``report.protected``, with why): the newest backup a drill verified
        while the newer ones are not verified, and the newest clean ``Completed`` backup while
        newer ones are suspicious (``ys1000.backup.anomaly``; suspicious backups expire by age
        like any other, but never count as the copy retention keeps)."""
        now = _aware(now) if now else _utcnow()
        cutoff = now - older_than
        report = RetentionReport()
        entries = self.list_backups(plan)
        # the newest backup a drill proved restorable stays while every newer one is unproven (a
        # suspicious backup proves nothing: encrypted files restore as well as clean ones)
        verified = [i for i, e in enumerate(entries) if (e.drill or {}).get("state") == "verified" and not e.suspicious]
        if verified and verified[0] > 0:
            proven = entries[verified[0]].backup_id
            n_odd = sum(e.suspicious for e in entries[: verified[0]])
            report.protected[proven] = (
                f"the newest verified backup of {plan}; the {verified[0]} newer one(s) are not verified"
                + (f" or are suspicious ({n_odd})" if n_odd else "")
            )
        # suspicious backups never stand in for a clean one: the newest clean backup (what
        # `latest` restores) stays while newer ones are suspicious
        clean = next((i for i, e in enumerate(entries) if e.status == "Completed" and not e.suspicious), None)
        if clean is not None and any(e.suspicious for e in entries[:clean]):
            odd = [e.backup_id for e in entries[:clean] if e.suspicious]
            why = (
                f"the newest clean backup of {plan}; {len(odd)} newer one(s) are suspicious "
                f"({', '.join(odd)}) until a human confirms the change"
            )
            bid = entries[clean].backup_id
            report.protected[bid] = f"{report.protected[bid]}; {why}" if bid in report.protected else why
        for entry in entries:
            bid = entry.backup_id
            if entry.created >= cutoff:
                report.kept.append(bid)
                continue
            if bid in report.protected:
                continue
            if entry.retain_until is not None and entry.retain_until > now:
                report.waiting.append(LockedBackup(bid, entry.retain_until))
                continue
            try:
                self.delete_backup(bid, now=now)
                report.deleted.append(bid)
            except ObjectLocked as exc:
                report.waiting.append(LockedBackup(bid, exc.retain_until))
            except RepositoryError as exc:
                report.errors[bid] = str(exc)
        return report

    def cleanup_incomplete(self, grace: timedelta, now: datetime | None = None) -> CleanupReport:
        """Delete backups that have objects but no manifest and were last written before
        ``now - grace`` (a younger one may still be uploading)."""
        now = _aware(now) if now else _utcnow()
        newest: dict[str, datetime] = {}
        keys: dict[str, list[str]] = defaultdict(list)
        complete: set[str] = set()
        for info in self.store.list(layout.BACKUPS):
            bid = layout.backup_id_of(info.key)
            if bid is None:
                continue
            keys[bid].append(info.key)
            if info.key.endswith("/" + layout.MANIFEST_NAME):
                complete.add(bid)
            if bid not in newest or info.last_modified > newest[bid]:
                newest[bid] = info.last_modified
        report = CleanupReport()
        for bid in sorted(keys):
            if bid in complete:
                continue
            if newest[bid] > now - grace:
                report.in_flight.append(bid)
                continue
            try:
                for key in self._catalog_keys_for(bid) + keys[bid]:
                    self.store.delete(key)
                report.deleted.append(bid)
            except ObjectLocked as exc:
                report.waiting.append(LockedBackup(bid, exc.retain_until))
            except RepositoryError as exc:
                report.errors[bid] = str(exc)
        return report


def _member_documents(compressed: bytes, entries: list[IndexEntry], name: str) -> Iterator[tuple[IndexEntry, bytes]]:
    """The documents of ``entries`` out of one gzip member's bytes, checked against the index."""
    try:
        z = zlib.decompressobj(wbits=31)
        raw = z.decompress(compressed) + z.flush()
        if not z.eof or z.unused_data:
            raise IntegrityError(f"{name!r}: a gzip member does not end where the index says")
        paths = {e.path for e in entries}
        found = {path: data for path, data in _tar_files(io.BytesIO(raw).read, name) if path in paths}
    except (OSError, EOFError, zlib.error) as exc:
        raise IntegrityError(f"{name!r}: a gzip member is not valid after decryption: {exc}") from None
    for e in entries:
        data = found.get(e.path)
        if data is None or len(data) != e.size:
            got = "missing" if data is None else f"{len(data)} bytes"
            raise IntegrityError(f"{name!r}: index entry {e.path!r} ({e.size} bytes) is {got} in its member")
        yield e, data


def _spool_range(spool: BinaryIO, offset: int, size: int) -> bytes:
    spool.seek(offset)
    return spool.read(size)


def _part_entries(
    rows: list[list[Any]], read: Callable[[list[Any]], bytes], key: str
) -> Generator[IndexEntry, None, None]:
    """The entries of each index member a map row names, each proven against its row: the
    bytes' sha256, every entry in the row's archive member, and the row's namespaces exactly
    those of its entries — so a read of some namespaces cannot miss an entry the map hides."""
    for row in rows:
        member, offset, size, digest, namespaces = row
        label = f"{key} bytes {offset}-{offset + size}"
        part = read(row)
        if len(part) != size or sha256(part).hexdigest() != digest:
            raise ChecksumError(label, digest, sha256(part).hexdigest())
        seen: set[str] = set()
        for entry in Repository._index_entries(io.BytesIO(part), label):
            if entry.member != member:
                raise IntegrityError(f"{label}: entry {entry.path!r} is in archive member {entry.member}, not {member}")
            seen.add(entry.namespace or "")
            yield entry
        if seen != set(namespaces):
            raise IntegrityError(
                f"{label}: the index map names namespaces {sorted(namespaces)}, the entries {sorted(seen)}"
            )


def _tar_files(read: Callable[[int], bytes], name: str) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of each regular file in a tar stream, up to its end-of-archive block.

    The archives' own reader (``tarfile`` cost 60 % of a verify): ustar headers, checksum checked,
    and the PAX ``x`` headers ``tarfile`` writes for long or non-ASCII paths (``path``, ``size``;
    GNU ``L`` long names too).
    Other entry types are skipped, as ``tarfile``'s users here skipped them; a stream that ends
    inside an entry, or a bad header, is an ``IntegrityError``.
    """
    read = _buffered(read)
    pax: dict[bytes, bytes] = {}
    while True:
        block = read(_BLOCK)
        if not block or block == _ZERO_BLOCK:
            return
        if len(block) < _BLOCK:
            raise IntegrityError(f"{name!r}: the archive ends inside a tar header")
        try:
            if block[135] == 0 and block[154:156] == b"\0 ":  # as tarfile (and the writer) lays them out
                stored, size = int(block[148:154], 8), int(block[124:135], 8)
            else:
                stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
                size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            raise IntegrityError(f"{name!r}: a tar header has a malformed number field") from None
        if stored != _byte_sum(block[:148]) + 256 + _byte_sum(block[156:]):  # the checksum field counts as spaces
            raise IntegrityError(f"{name!r}: a tar header's checksum does not match")
        kind = block[156:157]
        if b"size" in pax:
            size = pax_size = int(pax[b"size"]) if pax[b"size"].isdigit() else -1
            if pax_size < 0:
                raise IntegrityError(f"{name!r}: a PAX header has an invalid size")
        pad = -size % _BLOCK
        data = read(size + pad) if size else b""  # the entry and its padding in one read
        if len(data) < size:
            raise IntegrityError(f"{name!r}: the archive ends inside an entry")
        if pad:
            data = data[:size]
        if kind == b"x":
            pax = _pax_records(data, name)
            continue
        if kind == b"L":  # a GNU long name (tarfile's GNU_FORMAT): the next entry's path
            pax = {b"path": data.split(b"\0", 1)[0]}
            continue
        if kind in (b"0", b"\0", b"7"):
            if b"path" in pax:
                path = pax[b"path"].decode("utf-8", "surrogateescape")
            else:
                path = block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                if prefix := block[345:500].split(b"\0", 1)[0]:
                    path = prefix.decode("utf-8", "surrogateescape") + "/" + path
            yield path, data
        pax = {}


def _buffered(read: Callable[[int], bytes], chunk: int = 1 << 18) -> Callable[[int], bytes]:
    """``read`` taken ``chunk`` bytes at a time: a tar entry is three small reads, and each
    ``GzipFile.read`` call costs more than slicing a buffer."""
    buf, pos = b"", 0

    def take(n: int) -> bytes:
        nonlocal buf, pos
        if len(buf) - pos < n:
            parts, have = [buf[pos:]], len(buf) - pos
            while have < n and (more := read(max(chunk, n - have))):
                parts.append(more)
                have += len(more)
            buf, pos = b"".join(parts), 0
        out = buf[pos : pos + n]
        pos += len(out)
        return out

    return take


def _pax_records(data: bytes, name: str) -> dict[bytes, bytes]:
    """A PAX extended header's ``"<length> <key>=<value>\\n"`` records."""
    out: dict[bytes, bytes] = {}
    pos = 0
    try:
        while pos < len(data) and data[pos] != 0:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            if length <= space - pos + 1:  # must cover its own length field: else no progress
                raise ValueError(f"record length {length}")
            key, value = data[space + 1 : pos + length - 1].split(b"=", 1)
            out[key] = value
            pos += length
    except ValueError:
        raise IntegrityError(f"{name!r}: a PAX header is malformed") from None
    return out


def _check_document(path: str, data: bytes) -> None:
    """The document is one JSON object in UTF-8, as a restore needs it: msgspec checks its whole
    syntax while skipping every value (no Python objects built: a tenth of parsing it), then its
    bytes are checked as UTF-8, which skipping does not look at inside strings."""
    try:
        _CHECK_OBJECT(data)
        data.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path!r} is not a valid JSON object: {exc}") from None


def parse_document(entry: IndexEntry, data: bytes) -> dict:
    """An archived document as a dict: msgspec (twice as fast as ``json``), or ``json`` for what
    only it takes; a document neither can read is named."""
    try:
        return _DECODE(data)
    except msgspec.DecodeError:
        pass  # what msgspec refuses and json takes (a float beyond double range: inf)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{entry.path!r} is not valid JSON: {exc}") from None
