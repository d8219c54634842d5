"""Where a planted secret value turns up: ``find(value, places)`` lists every place that holds it.

A *place* is one of the classes below; each yields a label for every spot that contains a needle:

- ``Files(path)``: a file or a directory tree, every file's raw bytes; gzip'd files decompressed,
  tar and zip archives (compressed or not) opened and scanned member by member
  (``path!member``);
- ``Sqlite(path)``: every column of every row of every table (``path:table.column[rowid=N]``);
  binary values also zlib/gzip-decompressed (Airflow compresses serialized DAGs);
- ``Bucket(client, bucket)``: every object of an S3 bucket (boto3 client), raw bytes
  (``s3://bucket/key``);
- ``Blob(label, data)``: bytes already in hand: an HTTP body (label: the URL), a ``pg_dump``, a
  report's text.

The needles of a value are the value itself and its base64 encoding (what a Kubernetes Secret's
``data`` holds, and what any base64'd document starting with the value holds: only the fully
determined leading quads are searched, so padding does not matter).
"""

from __future__ import annotations

import base64
import gzip
import io
import sqlite3
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_DEPTH = 3  # archives inside archives


def needles(value: bytes) -> list[bytes]:
    """The value, and its base64 at each of the three alignments it can have inside a longer
    base64 text: the quads that depend on the value alone, not on what precedes or follows it."""
    out = [value]
    for skip in (0, 1, 2):
        rest = value[skip:]
        quads = base64.b64encode(rest)[: (len(rest) // 3) * 4]
        if quads:
            out.append(quads)
    return out


def _contains(data: bytes, ns: list[bytes]) -> bool:
    return any(n in data for n in ns)


def _unpacked(label: str, data: bytes, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """``(label, bytes)`` of the data itself and of what it contains once unpacked."""
    yield label, data
    if depth >= MAX_DEPTH:
        return
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            inner = None
        if inner is not None:
            if _is_tar(inner):
                yield from _tar_members(label, inner, depth)
            else:
                yield from _unpacked(label + "!gunzip", inner, depth + 1)
            return
    if _is_tar(data):
        yield from _tar_members(label, data, depth)
    elif data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    yield from _unpacked(f"{label}!{name}", z.read(name), depth + 1)
        except zipfile.BadZipFile:
            pass


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def _tar_members(label: str, data: bytes, depth: int) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                if f is not None:
                    yield from _unpacked(f"{label}!{m.name}", f.read(), depth + 1)


def _decompressed(data: bytes) -> bytes | None:
    for fn in (zlib.decompress, gzip.decompress):
        try:
            return fn(data)
        except (zlib.error, OSError, EOFError):
            continue
    return None


@dataclass
class Files:
    path: Path

    def scan(self, ns: list[bytes]) -> Iterator[str]:
        root = Path(self.path)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:  # gone meanwhile (a rotated log)
                continue
            for label, chunk in _unpacked(str(f), data):
                if _contains(chunk, ns):
                    yield label


@dataclass
class Sqlite:
    path: Path

    def scan(self, ns: list[bytes]) -> Iterator[str]:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            db.text_factory = bytes
            tables = [r[0].decode() for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                try:
                    cur = db.execute(f'SELECT rowid, * FROM "{table}"')
                except sqlite3.OperationalError:  # a WITHOUT ROWID table
                    cur = db.execute(f'SELECT NULL, * FROM "{table}"')
                cols = [d[0] for d in cur.description][1:]
                for row in cur:
                    for col, value in zip(cols, row[1:], strict=True):
                        if not isinstance(value, bytes):
                            continue
                        inner = _decompressed(value)
                        if _contains(value, ns) or (inner is not None and _contains(inner, ns)):
                            yield f"{self.path}:{table}.{col}[rowid={row[0]}]"
        finally:
            db.close()


@dataclass
class Bucket:
    client: Any  # a boto3 S3 client
    bucket: str
    prefix: str = ""

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def scan(self, ns: list[bytes]) -> Iterator[str]:
        for key in self.keys():
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for label, chunk in _unpacked(f"s3://{self.bucket}/{key}", data):
                if _contains(chunk, ns):
                    yield label


@dataclass
class Blob:
    label: str
    data: bytes

    def scan(self, ns: list[bytes]) -> Iterator[str]:
        for label, chunk in _unpacked(self.label, self.data):
            if _contains(chunk, ns):
                yield label


def find(value: bytes, places: Iterable[Any]) -> list[str]:
    """Every spot of ``places`` holding ``value`` (or its base64 form), in scan order."""
    ns = needles(value)
    found: list[str] = []
    for place in places:
        for label in place.scan(ns):
            if label not in found:
                found.append(label)
    return found
