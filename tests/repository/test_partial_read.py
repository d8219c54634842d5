"""Reading a few namespaces out of a large backup fetches their gzip members only (issue 17:
"restore of one namespace in time proportional to that namespace, not to the backup").

The archive's gzip members end at run boundaries (a run: one type's objects in one namespace)
once they hold 256 KiB of tar, sealed in 64 KiB segments; every index line has its member's
offset. A selection that covers less than half of the archive is read with ranged GETs of its
members' segments; the rest is never downloaded. The index's gzip members end with the archive's,
and the index map (its own object, checksummed in the manifest) says where each lies, its sha256
and its namespaces: a read that names its namespaces fetches only their index members too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from ys1000.repository import ChecksumError, DecryptionError, IntegrityError, Repository, layout
from ys1000.repository.crypto import HEADER_SIZE, TAG_SIZE, open_decrypting

NAMESPACES_200 = [f"team-{i:03d}" for i in range(200)]
NAMESPACES = NAMESPACES_200[:100]
KINDS = [
    ("", "v1", "configmaps", "ConfigMap"),
    ("", "v1", "secrets", "Secret"),
    ("apps", "v1", "deployments", "Deployment"),
]
PER_KIND = 8


class CountingStore:
    """The repository's store, counting what is read (whole objects and ranges)."""

    def __init__(self, inner):
        self.inner = inner
        self.opened: list[str] = []
        self.ranged = 0  # of the archive
        self.index_ranged = 0

    def open(self, key):
        self.opened.append(key)
        return self.inner.open(key)

    def get(self, key):
        self.opened.append(key)
        return self.inner.get(key)

    def get_range(self, key, start, end):
        data = self.inner.get_range(key, start, end)
        if key.endswith(layout.INDEX_NAME):
            self.index_ranged += len(data)
        else:
            self.ranged += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _doc(kind: str, group: str, ns: str, name: str) -> dict:
    # incompressible filler (≈ 2 KiB compressed): the archive spans many segments, like a real one
    filler = "".join(hashlib.sha256(f"{ns}/{kind}/{name}/{k}".encode()).hexdigest() for k in range(64))
    return {
        "apiVersion": f"{group}/v1" if group else "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "data": {"blob": filler},
    }


def _backup(repo: Repository, bid: str, namespaces: list[str] = NAMESPACES) -> None:
    """Type by type, each type's objects in namespace order — the order capture writes."""
    with repo.begin_backup(bid, "plan-a") as w:
        for group, version, resource, kind in KINDS:
            for ns in namespaces:
                for i in range(PER_KIND):
                    w.add(
                        _doc(kind, group, ns, f"{resource}-{i}"),
                        group=group,
                        version=version,
                        resource=resource,
                        kind=kind,
                    )
        w.add(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-007"}},
            group="",
            version="v1",
            resource="namespaces",
            kind="Namespace",
        )
        w.commit(cluster_name="source", namespaces=namespaces)


@pytest.fixture
def counted(repo):
    _backup(repo, "bk-many")
    store = CountingStore(repo.store)
    return Repository(store, repo.key, repo.config), store


def _in_team_07(e) -> bool:
    return e.namespace == "team-007" or (e.kind == "Namespace" and e.name == "team-007")


def test_one_namespace_is_read_from_its_members_only(counted, repo):
    reader, store = counted
    archive = reader.manifest("bk-many").archive
    want = [(e, d) for e, d in repo.iter_documents("bk-many") if _in_team_07(e)]
    got = list(reader.iter_documents("bk-many", select=_in_team_07))
    # the same entries and the same bytes, in archive order
    assert [(e.path, d) for e, d in got] == [(e.path, d) for e, d in want]
    assert len(got) == len(KINDS) * PER_KIND + 1
    # the archive was never downloaded whole: per run of that namespace (4), its member and at
    # most two segments more
    assert layout.archive_key("bk-many") not in store.opened
    entries = list(repo.read_index("bk-many"))
    starts = sorted({e.member for e in entries})
    ends = dict(zip(starts, [*starts[1:], archive.size], strict=True))
    needed = {e.member for e, _ in got}
    assert store.ranged <= sum(ends[m] - m for m in needed) + len(needed) * 2 * ((64 << 10) + TAG_SIZE) + HEADER_SIZE
    assert store.ranged < archive.size / 2, (store.ranged, archive.size)


