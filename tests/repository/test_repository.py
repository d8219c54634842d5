"""Backups in the repository: round trip, encryption at rest, integrity, listing, deletion."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import re

import pytest

from repo_helpers import PASSPHRASE, configmap, write_backup
from ys1000.repository import (
    BackupExists,
    BackupNotFound,
    ChecksumError,
    DecryptionError,
    IncompleteBackupError,
    IndexEntry,
    LocalStore,
    Repository,
    RepositoryConfig,
    RepositoryExists,
    RepositoryNotInitialized,
    WrongKeyError,
    open_repository,
)
from ys1000.repository import layout

SECRET_VALUE = "s3cr3t-P@ssw0rd-that-must-never-leak"


def _objects(n: int):
    """A varied set: namespaced core/grouped objects, cluster-scoped, unicode, long names."""
    for i in range(n):
        yield (
            configmap("demo", f"cm-{i}", value=f"v{i}", text="ünïcødé ✓"),
            dict(group="", version="v1", resource="configmaps", kind="ConfigMap"),
        )
    yield (
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "db", "namespace": "demo"},
            "stringData": {"password": SECRET_VALUE},
        },
        dict(group="", version="v1", resource="secrets", kind="Secret"),
    )
    yield (
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web-" + "x" * 200, "namespace": "demo"},
            "spec": {"replicas": 2},
        },
        dict(group="apps", version="v1", resource="deployments", kind="Deployment"),
    )
    yield (
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "ys1000-local"},
            "provisioner": "ys1000.io/local",
        },
        dict(group="storage.k8s.io", version="v1", resource="storageclasses", kind="StorageClass"),
    )
    yield (
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-abc", "namespace": "demo"}},
        dict(group="", version="v1", resource="pods", kind="Pod", restore=False, reason="owned by ReplicaSet web-5d8f"),
    )


def _backup(repo: Repository, backup_id: str, n: int = 200, **begin):
    expected = []
    with repo.begin_backup(backup_id, "plan-a", **begin) as w:
        for obj, kw in _objects(n):
            w.add(obj, **kw)
            expected.append(obj)
        m = w.commit(
            cluster_name="source", kubernetes_version="v1.33.1", namespaces=["demo"], selection={"namespaces": ["demo"]}
        )
    return m, expected


def _raw(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def test_round_trip_is_byte_identical(repo):
    m, expected = _backup(repo, "bk-1")
    got = list(repo.iter_resources("bk-1"))
    assert [_raw(o) for _, o in got] == [_raw(o) for o in expected]
    assert [list(o) for _, o in got] == [list(o) for o in expected]  # key order kept
    entries = [e for e, _ in got]
    assert entries == list(repo.read_index("bk-1"))
    sc = next(e for e in entries if e.kind == "StorageClass")
    assert sc.namespace is None and sc.path == "resources/storageclasses.storage.k8s.io/v1/cluster/ys1000-local.json"
    dep = next(e for e in entries if e.kind == "Deployment")
    assert dep.group_resource == "deployments.apps" and dep.api_version == "apps/v1"
    assert dep.path.startswith("resources/deployments.apps/v1/namespaces/demo/web-xxx")
    pod = next(e for e in entries if e.kind == "Pod")
    assert pod.restore is False and pod.reason == "owned by ReplicaSet web-5d8f"
    assert all(e.size == len(_raw(o)) for e, o in got)
    assert [o for e, o in repo.iter_resources("bk-1", restorable_only=True)] == expected[:-1]
    # manifest facts
    assert m.total == len(expected) and m.restorable == len(expected) - 1
    assert m.counts == {"ConfigMap": 200, "Deployment": 1, "Pod": 1, "Secret": 1, "StorageClass": 1}
    assert m.cluster_name == "source" and m.kubernetes_version == "v1.33.1" and m.status == "Completed"
    assert repo.manifest("bk-1") == m
    assert repo.get_resource("bk-1", "secrets", "demo", "db")["stringData"]["password"] == SECRET_VALUE
    assert repo.get_resource("bk-1", "storageclasses.storage.k8s.io", None, "ys1000-local")["provisioner"]
    with pytest.raises(KeyError):
        repo.get_resource("bk-1", "secrets", "demo", "nope")
    result = repo.verify("bk-1")
    assert result.ok and result.objects == len(expected)


def test_archive_is_a_velero_like_tar_inside(repo):
    """Decrypting by hand gives a standard tar.gz with the documented member names."""
    import io
    import tarfile

    from ys1000.repository.crypto import decrypt_bytes

    m, expected = _backup(repo, "bk-tar", n=3)
    plain = decrypt_bytes(repo.key.archive_key, repo.store.get(m.archive.key), repo.archive_aad("bk-tar"))
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
        names = tar.getnames()
        assert json.loads(tar.extractfile("resources/secrets/v1/namespaces/demo/db.json").read()) == expected[3]
    assert names[0] == "resources/configmaps/v1/namespaces/demo/cm-0.json" and len(names) == len(expected)


def test_secret_value_is_absent_from_every_raw_object(repo):
    _backup(repo, "bk-secret", n=5)
    keys = [o.key for o in repo.store.list()]
    assert {
        layout.archive_key("bk-secret"),
        layout.index_key("bk-secret"),
        layout.manifest_key("bk-secret"),
        layout.catalog_key("plan-a", "bk-secret"),
        layout.REPO_CONFIG,
    } <= set(keys)
    for key in keys:
        raw = repo.store.get(key)
        variants = [raw]
        if key.endswith(".gz"):
            variants.append(gzip.decompress(raw))
        for blob in variants:
            assert SECRET_VALUE.encode() not in blob, key
            assert PASSPHRASE.encode() not in blob, key
    # the index is readable without the key and names the Secret (metadata only)
    index = gzip.decompress(repo.store.get(layout.index_key("bk-secret"))).decode()
    assert '"kind":"Secret"' in index and '"name":"db"' in index


def _flip_archive_byte(repo, backup_id, offset=100):
    key = layout.archive_key(backup_id)
    data = bytearray(repo.store.get(key))
    data[offset] ^= 0x01
    repo.store.put(key, bytes(data))


def test_flipped_byte_fails_verify_and_restore_before_anything_is_yielded(repo):
    _backup(repo, "bk-flip")
    _flip_archive_byte(repo, "bk-flip")
    with pytest.raises(ChecksumError) as info:
        repo.verify("bk-flip")
    assert "resources.tar.gz.enc" in str(info.value) and info.value.expected != info.value.actual
    yielded = []
    with pytest.raises(ChecksumError):
        for item in repo.iter_resources("bk-flip"):
            yielded.append(item)
    assert yielded == []
    # a small backup is one gzip member: one object is read with the whole, checked archive
    # (partial reads of large ones: test_partial_read.py)
    with pytest.raises(ChecksumError):
        repo.get_resource("bk-flip", "secrets", "demo", "db")


def test_tampering_with_consistent_checksum_is_still_caught_by_authentication(repo):
    """An attacker who rewrites the manifest's sha256 too still cannot forge ciphertext."""
    m, _ = _backup(repo, "bk-forge")
    _flip_archive_byte(repo, "bk-forge", offset=m.archive.size // 2)
    from hashlib import sha256

    data = repo.store.get(m.archive.key)
    forged = m.model_copy(update={"archive": m.archive.model_copy(update={"sha256": sha256(data).hexdigest()})})
    repo.store.put(layout.manifest_key("bk-forge"), forged.model_dump_json().encode())
    with pytest.raises(DecryptionError, match="failed authentication"):
        repo.verify("bk-forge")


def test_archive_moved_to_another_backup_does_not_decrypt(repo):
    m1, _ = _backup(repo, "bk-a", n=2)
    m2, _ = _backup(repo, "bk-b", n=2)
    repo.store.put(m2.archive.key, repo.store.get(m1.archive.key))
    forged = m2.model_copy(update={"archive": m1.archive.model_copy(update={"key": m2.archive.key})})
    repo.store.put(layout.manifest_key("bk-b"), forged.model_dump_json().encode())
    with pytest.raises(DecryptionError):
        list(repo.iter_resources("bk-b"))


def test_wrong_passphrase_fails_at_open(repo):
    with pytest.raises(WrongKeyError, match="wrong repository key"):
        Repository.open(repo.store, "not the passphrase")
    reopened = Repository.open(repo.store, PASSPHRASE)
    assert reopened.id == repo.id and reopened.restic_password() == repo.restic_password()


def test_open_and_init_edge_cases(store):
    with pytest.raises(RepositoryNotInitialized, match="repo.json"):
        Repository.open(store, PASSPHRASE)
    repo = Repository.init(store, PASSPHRASE)
    with pytest.raises(RepositoryExists):
        Repository.init(store, PASSPHRASE)
    assert Repository.init(store, PASSPHRASE, exist_ok=True).id == repo.id
    with pytest.raises(WrongKeyError):
        Repository.init(store, "other", exist_ok=True)
    raw = store.get("repo.json").decode()
    assert PASSPHRASE not in raw and "key_check" in raw


def test_incomplete_and_missing_backups(repo):
    w = repo.begin_backup("bk-half", "plan-a")
    w.add(configmap("demo", "x"), group="", version="v1", resource="configmaps", kind="ConfigMap")
    w._finish_streams()
    w._archive_spool.seek(0)
    repo.store.put(layout.archive_key("bk-half"), w._archive_spool)  # crash before the manifest
    with pytest.raises(IncompleteBackupError, match="incomplete"):
        repo.manifest("bk-half")
    with pytest.raises(IncompleteBackupError):
        repo.iter_resources("bk-half")
    with pytest.raises(IncompleteBackupError):
        repo.verify("bk-half")
    with pytest.raises(BackupNotFound):
        repo.manifest("never-was")
    assert repo.list_backups() == []


def test_listing_is_newest_first_and_per_plan(repo):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    write_backup(repo, "a-1", "plan-a", now=t0)
    write_backup(repo, "a-2", "plan-a", now=t0 + timedelta(days=1))
    write_backup(repo, "b-1", "plan-b", now=t0 + timedelta(hours=1))
    assert [e.backup_id for e in repo.list_backups()] == ["a-2", "b-1", "a-1"]
    assert [e.backup_id for e in repo.list_backups("plan-a")] == ["a-2", "a-1"]
    entry = repo.list_backups("plan-b")[0]
    assert entry.total == 3 and entry.namespaces == ["demo"] and entry.status == "Completed"
    with pytest.raises(BackupExists):
        repo.begin_backup("a-1", "plan-a")


def test_abort_and_exception_remove_uploaded_objects(repo):
    with pytest.raises(RuntimeError):
        with repo.begin_backup("bk-abort", "plan-a") as w:
            w.add(configmap("demo", "x"), group="", version="v1", resource="configmaps", kind="ConfigMap")
            raise RuntimeError("listing failed")
    assert list(repo.store.list("backups/")) == []
    # a failure during upload: what was uploaded is removed by abort
    w = repo.begin_backup("bk-abort2", "plan-a")
    w.add(configmap("demo", "x"), group="", version="v1", resource="configmaps", kind="ConfigMap")
    store = repo.store
    real_put = store.put

    def failing_put(key, data, **kw):
        if key.endswith("manifest.json"):
            raise OSError("network down")
        return real_put(key, data, **kw)

    store.put = failing_put
    try:
        with pytest.raises(OSError):
            w.commit()
    finally:
        del store.put
    assert {o.key for o in store.list("backups/")} == {
        layout.archive_key("bk-abort2"),
        layout.index_key("bk-abort2"),
        layout.index_map_key("bk-abort2"),
    }
    assert w.abort() == []
    assert list(store.list("backups/")) == []


def test_delete_backup_removes_catalog_then_manifest_first(repo):
    write_backup(repo, "bk-del")
    write_backup(repo, "bk-keep")
    deleted = []
    real_delete = repo.store.delete
    repo.store.delete = lambda key: (deleted.append(key), real_delete(key))[1]
    try:
        repo.delete_backup("bk-del")
    finally:
        del repo.store.delete
    assert deleted[:2] == [layout.catalog_key("plan-a", "bk-del"), layout.manifest_key("bk-del")]
    assert set(deleted[2:]) == {
        layout.archive_key("bk-del"),
        layout.index_key("bk-del"),
        layout.index_map_key("bk-del"),
    }
    assert [e.backup_id for e in repo.list_backups()] == ["bk-keep"]
    assert list(repo.store.list("backups/bk-del/")) == []
    repo.verify("bk-keep")


def test_restore_reports_round_trip(repo):
    key = repo.save_restore_report("rs-1", {"created": 3, "failed": []})
    assert key == "restores/rs-1/report.json"
    assert repo.load_restore_report("rs-1") == {"created": 3, "failed": []}


def test_open_repository_from_config(s3, bucket, tmp_path):
    cfg = RepositoryConfig(
        type="s3",
        bucket=bucket,
        prefix="cfg",
        region=s3.region,
        endpoint_url=s3.endpoint_url,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )
    repo = open_repository(cfg, PASSPHRASE, create=True)
    write_backup(repo, "bk-cfg")
    again = open_repository(cfg, PASSPHRASE)
    assert [e.backup_id for e in again.list_backups()] == ["bk-cfg"]
    assert s3.client().head_object(Bucket=bucket, Key="cfg/backups/bk-cfg/manifest.json")
    local = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "l")), PASSPHRASE, create=True)
    assert isinstance(local.store, LocalStore)
    with pytest.raises(RepositoryNotInitialized):
        open_repository(RepositoryConfig(type="local", path=str(tmp_path / "other")), PASSPHRASE)


