"""ys1000: reports invalid plan files as this file's Airflow import error (one message naming
each broken plan file, field and problem). It defines no DAG, so the import error never marks
the plans' DAGs (built by ys1000_dags.py) stale; it parses cleanly once every plan is valid."""

from ys1000.airflow.dagfactory import raise_plan_errors

raise_plan_errors()
