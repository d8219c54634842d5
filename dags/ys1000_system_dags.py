"""ys1000's own DAGs: ``ys1000_report`` (daily job report by e-mail / Work WeChat, from
config/reports.yaml) and ``ys1000_self_backup`` (the product's own state to a repository, from
config/self_backup.yaml). YAML only at parse time."""

from ys1000.airflow.system_dags import register

register(globals())