def test_what_one_namespace_costs_does_not_grow_with_the_backup(repo):
    """The same namespace out of a backup of 25 and of 200 namespaces: 8 times the archive,
    about the same bytes fetched."""
    fetched, sizes = [], []
    for bid, count in (("bk-25", 25), ("bk-200", 200)):
        _backup(repo, bid, NAMESPACES_200[:count])
        store = CountingStore(repo.store)
        docs = list(Repository(store, repo.key, repo.config).iter_documents(bid, select=_in_team_07))
        assert len(docs) == len(KINDS) * PER_KIND + 1
        fetched.append(store.ranged)
        sizes.append(repo.manifest(bid).archive.size)
    assert sizes[1] > 7 * sizes[0]
    assert fetched[1] < 1.5 * fetched[0], (fetched, sizes)


def test_the_archive_is_still_one_tar_gz_with_every_object(repo):
    _backup(repo, "bk-whole")
    m = repo.manifest("bk-whole")
    plain = open_decrypting(
        io.BytesIO(repo.store.get(m.archive.key)), repo.key.archive_key, repo.archive_aad("bk-whole")
    )
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=plain), mode="r|") as tar:
        names = [i.name for i in tar]
    assert names == [e.path for e in repo.read_index("bk-whole")]
    # members end at run boundaries: a run (one type in one namespace) lies in one member
    runs: dict[tuple, set[int]] = {}
    for e in repo.read_index("bk-whole"):
        runs.setdefault((e.group, e.resource, e.namespace), set()).add(e.member)
    assert all(len(m) == 1 for m in runs.values())
    assert len({m for ms in runs.values() for m in ms}) > 10
    assert repo.verify("bk-whole").objects == len(names)


