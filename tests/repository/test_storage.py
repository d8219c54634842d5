"""Both object stores behave the same: put/get/open/list/delete/exists."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone

import pytest

from ys1000.repository import LocalStore, ObjectNotFound, S3Store, StorageError


def test_put_get_open_list_delete(store):
    store.put("a/one.bin", b"1")
    big = os.urandom(3 * 1024 * 1024 + 7)
    store.put("a/b/two.bin", io.BytesIO(big))
    store.put("c.json", b"{}")
    assert store.get("a/one.bin") == b"1"
    with store.open("a/b/two.bin") as f:
        assert f.read() == big
    listed = list(store.list("a/"))
    assert [o.key for o in listed] == ["a/b/two.bin", "a/one.bin"]
    assert [o.size for o in listed] == [len(big), 1]
    now = datetime.now(timezone.utc)
    assert all(abs(o.last_modified - now) < timedelta(minutes=5) for o in listed)
    assert store.exists("c.json") and not store.exists("nope.json")
    store.put("a/one.bin", b"replaced")
    assert store.get("a/one.bin") == b"replaced"
    store.delete("a/one.bin")
    store.delete("a/one.bin")  # missing is fine
    assert not store.exists("a/one.bin")
    with pytest.raises(ObjectNotFound):
        store.get("a/one.bin")
    with pytest.raises(ObjectNotFound):
        store.open("missing")
    assert [o.key for o in store.list()] == ["a/b/two.bin", "c.json"]
    assert not store.object_lock_enabled()


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./x"])
def test_bad_keys_are_refused(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_local_store_leaves_no_partial_object(tmp_path):
    store = LocalStore(tmp_path)

    class Boom(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise OSError("disk on fire")

    with pytest.raises(StorageError, match="disk on fire"):
        store.put("x/obj", Boom())
    assert not store.exists("x/obj")
    assert list(store.list()) == []
    assert [p.name for p in (tmp_path / "x").iterdir()] == []


def test_s3_prefix_isolates_and_listing_paginates(s3, bucket):
    client = s3.client()
    one, other = S3Store(client, bucket, "p1"), S3Store(client, bucket, "p2/")
    other.put("k", b"other")
    for i in range(1005):  # more than one page of list_objects_v2
        client.put_object(Bucket=bucket, Key=f"p1/many/{i:05d}", Body=b"")
    keys = [o.key for o in one.list("many/")]
    assert len(keys) == 1005 and keys[0] == "many/00000" and keys[-1] == "many/01004"
    assert [o.key for o in other.list()] == ["k"]
    assert client.get_object(Bucket=bucket, Key="p2/k")["Body"].read() == b"other"
