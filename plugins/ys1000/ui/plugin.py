"""The Airflow plugin: the ys1000 pages mounted in the api-server and linked from its menu.

Registered through the ``airflow.plugins`` entry point (``ys1000 = "ys1000.ui.plugin:Ys1000Plugin"``
in pyproject.toml). Every Airflow process loads plugins, so this module stays cheap: the FastAPI
app is built on its first request (``LazyApp``), only in the api-server.

- ``fastapi_apps``: the app under ``/ys1000`` (``app.py`` documents its URLs and auth).
- ``external_views``: "Backup jobs", "Protection", "Backup catalog" and "Approvals" in the navigation's Plugins menu, and a "ys1000" tab on
  DAG-run pages (``/ys1000/jobs/{DAG_ID}/{RUN_ID}`` embedded in the run page).

Why the navigation entries open full pages (no ``url_route``) instead of being embedded: Airflow
3.3 embeds ``url_route`` views in an iframe sandboxed with ``allow-scripts allow-same-origin
allow-forms allow-downloads`` only, so an embedded page can neither navigate the top window nor
open a tab: its links to Airflow's run and log views, and the jump to the triggered restore run,
would be dead. As full pages (opened from the menu in a new tab) they work; the run-page tab is
embedded (there the pages hide their links into Airflow: the user is on that run already).
They are not ``nav_top_level``: Airflow 3.3.2 renders a top-level external link as a
``<button href=...>``, which does not navigate.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/ys1000"


class LazyApp:
    """An ASGI app that builds the real one (``ys1000.ui.app.create_app``) when first called."""

    def __init__(self, prefix: str = URL_PREFIX) -> None:
        self.prefix = prefix
        self._app: Any = None

    @property
    def app(self):
        if self._app is None:
            from ys1000.ui.app import create_app

            self._app = create_app(prefix=self.prefix)
        return self._app

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"ys1000.ui.app (mounted at {self.prefix})"


class Ys1000Plugin(AirflowPlugin):
    name = "ys1000"
    fastapi_apps = [{"app": LazyApp(URL_PREFIX), "url_prefix": URL_PREFIX, "name": "ys1000"}]
    external_views = [
        {
            "name": "Backup jobs",
            "href": f"{URL_PREFIX}/jobs",
            "destination": "nav",
            "icon": f"{URL_PREFIX}/static/jobs.svg",
        },
        {
            "name": "Protection",
            "href": f"{URL_PREFIX}/protection",
            "destination": "nav",
            "icon": f"{URL_PREFIX}/static/protection.svg",
        },
        {
            "name": "Backup catalog",
            "href": f"{URL_PREFIX}/repositories",
            "destination": "nav",
            "icon": f"{URL_PREFIX}/static/catalog.svg",
        },
        {
            "name": "Approvals",
            "href": f"{URL_PREFIX}/approvals",
            "destination": "nav",
            "icon": f"{URL_PREFIX}/static/approvals.svg",
        },
        {
            "name": "ys1000",
            "href": f"{URL_PREFIX}/jobs/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": "ys1000-run",
            "destination": "dag_run",
        },
    ]
