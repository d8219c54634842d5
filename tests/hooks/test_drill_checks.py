"""A drill's sql and http checks: Jobs of the product's probe (``ys1000.drill.probe``) in the
namespace, with the database credentials from a Secret there, against real MariaDB and
PostgreSQL servers and a loopback HTTP server (in the sandbox a Service name does not resolve,
so the checks name the server's ``host``, as a check of a database outside the cluster would)."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ys1000.drill.checks import run_check
from ys1000.kube import Kube

from test_quiesce import mysql_conn


@pytest.fixture
def http_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/" else 503)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the kernel's, owned at once
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _secret(source, ns: str, name: str, user: str, password: str) -> None:
    b64 = lambda v: base64.b64encode(v.encode()).decode()  # noqa: E731
    source.core.create_namespaced_secret(
        ns, {"metadata": {"name": name}, "data": {"username": b64(user), "password": b64(password)}}
    )


def test_sql_and_http_checks(source, make_namespace, mariadb, postgres, http_server):
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    with mysql_conn(mariadb) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS wp_posts")
        cur.execute("CREATE TABLE wp_posts (ID INT PRIMARY KEY, post_title VARCHAR(64))")
        cur.execute("INSERT INTO wp_posts VALUES (1, 'Hello world'), (2, 'About')")
    _secret(source, ns, "mysql-pass", mariadb.user, mariadb.password)
    _secret(source, ns, "pg-pass", postgres.user, postgres.password)
    _secret(source, ns, "wrong-pass", mariadb.user, "not-the-password")
    mapping = {ns: ns}

    def check(**fields):
        return run_check(kube, {"name": "c", "namespace": ns, **fields}, mapping, timeout=120)

    mysql = {"type": "sql", "engine": "mariadb", "host": mariadb.host, "port": mariadb.port, "database": "app"}
    ok = check(**mysql, query="SELECT ID FROM wp_posts", min_rows=2, secret={"name": "mysql-pass"})
    assert (ok["ok"], ok["detail"]) == (True, "'SELECT ID FROM wp_posts' returned 2 row(s)")
    few = check(**mysql, query="SELECT ID FROM wp_posts", min_rows=3, secret={"name": "mysql-pass"})
    assert (few["ok"], few["detail"]) == (False, "'SELECT ID FROM wp_posts' returned 2 row(s), expected at least 3")
    denied = check(**mysql, query="SELECT 1", secret={"name": "wrong-pass"})
    assert denied["ok"] is False and "Access denied" in denied["detail"] and denied["seconds"] < 60

    pg = check(
        type="sql",
        engine="postgresql",
        host=postgres.host,
        port=postgres.port,
        database="postgres",
        query="SELECT datname FROM pg_database",
        min_rows=1,
        secret={"name": "pg-pass"},
    )
    assert pg["ok"] is True and pg["detail"].startswith("'SELECT datname FROM pg_database' returned ")

    up = check(type="http", host="127.0.0.1", port=http_server, path="/")
    assert (up["ok"], up["detail"]) == (True, f"GET http://127.0.0.1:{http_server}/ → 200")
    down = check(type="http", host="127.0.0.1", port=http_server, path="/health")
    assert (down["ok"], down["detail"]) == (False, f"GET http://127.0.0.1:{http_server}/health → 503, expected 2xx")
    # the password never appears in the Job's spec: it is read from the Secret in the pod
    assert not [j for j in source.batch.list_namespaced_job(ns).items if mariadb.password in str(j.to_dict())]