def test_index_entry_json_round_trip():
    e = IndexEntry(
        group="apps",
        version="v1",
        kind="Deployment",
        resource="deployments",
        namespace="ns",
        name="web",
        size=10,
        path="p",
        restore=False,
        reason="why",
        member=4096,
    )
    back = IndexEntry.from_json(json.loads(json.dumps(e.to_json())))
    assert back == e and hash(back) == hash(e)  # every field set (from_json bypasses __init__)
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        back.name = "other"  # type: ignore[misc]  # still frozen
    minimal = {"version": "v1", "kind": "ConfigMap", "resource": "configmaps", "name": "c", "size": 1, "path": "q"}
    assert IndexEntry.from_json(minimal) == IndexEntry("", "v1", "ConfigMap", "configmaps", None, "c", 1, "q")


@pytest.mark.parametrize(
    "path,size",
    [
        ("resources/configmaps/v1/namespaces/demo/cm-1.json", 120),
        ("resources/deployments.apps/v1/namespaces/team-a/" + "w" * 40 + ".json", 0),
        ("resources/storageclasses.storage.k8s.io/v1/cluster/x.json", 8**11 - 1),
        ("r/" + "n" * 98, 7),  # exactly the 100 bytes of the ustar name field
    ],
)
def test_archive_headers_are_the_ones_tarfile_writes(path, size):
    import tarfile

    from ys1000.repository.repository import _ustar_header

    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = size, 1764547200, 0o600
    assert _ustar_header(path, size, 1764547200) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_tar_checksums_sum_bytes_exactly():
    """The checksum's byte sum goes through adler32 in halves: exact up to 512 bytes of 0xff."""
    import random

    from ys1000.repository.repository import _byte_sum

    rnd = random.Random(7)
    cases = [b"", b"\xff" * 256, b"\xff" * 257, b"\xff" * 512, bytes(512)]
    cases += [rnd.randbytes(rnd.randint(0, 512)) for _ in range(300)]
    assert [_byte_sum(c) for c in cases] == [sum(c) for c in cases]


