"""Job history through the Airflow REST API (``/api/v2``), for the daily report.

Why the REST API: in Airflow 3 task code has no metadata-DB access (the task runner blocks the
ORM), and the Task SDK's accessors only reach the running task's own DAG run (``get_dr_count``,
``get_dagrun_state``...), not "every run of every ys1000 DAG in the last 24 h". The api-server's
public API lists runs across DAGs (``GET /api/v2/dags/~/dagRuns?dag_id_prefix_pattern=ys1000_``),
task instances, XCom entries and task logs, with Airflow's own authentication.

The report task reaches it through the Airflow connection ``ys1000_airflow_api`` (conn type
``http``):

- ``host`` = the api-server base URL (``http://airflow-apiserver:8080``; or host + ``port`` +
  ``schema``), ``login``/``password`` = an Airflow user (a token is fetched from ``/auth/token``,
  which the simple and the FAB auth managers both serve), or extra ``{"token": "<JWT>"}``;
- extra ``{"in_process": true}``: serve the same API in-process (the api-server app over the
  local metadata DB) — only where the task can reach the DB, i.e. ``dag.test()`` and tests.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any, Iterator

API = "/api/v2"


class AirflowApiError(RuntimeError):
    pass


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class AirflowApiClient:
    """A small client over ``httpx.Client``-like sessions (``get``/``post`` returning responses)."""

    def __init__(
        self,
        http: Any,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        base_url: str = "",
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._username = username
        self._password = password

    # -- construction
    @classmethod
    def from_connection(cls, conn_id: str) -> "AirflowApiClient":
        from ys1000.airflow.connections import _mask, get_connection

        conn = get_connection(conn_id, "the Airflow REST API (job history for reports)")
        extra = conn.extra_dejson or {}
        if extra.get("in_process"):
            return cls.in_process()
        import httpx

        host = (conn.host or "").rstrip("/")
        if not host:
            raise AirflowApiError(
                f"Airflow connection {conn_id!r} needs host = the api-server URL (e.g. http://airflow-apiserver:8080)"
            )
        if "://" not in host:
            host = f"{conn.schema if conn.schema in ('http', 'https') else 'http'}://{host}"
            if conn.port:
                host += f":{conn.port}"
        if conn.password:
            _mask(conn.password)
        token = extra.get("token")
        if token:
            _mask(token)
        verify = extra.get("verify", True)
        return cls(
            httpx.Client(base_url=host, timeout=float(extra.get("timeout", 30)), verify=verify),
            token=token,
            username=conn.login,
            password=conn.password,
            base_url="",
        )

    @classmethod
    def in_process(cls) -> "AirflowApiClient":
        """The api-server's FastAPI app served in this process (needs the metadata DB)."""
        from airflow.api_fastapi.app import create_app
        from airflow.configuration import conf
        from starlette.testclient import TestClient

        client = TestClient(create_app("core"), base_url="http://ys1000-in-process")
        if conf.getboolean("core", "simple_auth_manager_all_admins", fallback=False):
            return cls(client)
        # the simple auth manager's generated admin password (in-process use only)
        import json
        from pathlib import Path

        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

        try:
            path = Path(SimpleAuthManager.get_generated_password_file())
            users = json.loads(path.read_text()) if path.exists() else {}
        except Exception:
            users = {}
        user, password = next(iter(users.items()), (None, None))
        return cls(client, username=user, password=password)

    # -- HTTP
    def _headers(self) -> dict[str, str]:
        if self._token is None and self._username and self._password:
            r = self.http.post(
                f"{self.base_url}/auth/token", json={"username": self._username, "password": self._password}
            )
            if r.status_code >= 400:
                raise AirflowApiError(f"Airflow API login as {self._username!r} failed: HTTP {r.status_code}")
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        accept: str = "application/json",
        allow_404: bool = False,
    ) -> Any:
        r = self.http.get(f"{self.base_url}{API}{path}", params=params, headers={**self._headers(), "Accept": accept})
        if allow_404 and r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise AirflowApiError(f"GET {API}{path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def pause_dag(self, dag_id: str, paused: bool = True) -> None:
        """Pause (or resume) a DAG's schedule — the user needs permission to edit the DAG."""
        r = self.http.patch(
            f"{self.base_url}{API}/dags/{_q(dag_id)}", json={"is_paused": paused}, headers=self._headers()
        )
        if r.status_code >= 400:
            raise AirflowApiError(f"PATCH {API}/dags/{dag_id}: HTTP {r.status_code}: {r.text[:300]}")

    # -- queries
    def dag_runs(self, *, prefix: str = "ys1000_", page: int = 100, **filters: Any) -> Iterator[dict]:
        """Runs of every DAG whose id starts with ``prefix`` (filters: ``run_after_gte``,
        ``end_date_gte``, ``state``... as the API names them; datetimes as ISO text)."""
        offset = 0
        params = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in filters.items()}
        while True:
            data = self.get(
                "/dags/~/dagRuns",
                {"dag_id_prefix_pattern": prefix, "limit": page, "offset": offset, "order_by": "id", **params},
            )
            runs = data.get("dag_runs", [])
            yield from runs
            offset += len(runs)
            if not runs or offset >= int(data.get("total_entries") or 0):
                return

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        data = self.get(f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", {"limit": 1000})
        return data.get("task_instances", [])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        data = self.get(
            f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/xcomEntries/{_q(key)}",
            {"deserialize": "true"},
            allow_404=True,
        )
        return None if data is None else data.get("value")

    def log_tail(self, dag_id: str, run_id: str, task_id: str, try_number: int, lines: int = 8) -> str | None:
        """The last ``lines`` log events of a task try (errors preferred), or None if unreadable."""
        try:
            data = self.get(
                f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/logs/{try_number}",
                {"full_content": "true"},
            )
        except AirflowApiError:
            return None
        content = data.get("content") if isinstance(data, dict) else None
        events: list[dict] = []
        if isinstance(content, list):
            events = [e if isinstance(e, dict) else {"event": str(e)} for e in content]
        elif isinstance(content, str):
            events = [{"event": line} for line in content.splitlines()]
        texts = [
            str(e.get("event", ""))
            for e in events
            if e.get("event")
            and not str(e.get("event")).startswith("::")
            and "Could not read served logs" not in str(e.get("event"))
            and "No logs found" not in str(e.get("event"))
        ]
        errors = [
            str(e.get("event")) + (f": {e['error_detail']}" if e.get("error_detail") else "")
            for e in events
            if str(e.get("level", "")).lower() in ("error", "critical")
        ]
        picked = errors[-lines:] if errors else texts[-lines:]
        return "\n".join(picked) or None
