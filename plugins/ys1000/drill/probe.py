"""``python -m ys1000.drill.probe``: a drill check run as a Job inside the cluster, next to the
restored application (the mover image has the database drivers), so it reaches the restored
Services the way the application's clients do.

- ``sql``: connect to MySQL/MariaDB (PyMySQL) or PostgreSQL (psycopg) with the credentials in
  ``$YS1000_DB_USER``/``$YS1000_DB_PASSWORD`` (from the restored Secret), run ``--query`` and
  pass when it returns at least ``--min-rows`` rows;
- ``http``: GET ``--url`` and pass on a 2xx status (or ``--expect``).

It prints one JSON line ``{"ys1000": "result", "ok": …, "detail": …}`` and exits 0 on a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def sql(args: argparse.Namespace) -> tuple[bool, str]:
    user, password = os.environ.get("YS1000_DB_USER", ""), os.environ.get("YS1000_DB_PASSWORD", "")
    if args.engine == "postgresql":
        import psycopg

        conn: object = psycopg.connect(
            host=args.host, port=args.port, user=user, password=password, dbname=args.database, connect_timeout=10
        )
    else:
        import pymysql

        conn = pymysql.connect(
            host=args.host, port=args.port, user=user, password=password, database=args.database, connect_timeout=10
        )
    try:
        cur = conn.cursor()  # type: ignore[attr-defined]
        cur.execute(args.query)
        rows = len(cur.fetchall())
    finally:
        conn.close()  # type: ignore[attr-defined]
    ok = rows >= args.min_rows
    return ok, f"{args.query!r} returned {rows} row(s){'' if ok else f', expected at least {args.min_rows}'}"


def http(args: argparse.Namespace) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(args.url, timeout=15) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    ok = str(status).startswith(args.expect.rstrip("x")) if args.expect.endswith("x") else str(status) == args.expect
    return ok, f"GET {args.url} → {status}{'' if ok else f', expected {args.expect}'}"


def _unreachable(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (ConnectionError, urllib.error.URLError)) or any(
        w in text for w in ("can't connect", "could not connect", "connection refused", "timed out")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ys1000.drill.probe")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sql")
    s.add_argument("--engine", choices=["mysql", "mariadb", "postgresql"], required=True)
    s.add_argument("--host", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--database", default=None)
    s.add_argument("--query", required=True)
    s.add_argument("--min-rows", type=int, default=1)
    h = sub.add_parser("http")
    h.add_argument("--url", required=True)
    h.add_argument("--expect", default="2xx", help="status code, or e.g. 2xx")
    p.add_argument("--retry-for", type=float, default=60, help="seconds to retry a refused connection")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.retry_for
    while True:  # a just-ready database may still refuse for a moment
        try:
            ok, detail = sql(args) if args.what == "sql" else http(args)
            break
        except Exception as exc:
            # only "not reachable yet" is worth waiting for; wrong credentials or SQL are not
            if time.monotonic() >= deadline or not _unreachable(exc):
                ok, detail = False, f"{type(exc).__name__}: {exc}"
                break
            time.sleep(2)
    print(json.dumps({"ys1000": "result", "ok": ok, "detail": detail}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
