"""The writer reads its archive back as it writes it (``repository._StreamVerifier``), so the
verify step of a pending backup proves the stored bytes against that read-back instead of
decrypting and parsing the archive a second time. What each side catches:

* the read-back: a segment the writer sealed wrong, a member or document it wrote wrong — the
  commit fails and nothing is stored;
* the verify of the pending backup: a stored archive that is not the bytes read back (sha256),
  an index that does not list the members read back, in order; and without a read-back record
  that matches the stored archive, the whole verify as before.
"""

from __future__ import annotations

import gzip
from hashlib import sha256

import pytest

from repo_helpers import configmap
from ys1000.repository import ChecksumError, DecryptionError, IntegrityError, layout
from ys1000.repository.manifest import ObjectRef
from ys1000.repository.repository import Repository

N = 1500  # several gzip members, several index-map rows


def _pending(repo: Repository, backup_id: str) -> None:
    with repo.begin_backup(backup_id, "plan-a") as w:
        for i in range(N):
            ns = f"ns-{i // 300}"
            w.add(
                configmap(ns, f"cm-{i:05d}", k="x" * (i % 700)),
                group="",
                version="v1",
                resource="configmaps",
                kind="ConfigMap",
            )
        w.commit(namespaces=[f"ns-{k}" for k in range(N // 300)], final=False)


def _put_pending_manifest(repo: Repository, backup_id: str, **changes) -> None:
    m = repo.pending_manifest(backup_id)
    repo.store.put(layout.pending_key(backup_id), m.model_copy(update=changes).model_dump_json(indent=2).encode())


def test_the_pending_verify_trusts_the_read_back_only_for_the_bytes_it_read(repo, monkeypatch):
    _pending(repo, "b")
    m = repo.pending_manifest("b")
    assert m.stream_verified is not None
    assert m.stream_verified["archive_sha256"] == m.archive.sha256 and m.stream_verified["documents"] == N
    full = Repository.verify(repo, "b", pending=True)  # before the archive reader is taken away

    def no_second_read(*_a, **_k):
        raise AssertionError("the archive was decrypted again")

    monkeypatch.setattr(Repository, "_archive_members", no_second_read)
    quick = repo.verify("b", pending=True)
    assert (quick.objects, quick.archive_size, quick.uncompressed_size) == (N, m.archive.size, m.uncompressed_size)
    assert (full.objects, full.uncompressed_size) == (quick.objects, quick.uncompressed_size)
    assert any("as it was written" in c for c in quick.checks)

    # the stored archive is not the bytes read back: its checksum fails before anything else
    stored = repo.store.get(m.archive.key)
    repo.store.put(m.archive.key, stored[:-1] + bytes([stored[-1] ^ 1]))
    with pytest.raises(ChecksumError):
        repo.verify("b", pending=True)
    repo.store.put(m.archive.key, stored)

    # an index that lists other members (one path changed; its checksums and the map made to fit)
    index = repo.store.get(m.index.key)
    lines = gzip.decompress(index).split(b"\n")
    lines[7] = lines[7].replace(b"cm-00007", b"cm-0000x")
    forged = gzip.compress(b"\n".join(lines), mtime=0)
    repo.store.put(m.index.key, forged)
    repo.store.delete(m.index_map.key)
    _put_pending_manifest(
        repo, "b", index=ObjectRef(key=m.index.key, sha256=sha256(forged).hexdigest(), size=len(forged)), index_map=None
    )
    with pytest.raises(IntegrityError, match="does not list the archive members the writer read back"):
        repo.verify("b", pending=True)


def test_without_a_matching_read_back_the_whole_archive_is_verified(repo, monkeypatch):
    """A pending manifest whose read-back record names other bytes (or none) gets the whole verify."""
    _pending(repo, "b")
    m = repo.pending_manifest("b")
    read_archive = []
    real = Repository._archive_members

    def counted(self, *a, **k):
        read_archive.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Repository, "_archive_members", counted)
    for record in [None, {**m.stream_verified, "archive_sha256": "0" * 64}]:
        _put_pending_manifest(repo, "b", stream_verified=record)
        assert repo.verify("b", pending=True).objects == N
    assert len(read_archive) == 2
    repo.finalize_backup("b")  # a committed backup: ``ys1000 verify`` reads everything again
    assert repo.verify("b").objects == N and len(read_archive) == 3


def test_the_read_back_fails_the_commit_of_an_archive_sealed_wrong(repo, monkeypatch):
    """A writer bug past the documents (here: one bit of the sealed stream flipped on its way to
    the spool, after it was hashed) is caught by the read-back; the commit raises, nothing stored."""
    import ys1000.repository.repository as impl

    calls = []

    def flip_the_first_segment(self, b):
        calls.append(len(b))
        if len(calls) == 2:  # after the 32-byte header: the first segment
            b = bytes(b)
            b = b[:100] + bytes([b[100] ^ 1]) + b[101:]
        for out in self._outs:
            out.write(b)
        return len(b)

    monkeypatch.setattr(impl._Tee, "write", flip_the_first_segment)
    with pytest.raises(DecryptionError) as info:
        _pending(repo, "c")
    assert "resources.tar.gz.enc: segment 0 failed authentication" in str(info.value)
    assert not list(repo.store.list(layout.backup_prefix("c")))


def test_the_read_back_starts_at_the_first_member_and_reads_an_empty_archive(repo):
    """A capture forks its listing after ``begin_backup`` and before its first member: no thread
    of the read-back may exist then (a fork copies a thread's held locks, not the thread)."""
    import threading

    def read_backs() -> int:
        return sum(t.name == "archive-verify" for t in threading.enumerate())

    before = read_backs()
    with repo.begin_backup("empty", "plan-a") as w:
        assert read_backs() == before
        w.commit(namespaces=[], final=False)
    assert repo.pending_manifest("empty").stream_verified["documents"] == 0
    assert repo.verify("empty", pending=True).objects == 0
    with repo.begin_backup("one", "plan-a") as w:
        w.add(configmap("ns", "cm"), group="", version="v1", resource="configmaps", kind="ConfigMap")
        assert read_backs() == before + 1
        w.commit(namespaces=["ns"], final=False)
    assert read_backs() == before
    assert repo.verify("one", pending=True).objects == 1
