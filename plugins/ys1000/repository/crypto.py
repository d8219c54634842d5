"""Repository key handling and streaming authenticated encryption.

Secrets are part of every backup, so archives are encrypted before they leave the process.

Keys: the user's repository key is a passphrase. ``scrypt`` (salt and cost stored in
``repo.json``) stretches it into a 32-byte master key; every purpose gets its own subkey by
HKDF-SHA256 with a distinct ``info`` label (archive encryption, key check, restic password), so
no key is ever used for two things. The key-check value lets ``open`` reject a wrong passphrase
with a clear message instead of failing later on the first archive.

Encryption: chunked AES-256-GCM in the STREAM construction (as in Tink's streaming AEAD). Each
stream has a random salt (per-stream key by HKDF) and a random 7-byte nonce prefix; segment
``i`` is sealed with nonce ``prefix || uint32_be(i) || last_flag`` and the header as associated
data. Flipped bits, reordered or dropped segments, truncation at a segment boundary and appended
data all fail authentication, and memory stays at about two segments whatever the size.

Ciphertext layout::

    "YS1E" | version(1) | segment_size uint32_be | salt(16) | nonce_prefix(7)   (32-byte header)
    segment_0 ... segment_n     each = AES-GCM(plaintext chunk) || 16-byte tag;
                                every plaintext chunk is exactly segment_size bytes except the
                                last, which is 0..segment_size bytes and carries last_flag = 1
"""

from __future__ import annotations

import base64
import hmac
import io
import os
import struct
from hashlib import scrypt, sha256
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import DecryptionError, WrongKeyError

MAGIC = b"YS1E"
STREAM_VERSION = 1
DEFAULT_SEGMENT_SIZE = 1 << 20
TAG_SIZE = 16
_HEADER = struct.Struct(">4sBI16s7s")
HEADER_SIZE = _HEADER.size  # 32

#: scrypt cost: 2**15 * 8 * 128 B = 32 MiB of memory and ~0.1 s per open, which makes guessing
#: a passphrase from a stolen bucket expensive without slowing any real operation.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1

INFO_ARCHIVE = b"ys1000/archive-aead/v1"
INFO_KEY_CHECK = b"ys1000/key-check/v1"
INFO_RESTIC = b"ys1000/restic-password/v1"
INFO_STREAM = b"ys1000/stream-segment-key/v1"


def hkdf(key: bytes, info: bytes, *, salt: bytes | None = None, length: int = 32) -> bytes:
    """HKDF-SHA256: one independent subkey per ``info`` label."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def new_kdf_params() -> dict:
    """Fresh scrypt parameters with a random salt, as stored in ``repo.json``."""
    return {
        "name": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(os.urandom(16)).decode(),
    }


def derive_master_key(passphrase: str, params: dict) -> bytes:
    """Stretch the passphrase with the repository's scrypt parameters into 32 bytes."""
    if not passphrase:
        raise WrongKeyError("the repository key (passphrase) is empty")
    if params.get("name") != "scrypt":
        raise DecryptionError(f"unsupported key derivation {params.get('name')!r} in repo.json")
    n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
    return scrypt(
        passphrase.encode("utf-8"),
        salt=base64.b64decode(params["salt"]),
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + (1 << 20),
        dklen=32,
    )


def key_check_value(master: bytes) -> str:
    """A value stored in ``repo.json`` that proves knowledge of the key without revealing it."""
    return hkdf(master, INFO_KEY_CHECK).hex()


def restic_password(master_key: bytes) -> str:
    """The password of the restic repositories that hold volume data (own HKDF label)."""
    return base64.urlsafe_b64encode(hkdf(master_key, INFO_RESTIC)).decode().rstrip("=")


