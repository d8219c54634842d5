"""Rewrite a WordPress site URL in its MySQL/MariaDB database (used by rewrite-url.yml).

    python wp_rewrite_url.py --new-url URL [--old-url URL] [--host H] [--port P]
                             [--database wordpress] [--table-prefix wp_]

Credentials from the environment (DB_USER, DB_PASSWORD), never the command line. Sets
``option_value`` of ``siteurl`` and ``home`` in ``<prefix>options`` to the new URL (and, with
``--old-url``, only where it still is the old one, so a second run changes nothing). Prints one
JSON line: ``{"changed": N, "siteurl": ..., "home": ...}``. Needs only PyMySQL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-url", required=True)
    ap.add_argument("--old-url", default=None)
    ap.add_argument("--host", default="mysql")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--database", default="wordpress")
    ap.add_argument("--table-prefix", default="wp_")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_]*", args.table_prefix):
        ap.error(f"--table-prefix {args.table_prefix!r}: letters, digits and _ only")
    new_url = args.new_url.rstrip("/")

    import pymysql

    conn = pymysql.connect(
        host=args.host,
        port=args.port,
        user=os.environ.get("DB_USER", "root"),
        password=os.environ.get("DB_PASSWORD", ""),
        database=args.database,
        connect_timeout=15,
        autocommit=False,
    )
    table = f"{args.table_prefix}options"
    try:
        with conn.cursor() as cur:
            sql = f"UPDATE `{table}` SET option_value = %s WHERE option_name IN ('siteurl', 'home')"
            params = [new_url]
            if args.old_url:
                sql += " AND TRIM(TRAILING '/' FROM option_value) = %s"
                params.append(args.old_url.rstrip("/"))
            changed = cur.execute(sql, params)
            cur.execute(f"SELECT option_name, option_value FROM `{table}` WHERE option_name IN ('siteurl', 'home')")
            now = dict(cur.fetchall())
        conn.commit()
    finally:
        conn.close()
    print(json.dumps({"changed": changed, **now}))
    if now.get("siteurl", "").rstrip("/") != new_url or now.get("home", "").rstrip("/") != new_url:
        print(f"siteurl/home are not {new_url} after the update (old URL given: {args.old_url})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
