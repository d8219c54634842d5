"""ys1000: Kubernetes application backup, restore and migration; the engine behind the Airflow DAGs."""

__version__ = "0.1.0"
