"""Subprocess side of the self-backup test (its own AIRFLOW_HOME, SQLite).

``backup S3_JSON``: a fresh install with connections/variables in its DB, some job history, then
the ys1000_self_backup DAG. ``check``: after ``ys1000 self-restore`` in another fresh home, print
what is there (DAG ids, runs, connections, and whether the restored S3 connection works).
"""

import json
import sys


def backup(s3: dict) -> None:
    from airflow.utils import db

    db.initdb()
    from ys1000.selfbackup.airflow_side import import_connections_and_variables

    import_connections_and_variables(
        {
            "ys1000_s3": {
                "conn_type": "aws",
                "login": s3["access_key"],
                "password": s3["secret_key"],
                "extra": json.dumps({"endpoint_url": s3["endpoint_url"], "region_name": s3["region"]}),
            },
            "ys1000_extra_http": {"conn_type": "http", "host": "example.internal", "password": "planted-conn-pw"},
        },
        {"ys1000_repo_key": s3["key"], "plain_setting": "42"},
    )
    from airflow.dag_processing.dagbag import DagBag
    from airflow.configuration import conf

    from pathlib import Path

    folder = Path(conf.get("core", "dags_folder"))
    bag = DagBag(dag_folder=str(folder), bundle_path=folder)
    assert not bag.import_errors, bag.import_errors
    print("RUN", bag.dags["ys1000_report"].test().state)
    print("RUN", bag.dags["ys1000_self_backup"].test().state)
    print("DAGS", json.dumps(sorted(bag.dag_ids)))


def check() -> None:
    from airflow.models import DagModel, DagRun
    from airflow.utils.session import create_session

    with create_session() as s:
        print("DAGS", json.dumps(sorted(d.dag_id for d in s.query(DagModel).all())))
        print("RUNS", json.dumps(sorted(f"{r.dag_id}/{r.state}" for r in s.query(DagRun).all())))
    from airflow.models import Connection, Variable

    c = Connection.get_connection_from_secrets("ys1000_extra_http")
    print("CONN", c.host, c.password)
    print("VAR", Variable.get("plain_setting"))
    # the restored S3 connection and key Variable work: the restored self-backup DAG runs again
    # through them (tasks resolve connections through Airflow, as in production)
    from pathlib import Path

    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(conf.get("core", "dags_folder"))
    bag = DagBag(dag_folder=str(folder), bundle_path=folder)
    print("RUN", bag.dags["ys1000_self_backup"].test().state)


if __name__ == "__main__":
    if sys.argv[1] == "backup":
        backup(json.loads(sys.argv[2]))
    else:
        check()
