"""The Airflow side of ys1000: operators, connection resolution, the DAG factory, pools.

This package (and ``dags/``) is the only place that imports Airflow; the engine packages
(``ys1000.backup``, ``ys1000.restore``, ``ys1000.repository``, ``ys1000.kube``) stay free of it.
Submodules import Airflow providers lazily, so building DAGs at parse time stays cheap.

Modules use absolute imports only: Airflow's plugin loader may import files under ``plugins/``
by their stem, and a relative import would fail there.
"""
