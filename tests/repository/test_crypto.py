"""Streaming authenticated encryption and key derivation."""

from __future__ import annotations

import io
import os

import pytest

from ys1000.repository.crypto import (
    HEADER_SIZE,
    TAG_SIZE,
    RepositoryKey,
    decrypt_bytes,
    encrypt_bytes,
    key_check_value,
    new_kdf_params,
    open_decrypting,
    restic_password,
)
from ys1000.repository.errors import DecryptionError, WrongKeyError

KEY = os.urandom(32)
SEG = 1024  # small segments so a few KiB make several


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG, 5 * SEG + 17])
def test_round_trip_any_size(size):
    data = os.urandom(size)
    sealed = encrypt_bytes(KEY, data, b"ad", segment_size=SEG)
    assert data not in sealed or size < 16  # tiny inputs can occur by chance
    assert decrypt_bytes(KEY, sealed, b"ad") == data


def test_streaming_reader_returns_same_bytes_in_small_reads():
    data = os.urandom(7 * SEG + 3)
    reader = open_decrypting(io.BytesIO(encrypt_bytes(KEY, data, segment_size=SEG)), KEY)
    out = b"".join(iter(lambda: reader.read(100), b""))
    assert out == data


def _segments(sealed: bytes) -> tuple[bytes, list[bytes]]:
    seg = SEG + TAG_SIZE
    body = sealed[HEADER_SIZE:]
    return sealed[:HEADER_SIZE], [body[i : i + seg] for i in range(0, len(body), seg)]


def test_every_single_bit_flip_position_class_is_detected():
    sealed = encrypt_bytes(KEY, os.urandom(3 * SEG + 5), segment_size=SEG)
    for pos in (0, 5, 10, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + SEG + 3, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_bytes(KEY, bytes(bad))


def test_truncation_at_a_segment_boundary_is_detected():
    header, segs = _segments(encrypt_bytes(KEY, os.urandom(3 * SEG + 5), segment_size=SEG))
    assert len(segs) == 4
    with pytest.raises(DecryptionError, match="failed authentication"):
        decrypt_bytes(KEY, header + b"".join(segs[:2]))  # ends on a full, non-final segment
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt_bytes(KEY, header)


def test_reordered_or_dropped_or_appended_segments_are_detected():
    header, segs = _segments(encrypt_bytes(KEY, os.urandom(3 * SEG + 5), segment_size=SEG))
    with pytest.raises(DecryptionError):
        decrypt_bytes(KEY, header + segs[1] + segs[0] + segs[2] + segs[3])
    with pytest.raises(DecryptionError):
        decrypt_bytes(KEY, header + segs[0] + segs[2] + segs[3])
    with pytest.raises(DecryptionError):
        decrypt_bytes(KEY, header + b"".join(segs) + segs[3])


def test_nothing_of_a_bad_segment_is_returned():
    data = os.urandom(3 * SEG)
    sealed = bytearray(encrypt_bytes(KEY, data, segment_size=SEG))
    sealed[HEADER_SIZE + (SEG + TAG_SIZE) + 1] ^= 0xFF  # second segment
    reader = open_decrypting(io.BytesIO(bytes(sealed)), KEY)
    assert reader.read(SEG) == data[:SEG]
    with pytest.raises(DecryptionError, match="segment 1"):
        reader.read(SEG)


def test_wrong_key_or_associated_data_fails():
    sealed = encrypt_bytes(KEY, b"secret", b"backup-1")
    with pytest.raises(DecryptionError):
        decrypt_bytes(os.urandom(32), sealed, b"backup-1")
    with pytest.raises(DecryptionError):
        decrypt_bytes(KEY, sealed, b"backup-2")


def test_same_plaintext_encrypts_differently():
    assert encrypt_bytes(KEY, b"x" * 100) != encrypt_bytes(KEY, b"x" * 100)


def test_passphrase_key_check_and_subkeys():
    kdf = new_kdf_params()
    key = RepositoryKey.from_passphrase("pw-one", kdf, None)
    again = RepositoryKey.from_passphrase("pw-one", kdf, key.check_value)
    assert again.archive_key == key.archive_key
    with pytest.raises(WrongKeyError, match="wrong repository key"):
        RepositoryKey.from_passphrase("pw-two", kdf, key.check_value)
    # a fresh salt gives a different key for the same passphrase
    assert RepositoryKey.from_passphrase("pw-one", new_kdf_params(), None).archive_key != key.archive_key
    # restic password: deterministic, printable, independent of the other subkeys
    pw = key.restic_password()
    assert pw == again.restic_password() and pw.isascii() and len(pw) >= 40
    assert pw not in (key.archive_key.hex(), key.check_value)
    assert "pw-one" not in repr(key) and key.archive_key.hex() not in repr(key)


def test_restic_password_function_matches_method():
    master = os.urandom(32)
    assert restic_password(master) == RepositoryKey(master).restic_password()
    assert restic_password(master) != key_check_value(master)