@pytest.mark.parametrize("path", ["r/" + "n" * 99, "resources/configmaps/v1/namespaces/demo/ünï.json"])
def test_long_or_non_ascii_paths_are_left_to_tarfile(path):
    from ys1000.repository.repository import _ustar_header

    assert _ustar_header(path, 1, 0) is None


def _tar_of(files: list[tuple[str, bytes]], fmt: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8") as tar:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1764547200, 0o600
            tar.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("resources/a-directory")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)  # not a file: skipped, as tarfile's isfile() skipped it
    return buf.getvalue()


FILES = [
    ("resources/configmaps/v1/namespaces/demo/cm-1.json", b'{"a":1}'),
    ("resources/secrets/v1/namespaces/demo/" + "s" * 120 + ".json", b""),  # long: a PAX path
    ("resources/configmaps/v1/namespaces/démo/ünï.json", "é".encode() * 700),  # non-ASCII, > 1 block
    ("r/" + "n" * 98, b"x" * 512),  # the full ustar name field, an exact block of data
]


@pytest.mark.parametrize("fmt", ["PAX", "USTAR", "GNU"])
def test_archive_reader_reads_what_tarfile_writes(fmt):
    import io
    import tarfile

    from ys1000.repository.repository import _tar_files

    files = FILES if fmt != "USTAR" else FILES[:1] + FILES[3:]  # ustar has no non-ASCII or long names
    raw = _tar_of(files, getattr(tarfile, f"{fmt}_FORMAT"))
    assert list(_tar_files(io.BytesIO(raw).read, "t")) == files
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", encoding="utf-8") as tar:
        want = [(i.name, tar.extractfile(i).read()) for i in tar if i.isfile()]  # type: ignore[union-attr]
    assert want == files


