"""Self-backup (F29): the product's own state (Airflow metadata DB, ``config/``, connections and
variables) encrypted into a repository under ``self-backups/``, and its restore onto a fresh
install (``ys1000 self-restore``). ``archive`` (DB dumps, the config tarball, encrypted parts) has no Airflow import; ``airflow_side`` runs in the
``ys1000_self_backup`` DAG and in the restore command."""
