"""The ys1000 pages inside the Airflow UI (job monitor, backup catalog, job details).

An Airflow 3 plugin (``ys1000.ui.plugin.Ys1000Plugin``, registered through the ``airflow.plugins``
entry point) mounts a FastAPI app under ``/ys1000`` in the api-server and adds menu entries
(``external_views``) that show its pages inside the Airflow UI. Pages are server-rendered
(Jinja2 templates and a little vanilla JS/CSS in this package): nothing to build at install time.

- ``app``: the FastAPI app, its routes and the authentication/authorization glue (Airflow's own
  JWT cookie/bearer token through ``airflow.api_fastapi.core_api.security.get_user``).
- ``jobs``: ys1000 DAG runs read from the metadata database (runs, task states, XComs).
- ``backups``: repository access for the pages (cached repositories and indexes, masking).
- ``protection``: the protection dashboard (RPO/RTO per plan × namespace).
- ``approvals``: human decisions (approvals) read from the repositories.

Only the api-server imports this package; the engine never does.
"""