def test_archive_reader_takes_short_reads_and_entries_larger_than_its_buffer():
    """The reader buffers its input: a source that returns a few bytes per call, and a document
    larger than the buffer, read the same."""
    import io
    import tarfile

    from ys1000.repository.repository import _tar_files

    files = [*FILES, ("resources/configmaps/v1/namespaces/demo/big.json", bytes(range(256)) * 3000)]
    raw = io.BytesIO(_tar_of(files, tarfile.PAX_FORMAT))
    assert list(_tar_files(lambda n: raw.read(min(n, 700)), "t")) == files


def test_archive_reader_refuses_damaged_tar_headers():
    import io
    import tarfile

    from ys1000.repository.repository import IntegrityError, _tar_files

    raw = bytearray(_tar_of(FILES[:1], tarfile.PAX_FORMAT))
    bad = bytes(raw[:1] + b"X" + raw[2:])  # a byte of the name changed: the checksum no longer matches
    with pytest.raises(IntegrityError, match="checksum does not match"):
        list(_tar_files(io.BytesIO(bad).read, "archive.tar"))
    with pytest.raises(IntegrityError, match="ends inside an entry"):
        list(_tar_files(io.BytesIO(bytes(raw[:515])).read, "archive.tar"))
    with pytest.raises(IntegrityError, match="ends inside a tar header"):
        list(_tar_files(io.BytesIO(bytes(raw[:100])).read, "archive.tar"))


