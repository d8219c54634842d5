"""Connection test: distinct, clear errors naming the failing step."""

from __future__ import annotations

import pytest

from ys1000.repository import (
    ConnectionTestError,
    RepositoryConfig,
    check_connection,
    make_store,
)
from ys1000_dev.ports import free_port


def _config(s3, **over) -> RepositoryConfig:
    kw = dict(
        type="s3",
        bucket=s3.bucket,
        prefix="conn-test",
        region=s3.region,
        endpoint_url=s3.endpoint_url,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        max_attempts=1,
        connect_timeout=2,
    )
    kw.update(over)
    return RepositoryConfig(**kw)


def _fail(config) -> ConnectionTestError:
    with pytest.raises(ConnectionTestError) as info:
        check_connection(make_store(config))
    return info.value


def test_good_connection_writes_reads_and_deletes_probe(s3):
    report = check_connection(make_store(_config(s3)))
    assert report.ok and not report.object_lock
    assert list(report.steps) == ["write probe", "read probe", "delete probe", "object lock"]
    left = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="conn-test/").get("Contents", [])
    assert left == []


def test_object_lock_bucket_is_reported(s3, locked_bucket):
    report = check_connection(make_store(_config(s3, bucket=locked_bucket)))
    assert report.object_lock and report.warnings == []


def test_local_directory(tmp_path):
    report = check_connection(make_store(RepositoryConfig(type="local", path=str(tmp_path / "r"))))
    assert report.ok


def test_distinct_errors(s3):
    port = free_port()  # nothing listens there
    errors = {
        "unreachable": _fail(_config(s3, endpoint_url=f"http://127.0.0.1:{port}")),
        "bad_secret_key": _fail(_config(s3, secret_key="x" * 40)),
        "unknown_access_key": _fail(_config(s3, access_key="AKIANOTAREALKEY00000")),
        "no_bucket": _fail(_config(s3, bucket="no-such-bucket-here")),
    }
    for kind, err in errors.items():
        assert err.kind == kind, (kind, str(err))
        assert err.step == "write probe"
        assert "write probe" in str(err)
    assert f"127.0.0.1:{port}" in str(errors["unreachable"])
    assert "unreachable" in str(errors["unreachable"])
    assert "no-such-bucket-here" in str(errors["no_bucket"]) and "does not exist" in str(errors["no_bucket"])
    assert "secret key is wrong" in str(errors["bad_secret_key"])
    assert "access key" in str(errors["unknown_access_key"]) and "not known" in str(errors["unknown_access_key"])
    assert len({str(e) for e in errors.values()}) == 4
    # no secret ever appears in a message
    for err in errors.values():
        assert s3.secret_key not in str(err) and "x" * 40 not in str(err)
        assert "AKIANOTAREALKEY00000" not in str(err)


def test_config_hides_secret():
    cfg = RepositoryConfig(type="s3", bucket="b", secret_key="very-secret-value")
    assert "very-secret-value" not in repr(cfg) and "very-secret-value" not in str(cfg.model_dump())
    with pytest.raises(ValueError, match="bucket"):
        RepositoryConfig(type="s3")
    with pytest.raises(ValueError, match="path"):
        RepositoryConfig(type="local")


def test_opening_a_repository_classifies_store_errors_too(s3):
    from ys1000.repository import StorageError, open_repository

    with pytest.raises(StorageError) as info:
        open_repository(_config(s3, secret_key="y" * 40), "pw")
    assert info.value.kind == "bad_secret_key" and "repo.json" in str(info.value)
    with pytest.raises(StorageError) as info:
        open_repository(_config(s3, bucket="missing-bucket-for-open"), "pw")
    assert info.value.kind == "no_bucket"