def test_a_damaged_segment_fails_the_read_that_needs_it_and_verify(counted, repo):
    reader, _ = counted
    entries = list(repo.read_index("bk-many"))
    m = repo.manifest("bk-many")
    key = m.archive.key
    original = repo.store.get(key)
    seg = (64 << 10) + TAG_SIZE
    team07 = min(e.member for e in entries if e.namespace == "team-007")
    inside = HEADER_SIZE + (team07 // (64 << 10)) * seg + 10
    outside = len(original) - 10  # the last segment: the final member (cluster-scoped Namespace)
    for offset in (inside, outside):
        data = bytearray(original)
        data[offset] ^= 1
        repo.store.put(key, bytes(data))
        with pytest.raises(ChecksumError):
            repo.verify("bk-many")
        team07_docs = lambda: list(reader.iter_documents("bk-many", select=lambda e: e.namespace == "team-007"))  # noqa: E731
        if offset == inside:
            with pytest.raises(DecryptionError, match=r"segment \d+ failed authentication"):
                team07_docs()
        else:  # not in what is read: the namespace's documents are whole and authenticated
            assert len(team07_docs()) == len(KINDS) * PER_KIND
    repo.store.put(key, original)


def test_a_selection_of_most_of_the_backup_reads_the_whole_verified_archive(counted):
    reader, store = counted
    got = list(reader.iter_documents("bk-many", select=lambda e: e.namespace != "team-000"))
    assert len(got) == len(KINDS) * PER_KIND * (len(NAMESPACES) - 1) + 1
    assert layout.archive_key("bk-many") in store.opened and store.ranged == 0


def test_a_backup_without_member_offsets_is_read_whole(repo):
    """Backups written before the offsets existed: same documents, through the full read."""
    _backup(repo, "bk-old")
    m = repo.manifest("bk-old")
    lines = [json.loads(x) for x in gzip.decompress(repo.store.get(m.index.key)).splitlines()]
    for line in lines:
        del line["member"]
    body = gzip.compress(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    repo.store.put(m.index.key, body)
    old = m.model_copy(
        update={"index": m.index.model_copy(update={"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})}
    )
    repo.store.put(layout.manifest_key("bk-old"), old.model_dump_json().encode())
    store = CountingStore(repo.store)
    got = list(Repository(store, repo.key, repo.config).iter_documents("bk-old", select=_in_team_07))
    assert len(got) == len(KINDS) * PER_KIND + 1 and all(e.member is None for e, _ in got)
    assert m.archive.key in store.opened and store.ranged == 0


def test_get_resource_fetches_one_member(counted):
    reader, store = counted
    doc = reader.get_resource("bk-many", "deployments.apps", "team-031", "deployments-3")
    assert doc["metadata"] == {"name": "deployments-3", "namespace": "team-031", "labels": {"app": "deployments-3"}}
    assert layout.archive_key("bk-many") not in store.opened
    # its member (≤ 256 KiB of tar, compressed) and at most two segments more
    assert 0 < store.ranged <= (256 << 10) + 2 * ((64 << 10) + TAG_SIZE) + HEADER_SIZE
    assert store.ranged < reader.manifest("bk-many").archive.size / 10
    with pytest.raises(KeyError, match="not in backup"):
        reader.get_resource("bk-many", "deployments.apps", "team-031", "nope")


def test_a_member_too_large_to_hold_is_read_by_streaming_the_archive(repo, monkeypatch):
    """A partial read holds each member in memory; one larger than the limit (a huge run of one
    type in one namespace) sends the read through the streaming whole-archive path."""
    import ys1000.repository.repository as R

    _backup(repo, "bk-huge")
    monkeypatch.setattr(R, "MAX_MEMBER_READ", 1024)
    store = CountingStore(repo.store)
    got = list(Repository(store, repo.key, repo.config).iter_documents("bk-huge", select=_in_team_07))
    assert len(got) == len(KINDS) * PER_KIND + 1
    assert layout.archive_key("bk-huge") in store.opened and store.ranged == 0


def _one_namespace(reader: Repository, bid: str) -> list:
    return list(reader.iter_documents(bid, select=_in_team_07, namespaces=["team-007"]))


def test_one_namespace_reads_only_its_index_members(repo):
    _backup(repo, "bk-200", NAMESPACES_200)
    store = CountingStore(repo.store)
    reader = Repository(store, repo.key, repo.config)
    m = repo.manifest("bk-200")
    want = [(e.path, d) for e, d in repo.iter_documents("bk-200") if _in_team_07(e)]
    got = _one_namespace(reader, "bk-200")
    assert [(e.path, d) for e, d in got] == want and len(want) == len(KINDS) * PER_KIND + 1
    assert m.index.key not in store.opened and m.archive.key not in store.opened
    assert m.index_map is not None and m.index_map.key in store.opened
    # its runs' members (3 types) and the cluster-scoped one, out of dozens
    rows = json.loads(repo.store.get(m.index_map.key))["members"]
    assert len(rows) > 30
    assert 0 < store.index_ranged < m.index.size / 8, (store.index_ranged, m.index.size)
    # the same documents through the whole index (no namespaces promised)
    assert [(e.path, d) for e, d in reader.iter_documents("bk-200", select=_in_team_07)] == want


def test_a_damaged_index_member_or_map_fails_the_read_and_verify(repo):
    _backup(repo, "bk-idx", NAMESPACES_200[:40])
    m = repo.manifest("bk-idx")
    assert m.index_map is not None
    index, index_map = repo.store.get(m.index.key), repo.store.get(m.index_map.key)
    rows = json.loads(index_map)["members"]
    row = next(r for r in rows if "team-007" in r[4])
    damaged = bytearray(index)
    damaged[row[1] + row[2] // 2] ^= 1
    repo.store.put(m.index.key, bytes(damaged))
    with pytest.raises(ChecksumError, match=rf"index.jsonl.gz bytes {row[1]}-{row[1] + row[2]}"):
        _one_namespace(repo, "bk-idx")
    with pytest.raises(ChecksumError, match="index.jsonl.gz"):
        repo.verify("bk-idx")
    repo.store.put(m.index.key, index)
    repo.store.put(m.index_map.key, index_map.replace(b"team-007", b"team-008"))
    with pytest.raises(ChecksumError, match="index-map.json"):
        _one_namespace(repo, "bk-idx")
    repo.store.put(m.index_map.key, index_map)
    assert len(_one_namespace(repo, "bk-idx")) == len(KINDS) * PER_KIND + 1
    assert repo.verify("bk-idx").objects == len(KINDS) * PER_KIND * 40 + 1


def test_verify_proves_the_index_map(repo):
    """A map that leaves a namespace out of a member (a writer bug; its checksum in the manifest
    made to match) would make partial reads skip objects: verify refuses it."""
    _backup(repo, "bk-lie", NAMESPACES_200[:40])
    m = repo.manifest("bk-lie")
    assert m.index_map is not None
    assert any(c.startswith("index map matches the index") for c in repo.verify("bk-lie").checks)
    doc = json.loads(repo.store.get(m.index_map.key))
    row = next(r for r in doc["members"] if "team-007" in r[4])
    row[4].remove("team-007")
    body = json.dumps(doc).encode()
    repo.store.put(m.index_map.key, body)
    lie = m.model_copy(
        update={
            "index_map": m.index_map.model_copy(update={"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
        }
    )
    repo.store.put(layout.manifest_key("bk-lie"), lie.model_dump_json().encode())
    with pytest.raises(IntegrityError, match=r"the index map names namespaces \[.*\], the entries \[.*'team-007'"):
        repo.verify("bk-lie")


def _rewrite_map(repo: Repository, bid: str, doc: dict) -> None:
    """Store a changed index map with its checksum in the manifest made to match."""
    m = repo.manifest(bid)
    assert m.index_map is not None
    body = json.dumps(doc).encode()
    repo.store.put(m.index_map.key, body)
    ref = m.index_map.model_copy(update={"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
    repo.store.put(layout.manifest_key(bid), m.model_copy(update={"index_map": ref}).model_dump_json().encode())


def test_a_map_pointing_a_namespace_at_another_member_fails_reads_and_verify(repo):
    """Rows whose archive offsets are swapped (each index member's checksum still right): a
    read of the namespace would get the other member's entries and restore nothing — instead
    it fails, and so does verify."""
    _backup(repo, "bk-swap", NAMESPACES_200[:40])
    m = repo.manifest("bk-swap")
    assert m.index_map is not None
    doc = json.loads(repo.store.get(m.index_map.key))
    rows = doc["members"]
    i = next(i for i, r in enumerate(rows) if "team-007" in r[4])
    j = i + 1
    rows[i][0], rows[j][0] = rows[j][0], rows[i][0]
    rows[i][4], rows[j][4] = rows[j][4], rows[i][4]
    _rewrite_map(repo, "bk-swap", doc)
    for read in (lambda: repo.verify("bk-swap"), lambda: _one_namespace(repo, "bk-swap")):
        with pytest.raises(IntegrityError, match=r"\(archive offset \d+\) does not follow the one before"):
            read()
    # in order, but one row claims its neighbour's index bytes too (and the other row none):
    # the entries it yields say which archive member they are in
    rows[i][0], rows[j][0] = rows[j][0], rows[i][0]
    rows[i][4], rows[j][4] = sorted({*rows[i][4], *rows[j][4]}), []
    index = repo.store.get(m.index.key)
    rows[i][2] += rows[j][2]
    rows[i][3] = hashlib.sha256(index[rows[i][1] : rows[i][1] + rows[i][2]]).hexdigest()
    rows[j][1], rows[j][2], rows[j][3] = rows[i][1] + rows[i][2], 0, hashlib.sha256(b"").hexdigest()
    _rewrite_map(repo, "bk-swap", doc)
    for read in (lambda: repo.verify("bk-swap"), lambda: _one_namespace(repo, "bk-swap")):
        with pytest.raises(IntegrityError, match=r"is in archive member \d+, not \d+"):
            read()


def test_a_backup_without_an_index_map_reads_its_whole_index(repo):
    """Backups written before the map: the namespaces hint changes nothing but the speed."""
    _backup(repo, "bk-nomap")
    m = repo.manifest("bk-nomap")
    old = m.model_copy(update={"index_map": None})
    repo.store.put(layout.manifest_key("bk-nomap"), old.model_dump_json(exclude={"index_map"}).encode())
    store = CountingStore(repo.store)
    got = _one_namespace(Repository(store, repo.key, repo.config), "bk-nomap")
    assert len(got) == len(KINDS) * PER_KIND + 1
    assert m.index.key in store.opened and store.index_ranged == 0
    assert repo.verify("bk-nomap").objects == len(KINDS) * PER_KIND * len(NAMESPACES) + 1