@pytest.mark.parametrize("bad", [b'{"a":1},{"b":2}', b'{"a":', b""], ids=["two-documents", "truncated", "empty"])
def test_verify_names_a_document_that_is_not_one_json_document(repo, monkeypatch, bad):
    """A bad document among 1,200 is found and named (a stand-in encoder writes it, as a bug in
    the writer would): by the writer's read-back, so the commit fails and nothing is stored; and
    by ``verify`` reading a stored archive that holds one (written without the read-back)."""
    import ys1000.repository.repository as impl
    from ys1000.repository import IntegrityError

    real = impl._ENCODE
    monkeypatch.setattr(
        impl, "_ENCODE", lambda obj: bad if (obj.get("metadata") or {}).get("name") == "cm-0777" else real(obj)
    )
    created = datetime.now(timezone.utc)

    def write(backup_id: str, **kw) -> None:
        with impl.BackupWriter(repo, backup_id, "plan-a", created=created, retain_until=None, **kw) as w:
            for i in range(1200):
                w.add(
                    configmap("demo", f"cm-{i:04d}", k=str(i)),
                    group="",
                    version="v1",
                    resource="configmaps",
                    kind="ConfigMap",
                )
            w.commit(namespaces=["demo"])

    with pytest.raises(IntegrityError, match=r"namespaces/demo/cm-0777\.json' is not a valid JSON object"):
        write("read-back")
    assert not list(repo.store.list(layout.backup_prefix("read-back")))
    write("b", verify=False)
    with pytest.raises(IntegrityError, match=r"namespaces/demo/cm-0777\.json' is not a valid JSON object"):
        repo.verify("b")
    monkeypatch.setattr(impl, "_ENCODE", real)
    write_backup(repo, "good", n=1200)
    assert repo.verify("good").objects == 1200


