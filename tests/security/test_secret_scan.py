"""The planted-secret scanner (``secret_scan``) proven on each kind of place it covers: a value
deliberately leaked into a file deep in a directory tree, a member of a gzip'd tar, a SQLite text
column and a compressed blob, an S3 object, an HTTP body — found, with where; the same places
without it — nothing."""

from __future__ import annotations

import base64
import gzip
import io
import json
import sqlite3
import tarfile
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from security.secret_scan import Blob, Bucket, Files, Sqlite, find, needles


@pytest.fixture
def value() -> bytes:
    return f"planted-{uuid.uuid4().hex}".encode()


def test_needles_are_the_value_and_its_base64(value):
    raw, b64, *shifted = needles(value)
    assert raw == value and len(shifted) == 2
    assert base64.b64encode(value).startswith(b64) and base64.b64encode(value + b"tail").startswith(b64)
    for prefix in (b"a", b"ab", b"abc"):  # the value inside a longer base64'd document, any alignment
        encoded = base64.b64encode(prefix + value + b"tail")
        assert any(n in encoded for n in (b64, *shifted)), prefix


def test_a_file_in_a_directory_tree(tmp_path, value):
    logs = tmp_path / "logs" / "dag_id=d" / "run_id=r" / "task_id=t"
    logs.mkdir(parents=True)
    (logs / "attempt=1.log").write_text('{"event": "capture done"}\n')
    (tmp_path / "logs" / "scheduler.log").write_text("started\n")
    assert find(value, [Files(tmp_path)]) == []

    leaked = logs / "attempt=2.log"
    leaked.write_text(json.dumps({"event": f"login with {value.decode()}"}) + "\n")
    b64_leak = tmp_path / "logs" / "secret.yaml"
    b64_leak.write_text(f"data:\n  password: {base64.b64encode(value).decode()}\n")
    assert find(value, [Files(tmp_path)]) == sorted([str(leaked), str(b64_leak)])
    assert find(value, [Files(leaked)]) == [str(leaked)]


def test_a_member_of_a_gzipped_tar(tmp_path, value):
    def archive(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    clean = tmp_path / "clean.tar.gz"
    clean.write_bytes(archive({"config/clusters.yaml": b"source: {}\n", "airflow/tasks/a.log": b"ok\n"}))
    bundle = tmp_path / "bundle.tar.gz"
    # compressed, the value is not in the file's bytes: only unpacking finds it
    bundle.write_bytes(archive({"config/clusters.yaml": b"source: {}\n", "airflow/tasks/b.log": b"x " + value}))
    assert value not in bundle.read_bytes()
    assert find(value, [Files(clean)]) == []
    assert find(value, [Files(bundle)]) == [f"{bundle}!airflow/tasks/b.log"]
    # a gzip'd file (not a tar) is decompressed too
    (tmp_path / "rotated.log.gz").write_bytes(gzip.compress(b"line " + value))
    assert f"{tmp_path / 'rotated.log.gz'}!gunzip" in find(value, [Files(tmp_path)])


def test_a_sqlite_text_column_and_a_compressed_blob(tmp_path, value):
    path = tmp_path / "airflow.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE xcom (dag_id TEXT, key TEXT, value JSON)")
    db.execute("CREATE TABLE serialized_dag (dag_id TEXT, data_compressed BLOB)")
    db.execute("INSERT INTO xcom VALUES ('d', 'return_value', ?)", (json.dumps({"backup_id": "b1"}),))
    db.execute("INSERT INTO serialized_dag VALUES ('d', ?)", (zlib.compress(b'{"tasks": []}'),))
    db.commit()
    assert find(value, [Sqlite(path)]) == []

    db.execute("INSERT INTO xcom VALUES ('d', 'leak', ?)", (json.dumps({"password": value.decode()}),))
    db.execute("INSERT INTO serialized_dag VALUES ('e', ?)", (zlib.compress(b'{"env": "' + value + b'"}'),))
    db.commit()
    db.close()
    assert find(value, [Sqlite(path)]) == [
        f"{path}:xcom.value[rowid=2]",
        f"{path}:serialized_dag.data_compressed[rowid=2]",
    ]


def test_a_bucket_object(s3, bucket, value):
    client = s3.client()
    client.put_object(Bucket=bucket, Key="repo/catalog/b1.json", Body=b'{"backup_id": "b1"}')
    client.put_object(Bucket=bucket, Key="repo/data/ab/cd", Body=b"\x00encrypted\x01")
    assert find(value, [Bucket(client, bucket)]) == []
    client.put_object(Bucket=bucket, Key="repo/resources/secret.json", Body=b'{"data": "' + value + b'"}')
    assert find(value, [Bucket(client, bucket)]) == [f"s3://{bucket}/repo/resources/secret.json"]


def test_an_http_body(value):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><pre>password: " + (value if self.path == "/leak" else b"***") + b"</pre></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        pages = [Blob(f"{base}{p}", httpx.get(f"{base}{p}").content) for p in ("/masked", "/leak")]
    finally:
        server.shutdown()
        server.server_close()
    assert find(value, pages) == [f"{base}/leak"]