class RepositoryKey:
    """The master key of an opened repository and the subkeys derived from it."""

    __slots__ = ("_master", "archive_key")

    def __init__(self, master: bytes):
        if len(master) != 32:
            raise ValueError("master key must be 32 bytes")
        self._master = master
        self.archive_key = hkdf(master, INFO_ARCHIVE)

    @classmethod
    def from_passphrase(cls, passphrase: str, kdf: dict, check: str | None) -> "RepositoryKey":
        """Derive and verify against the stored key-check value (``WrongKeyError`` if it differs)."""
        master = derive_master_key(passphrase, kdf)
        if check is not None and not hmac.compare_digest(key_check_value(master), check):
            raise WrongKeyError("wrong repository key: the passphrase does not match this repository's key-check value")
        return cls(master)

    @property
    def check_value(self) -> str:
        return key_check_value(self._master)

    def restic_password(self) -> str:
        return restic_password(self._master)

    def __repr__(self) -> str:  # never print key material
        return "RepositoryKey(<hidden>)"


# ------------------------------------------------------------------------------ streaming AEAD


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise ValueError("stream too long: more than 2**32 segments")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter(io.RawIOBase):
    """Write plaintext, emit sealed segments to ``raw``; ``finish()`` seals the last segment.

    ``associated_data`` is authenticated but not stored (the repository passes the object's
    identity, so an archive moved to another backup does not decrypt there).
    """

    def __init__(
        self,
        raw: BinaryIO,
        key: bytes,
        associated_data: bytes = b"",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ):
        super().__init__()
        self._raw = raw
        salt, self._prefix = os.urandom(16), os.urandom(7)
        self._header = _HEADER.pack(MAGIC, STREAM_VERSION, segment_size, salt, self._prefix)
        self._aead = AESGCM(hkdf(key, INFO_STREAM, salt=salt))
        self._aad = self._header + associated_data
        self._size = segment_size
        self._buf = bytearray()
        self._counter = 0
        self._finished = False
        self.plain_size = 0  # plaintext bytes written so far: offsets an index can point at
        raw.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self._finished:
            raise ValueError("write after finish()")
        self._buf += b
        self.plain_size += len(b)
        size = self._size
        # strictly more than one segment buffered: the first one cannot be the last
        while len(self._buf) > size:
            self._seal(bytes(self._buf[:size]), last=False)
            del self._buf[:size]
        return len(b)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._raw.write(self._aead.encrypt(_nonce(self._prefix, self._counter, last), chunk, self._aad))
        self._counter += 1

    def finish(self) -> None:
        """Seal the final segment (possibly empty). Does not close ``raw``."""
        if not self._finished:
            self._seal(bytes(self._buf), last=True)
            self._buf = bytearray()
            self._finished = True

    def close(self) -> None:
        if not self.closed:
            self.finish()
        super().close()