@pytest.mark.parametrize(
    "doc,why",
    [
        (b'{"a":1},{"b":2}', "trailing characters"),
        (b'{"a":[1,2,,3]}', "malformed"),
        (b'{"a":tru}', "malformed"),
        (b"[1,2]", "Expected `object`"),  # a restore needs an object
        (b"\xff\xfe", "malformed"),
        (b'{"a":"\xff"}', "can't decode byte 0xff"),  # not UTF-8 inside a string: skipping misses it
        (b"", "truncated"),
    ],
    ids=["two-objects", "bad-array", "bad-literal", "array", "not-utf8", "not-utf8-in-string", "empty"],
)
def test_verify_refuses_documents_that_are_not_one_json_object(doc, why):
    """Verify checks each document's syntax without building it: what a restore could not parse,
    it refuses, naming the document."""
    from ys1000.repository import IntegrityError
    from ys1000.repository.repository import _check_document

    with pytest.raises(IntegrityError, match=rf"'p/d\.json' is not a valid JSON object: .*{re.escape(why)}"):
        _check_document("p/d.json", doc)
    _check_document("p/d.json", b' {"a": [1, 2], "b": {"c": "\xc3\xa9"}} ')  # whitespace around one object is fine


@pytest.mark.parametrize(
    "record,message",
    [(b"0 path=x\n", "PAX header is malformed"), (b"13 size=-1\n", "invalid size"), (b"11 size=z\n", "invalid size")],
)
def test_archive_reader_refuses_malformed_pax_headers(record, message):
    """A zero-length record would never advance the parser; a negative size would read the rest."""
    import io
    import tarfile

    from ys1000.repository.repository import IntegrityError, _tar_files

    def block(kind: bytes, size: int, name: bytes = b"x") -> bytes:
        info = tarfile.TarInfo(name.decode())
        info.size, info.type = size, kind
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")

    pax = record + b"\0" * (-len(record) % 512)
    raw = block(tarfile.XHDTYPE, len(record), b"pax") + pax + block(tarfile.REGTYPE, 1) + b"a" + b"\0" * 511
    with pytest.raises(IntegrityError, match=message):
        list(_tar_files(io.BytesIO(raw + bytes(1024)).read, "archive.tar"))


def test_index_lines_read_fast_and_tolerant_alike():
    """An index chunk is decoded straight into entries; a line that path refuses (a null group,
    a size as text: tolerated before) goes through the tolerant one, and a bad line is named."""
    import io

    from ys1000.repository import IntegrityError
    from ys1000.repository.manifest import IndexEntry
    from ys1000.repository.repository import Repository

    entries = [
        IndexEntry("", "v1", "ConfigMap", "configmaps", "demo", f"cm-{i}", i, f"p/cm-{i}.json", member=0)
        for i in range(5)
    ] + [IndexEntry("apps", "v1", "Deployment", "deployments", None, "d", 3, "p/d.json", False, "why", 512)]
    lines = [json.dumps(e.to_json()).encode() for e in entries]

    def read(raw: list[bytes]) -> list[IndexEntry]:
        return list(Repository._index_entries(io.BytesIO(gzip.compress(b"\n".join(raw) + b"\n")), "index"))

    assert read(lines) == entries
    tolerated = json.dumps(entries[0].to_json() | {"group": None, "size": "0"}).encode()
    assert read([tolerated, *lines[1:]]) == entries
    with pytest.raises(IntegrityError, match="'index' line 3 is not a valid index entry"):
        read([*lines[:2], lines[2] + b"," + lines[3], *lines[4:]])  # two entries on one line
    with pytest.raises(IntegrityError, match="'index' line 2 is not a valid index entry"):
        read([lines[0], b'{"version": "v1"}', *lines[2:]])
