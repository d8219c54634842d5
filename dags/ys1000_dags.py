"""ys1000 DAG factory entry: one Airflow DAG per plan in the ys1000 config directory
($YS1000_CONFIG_DIR, default: the repository's config/). Cheap to parse: YAML only, no network.
Broken plan files are skipped here and reported by ys1000_config_errors.py."""

from ys1000.airflow.dagfactory import register

register(globals())