class DecryptingReader(io.RawIOBase):
    """Read plaintext from a sealed stream, verifying every segment before returning it.

    Raises ``DecryptionError`` naming the object and segment on the first failure; nothing of a
    failing segment is ever returned.
    """

    def __init__(self, raw: BinaryIO, key: bytes, associated_data: bytes = b"", *, name: str = "stream"):
        super().__init__()
        self._raw = raw
        self._name = name
        header = _read_exact(raw, HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            raise DecryptionError(f"{name}: truncated (no complete encryption header)")
        magic, version, size, salt, prefix = _HEADER.unpack(header)
        if magic != MAGIC:
            raise DecryptionError(f"{name}: not a ys1000 encrypted object (bad magic)")
        if version != STREAM_VERSION:
            raise DecryptionError(f"{name}: unsupported encryption version {version}")
        if not 0 < size <= 64 << 20:
            raise DecryptionError(f"{name}: invalid segment size {size} in header")
        self._aead = AESGCM(hkdf(key, INFO_STREAM, salt=salt))
        self._aad = header + associated_data
        self._prefix = prefix
        self._seg = size + TAG_SIZE
        self._counter = 0
        self._cur = _read_exact(raw, self._seg)
        self._out = b""
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next(self) -> bool:
        if self._done:
            return False
        cur = self._cur
        if len(cur) < self._seg:
            last = True
        else:
            self._cur = _read_exact(self._raw, self._seg)
            last = not self._cur
        if len(cur) < TAG_SIZE:
            raise DecryptionError(
                f"{self._name}: truncated after segment {self._counter} (stream ends without its final segment)"
            )
        try:
            self._out = self._aead.decrypt(_nonce(self._prefix, self._counter, last), cur, self._aad)
        except InvalidTag:
            raise DecryptionError(
                f"{self._name}: segment {self._counter} failed authentication — wrong key, or the "
                "data was modified, truncated, extended or reordered"
            ) from None
        self._pos = 0
        self._counter += 1
        self._done = last
        return True

    def readinto(self, b) -> int:
        while self._pos >= len(self._out):
            if not self._next():
                return 0
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n


def segment_span(start: int, end: int, segment_size: int) -> tuple[int, int, int, int]:
    """For plaintext bytes ``[start, end)``: the first and one-past-last segment numbers and the
    ciphertext byte range ``[from, to)`` (header excluded from the numbering, included in offsets)."""
    first, last = start // segment_size, (max(end, start + 1) - 1) // segment_size + 1
    sealed = segment_size + TAG_SIZE
    return first, last, HEADER_SIZE + first * sealed, HEADER_SIZE + last * sealed


def decrypt_segments(
    header: bytes, key: bytes, associated_data: bytes, first: int, sealed: bytes, total: int, *, name: str = "stream"
) -> bytes:
    """Plaintext of consecutive segments ``first, first+1, …`` cut out of a sealed stream (a range
    read), each authenticated with its own number (and, for segment ``total - 1``, as the last):
    a segment moved, swapped or altered fails like in a full read."""
    magic, version, size, salt, prefix = _HEADER.unpack(header[:HEADER_SIZE])
    if magic != MAGIC or version != STREAM_VERSION:
        raise DecryptionError(f"{name}: not a ys1000 encrypted stream of version {STREAM_VERSION}")
    aead, aad, step = AESGCM(hkdf(key, INFO_STREAM, salt=salt)), header[:HEADER_SIZE] + associated_data, size + TAG_SIZE
    out = []
    for i in range(0, len(sealed), step):
        n = first + i // step
        try:
            out.append(aead.decrypt(_nonce(prefix, n, n == total - 1), sealed[i : i + step], aad))
        except InvalidTag:
            raise DecryptionError(
                f"{name}: segment {n} failed authentication — wrong key, or the data was modified"
            ) from None
    return b"".join(out)


def segment_count(sealed_size: int, segment_size: int) -> int:
    """How many segments a sealed stream of ``sealed_size`` bytes has (the last may be short)."""
    return max(1, -(-(sealed_size - HEADER_SIZE) // (segment_size + TAG_SIZE)))


def _read_exact(f: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def open_decrypting(raw: BinaryIO, key: bytes, associated_data: bytes = b"", *, name: str = "stream") -> BinaryIO:
    """A buffered plaintext reader over ``raw`` (suitable for ``gzip``/``tarfile``)."""
    return io.BufferedReader(DecryptingReader(raw, key, associated_data, name=name), buffer_size=1 << 16)


def encrypt_bytes(
    key: bytes, data: bytes, associated_data: bytes = b"", *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> bytes:
    """Seal a small object in one call (same format as the streaming writer)."""
    out = io.BytesIO()
    w = EncryptingWriter(out, key, associated_data, segment_size)
    w.write(data)
    w.finish()
    return out.getvalue()


def decrypt_bytes(key: bytes, data: bytes, associated_data: bytes = b"", *, name: str = "object") -> bytes:
    """Open a sealed object in one call; raises ``DecryptionError``."""
    return open_decrypting(io.BytesIO(data), key, associated_data, name=name).read()


class HashingWriter(io.RawIOBase):
    """Pass-through writer that computes sha256 and size of what went to ``raw``."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._raw = raw
        self._h = sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._raw.write(b)
        self._h.update(b)
        self.size += len(b)
        return len(b)

    def hexdigest(self) -> str:
        return self._h.hexdigest()
