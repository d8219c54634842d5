"""Run in a subprocess with its own AIRFLOW_HOME: make ys1000 job history (a backup run whose
commit task returns a summary, a failing backup run with the failure callbacks), then run the
ys1000_report DAG. Argument: the dags folder (holding the DAG files written by the test)."""

import sys

sys.path.insert(0, sys.argv[1])

from airflow.utils import db  # noqa: E402

db.initdb()

import jobs_dags  # noqa: E402
import ys1000_system_dags  # noqa: E402

print("RUN", jobs_dags.ok.test().state)
print("RUN", jobs_dags.broken.test().state)
print("RUN", ys1000_system_dags.ys1000_report.test().state)
