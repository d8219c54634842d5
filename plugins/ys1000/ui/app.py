"""The ys1000 FastAPI app the plugin mounts in the api-server (default prefix ``/ys1000``).

Authentication is Airflow's own: every route depends on ``current_user``, which runs
``airflow.api_fastapi.core_api.security.get_user`` — the dependency Airflow's public API uses:
a ``Authorization: Bearer <JWT>`` header, else the ``_token`` cookie the Airflow login sets, both
checked by the configured auth manager. Without a valid token, a page request is redirected to
the auth manager's login page (``get_url_login(next_url=...)``, back here afterwards) and a JSON
request (``/ys1000/api/...``) gets 401.

Authorization, through the same auth manager:

- job monitor and job details: only runs of ys1000 DAGs the user may read
  (``get_authorized_dag_ids(method="GET")``);
- protection dashboard: only plans whose backup DAG the user may read (as the catalog);
- approvals: only decisions asked by DAGs whose runs the user may read (the backup DAG of an
  anomaly review, the restore or migration DAG of a restore or cutover);
- a backup's contents (catalog entries, resource list, YAML, restore report, drill evidence): read access to
  runs of the DAG of the backup's plan (``ys1000_backup__<plan>``; the generic ``ys1000_restore``
  DAG when that plan has no DAG any more);
- verify on demand: the right to trigger that DAG (``POST`` on its runs);
- a Secret's values in clear: only with ``reveal=1`` in the URL *and* the right to read
  connections (``is_authorized_connection(method="GET")``: who may see credentials in Airflow
  may see them in backups); each reveal is written to Airflow's audit log (event
  ``ys1000.reveal_secret``);
- Restore: the form posts to Airflow's public API (``POST /api/v2/dags/ys1000_restore/dagRuns``)
  with the user's own session, so Airflow itself checks the right to trigger and the params.

URL shapes (prefix ``/ys1000``)::

    /jobs?kind=&state=&cluster=&plan=&page=&per_page=     job monitor (HTML), newest first, 50 a page
    /api/jobs?...                                         the same as JSON (``next_page``: null on the last)
    /jobs/{dag_id}/{run_id}                               job details (backup: resources; restore: report)
    /protection                                           protection dashboard: RPO/RTO per plan × namespace
    /api/protection                                       the same as JSON (``protection.py`` has the shape)
    /approvals?kind=&decision=&plan=                      human decisions (approvals), newest first
    /api/approvals?...                                    the same as JSON (``approvals.py`` has the fields)
    /repositories                                         repositories
    /repositories/{repo}/backups?plan=                    backup catalog
    /repositories/{repo}/backups/{backup_id}?kind=&namespace=&name=    backup details + resources
    /repositories/{repo}/backups/{backup_id}/resource?gr=&namespace=&name=[&reveal=1]   YAML
    POST /repositories/{repo}/backups/{backup_id}/verify  verify now
    /api/repositories/{repo}/backups/{backup_id}/drills/{drill_id}   a drill's evidence (JSON)
    /restore?repository=&backup=&plan=                    the ys1000_restore trigger form, prefilled

Links into Airflow's own UI: ``/dags/{dag_id}/runs/{run_id}`` (run), and
``/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`` (task instance with its log).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, oauth2_scheme
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles

from ys1000.objectives import AT_RISK
from ys1000.units import human_size

from . import approvals as approvals_mod
from . import jobs as jobs_mod
from . import protection as protection_mod
from .backups import Backups, filter_index, mask_document, to_yaml

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_PREFIX = "/ys1000"
RESOURCE_PAGE = 500  # resources listed per page of a backup


# -- authentication ----------------------------------------------------------------------------


class LoginRequired(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Forbidden(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


async def current_user(
    request: Request,
    oauth_token: str | None = Depends(oauth2_scheme),
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> "BaseUser":
    """Airflow's ``get_user`` (bearer JWT, else the ``_token`` cookie), raising ``LoginRequired``
    instead of its 401/403 so that pages can redirect to the login."""
    try:
        return await get_user(request, oauth_token, bearer)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired(str(exc.detail)) from None
        raise


def _auth_manager():
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def readable_dag_ids(user: "BaseUser") -> set[str]:
    return set(_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def may_dag_runs(user: "BaseUser", dag_id: str, method: str = "GET") -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return _auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


def may_reveal_secrets(user: "BaseUser") -> bool:
    return _auth_manager().is_authorized_connection(method="GET", user=user)


def user_name(user: "BaseUser") -> str:
    try:
        return user.get_name()
    except Exception:  # pragma: no cover
        return str(user)


# -- formatting helpers (Jinja filters) --------------------------------------------------------


def fmt_size(n) -> str:
    return human_size(n, missing="–")


def fmt_time(dt: datetime | None) -> str:
    if not dt:
        return "–"
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(td: timedelta | None) -> str:
    if td is None:
        return "–"
    s = int(td.total_seconds())
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def fmt_seconds(value: float | None) -> str:
    return protection_mod.fmt_seconds(value)


def fmt_iso(value: str | None) -> str:
    """An ISO timestamp (as JSON documents keep them) like ``time``."""
    if not value:
        return "–"
    try:
        return fmt_time(datetime.fromisoformat(value))
    except ValueError:
        return value


def fmt_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _templates():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=fmt_size,
        time=fmt_time,
        duration=fmt_duration,
        seconds=fmt_seconds,
        isotime=fmt_iso,
        tojson_pretty=fmt_json,
        decision=lambda d: approvals_mod.LABELS.get(d, d or "–"),
    )
    return env


class Urls:
    """URLs of this app and of Airflow's UI for one request (honours the mount's root path)."""

    def __init__(self, request: Request, prefix: str):
        root = request.scope.get("root_path", "") or ""
        self.base = root.rstrip("/")  # this app, e.g. "/ys1000"
        self.airflow = self.base[: -len(prefix)] if prefix and self.base.endswith(prefix) else ""

    @staticmethod
    def _q(**params: Any) -> str:
        params = {k: v for k, v in params.items() if v not in (None, "")}
        return ("?" + urlencode(params)) if params else ""

    def static(self, path: str) -> str:
        return f"{self.base}/static/{path}"

    def jobs(self, **params: Any) -> str:
        return f"{self.base}/jobs{self._q(**params)}"

    def job(self, dag_id: str, run_id: str, **params: Any) -> str:
        return f"{self.base}/jobs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}{self._q(**params)}"

    def repositories(self) -> str:
        return f"{self.base}/repositories"

    def protection(self) -> str:
        return f"{self.base}/protection"

    def approvals(self, **params: Any) -> str:
        return f"{self.base}/approvals{self._q(**params)}"

    def drill_evidence(self, repo: str, backup_id: str, drill_id: str) -> str:
        return (
            f"{self.base}/api/repositories/{quote(repo, safe='')}/backups/{quote(backup_id, safe='')}"
            f"/drills/{quote(drill_id, safe='')}"
        )

    def catalog(self, repo: str, **params: Any) -> str:
        return f"{self.base}/repositories/{quote(repo, safe='')}/backups{self._q(**params)}"

    def backup(self, repo: str, backup_id: str, **params: Any) -> str:
        return f"{self.base}/repositories/{quote(repo, safe='')}/backups/{quote(backup_id, safe='')}{self._q(**params)}"

    def verify(self, repo: str, backup_id: str) -> str:
        return self.backup(repo, backup_id) + "/verify"

    def resource(self, repo: str, backup_id: str, entry: Any, reveal: bool = False) -> str:
        return (
            self.backup(repo, backup_id)
            + "/resource"
            + self._q(
                gr=entry.group_resource, namespace=entry.namespace or "", name=entry.name, reveal=1 if reveal else None
            )
        )

    def restore(self, repo: str | None, backup_id: str | None, plan: str | None = None) -> str:
        return f"{self.base}/restore{self._q(repository=repo, backup=backup_id, plan=plan)}"

    def airflow_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def airflow_task(self, dag_id: str, run_id: str, task_id: str) -> str:
        return self.airflow_run(dag_id, run_id) + f"/tasks/{quote(task_id, safe='')}"

    def airflow_dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}"

    def airflow_api(self, path: str) -> str:
        return f"{self.airflow}/api/v2/{path.lstrip('/')}"


# -- the app -----------------------------------------------------------------------------------


def create_app(*, backups: Backups | None = None, prefix: str = DEFAULT_PREFIX) -> FastAPI:
    """The app (mount it at ``prefix``; links to Airflow's UI are computed relative to it)."""
    from sqlalchemy.orm import Session

    # the session Airflow's own routes get (``SessionDep``): one per request, closed after it
    from airflow.api_fastapi.common.db.common import _get_session

    app = FastAPI(title="ys1000", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backups = backups or Backups()
    app.state.prefix = prefix
    env = _templates()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def bk(request: Request) -> Backups:
        return request.app.state.backups

    def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        urls = Urls(request, request.app.state.prefix)
        html = env.get_template(template).render(u=urls, request=request, **ctx)
        return HTMLResponse(html, status_code=status_code)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if "/api/" in request.url.path or request.method != "GET":
            return JSONResponse({"detail": exc.detail}, status_code=401)
        return RedirectResponse(_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if "/api/" in request.url.path:
            return JSONResponse({"detail": exc.detail}, status_code=403)
        return render(request, "error.html", status_code=403, title="Not allowed", message=exc.detail, user=None)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        if "/api/" in request.url.path:
            return JSONResponse({"detail": exc.detail}, status_code=404)
        return render(request, "error.html", status_code=404, title="Not found", message=exc.detail, user=None)

    def session_dep():
        yield from _get_session()

    def config_or_none(b: Backups):
        try:
            return b.config()
        except Exception as exc:  # a broken config must not hide the job history
            log.warning("ys1000 UI: configuration not readable: %s", exc)
            return None

    def require_backup_access(user, b: Backups, plan: str | None) -> None:
        cfg = config_or_none(b)
        dag_id = None
        if plan and cfg is not None and plan in cfg.backup_plans:
            dag_id = cfg.backup_plans[plan].dag_id
        dag_id = dag_id or jobs_mod.GENERIC_RESTORE
        if not may_dag_runs(user, dag_id):
            raise Forbidden(f"you may not read runs of {dag_id}, so not the backups of plan {plan}")

    def repo_error(request: Request, user, repo: str, exc: Exception) -> HTMLResponse:
        from ys1000.repository import BackupNotFound

        request.app.state.backups.forget(repo)
        code = 404 if isinstance(exc, (BackupNotFound, KeyError)) else 502
        log.warning("ys1000 UI: repository %s: %s: %s", repo, type(exc).__name__, exc)
        return render(
            request,
            "error.html",
            status_code=code,
            user=user,
            title=f"Repository {repo}",
            message=f"{type(exc).__name__}: {exc}",
        )

    # -- job monitor
    def _jobs(
        request: Request,
        user,
        session: Session,
        kind: str,
        state: str,
        cluster: str,
        plan: str,
        page: int = 1,
        per_page: int = jobs_mod.PAGE_SIZE,
    ):
        """Config, one page of jobs (one query for the runs, one for their task instances, one for
        their XComs) and whether a next page exists."""
        b = bk(request)
        cfg = config_or_none(b)
        dag_ids = jobs_mod.job_dag_ids(session, readable_dag_ids(user))
        per_page = max(1, min(per_page, jobs_mod.MAX_PAGE_SIZE))
        jobs, more = jobs_mod.page_jobs(
            session,
            dag_ids,
            cfg,
            kind=kind or None,
            state=state or None,
            cluster=cluster or None,
            plan=plan or None,
            limit=per_page,
            offset=(max(1, page) - 1) * per_page,
        )
        return cfg, jobs, more

    @app.get("/", include_in_schema=False)
    def index(request: Request, user=Depends(current_user)) -> Response:
        return RedirectResponse(Urls(request, request.app.state.prefix).jobs(), status_code=303)

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs_page(
        request: Request,
        kind: str = "",
        state: str = "",
        cluster: str = "",
        plan: str = "",
        page: int = 1,
        per_page: int = jobs_mod.PAGE_SIZE,
        user=Depends(current_user),
        session: Session = Depends(session_dep),
    ) -> Response:
        page = max(1, page)
        cfg, jobs, more = _jobs(request, user, session, kind, state, cluster, plan, page, per_page)
        clusters = sorted(cfg.clusters) if cfg is not None else sorted({j.cluster for j in jobs if j.cluster})
        f = {"kind": kind, "state": state, "cluster": cluster, "plan": plan}
        keep = {k: v for k, v in f.items() if v} | ({"per_page": per_page} if per_page != jobs_mod.PAGE_SIZE else {})
        urls = Urls(request, request.app.state.prefix)
        return render(
            request,
            "jobs.html",
            user=user,
            jobs=jobs,
            kinds=jobs_mod.KINDS,
            states=jobs_mod.RUN_STATES,
            clusters=clusters,
            f=f,
            page=page,
            prev_url=urls.jobs(**keep, **({"page": page - 1} if page > 2 else {})) if page > 1 else None,
            next_url=urls.jobs(**keep, page=page + 1) if more else None,
            any_running=any(j.running for j in jobs),
        )

    @app.get("/api/jobs")
    def jobs_json(
        request: Request,
        kind: str = "",
        state: str = "",
        cluster: str = "",
        plan: str = "",
        page: int = 1,
        per_page: int = jobs_mod.PAGE_SIZE,
        user=Depends(current_user),
        session: Session = Depends(session_dep),
    ) -> Response:
        page = max(1, page)
        _, jobs, more = _jobs(request, user, session, kind, state, cluster, plan, page, per_page)
        urls = Urls(request, request.app.state.prefix)
        out = []
        for j in jobs:
            p = j.progress
            out.append(
                {
                    "dag_id": j.dag_id,
                    "run_id": j.run_id,
                    "kind": j.kind,
                    "plan": j.plan,
                    "cluster": j.cluster,
                    "repository": j.repository,
                    "state": j.state,
                    "start": j.start,
                    "end": j.end,
                    "duration_seconds": j.duration.total_seconds() if j.duration is not None else None,
                    "backup_id": j.backup_id,
                    "restore_id": j.restore_id,
                    "progress": {
                        "tasks_done": p.tasks_done,
                        "tasks_total": p.tasks_total,
                        "objects_done": p.objects_done,
                        "objects_total": p.objects_total,
                        "bytes_done": p.bytes_done,
                        "bytes_total": p.bytes_total,
                        "phase": p.phase,
                        "percent": p.percent,
                        "source": p.source,
                    },
                    "links": {
                        "details": urls.job(j.dag_id, j.run_id),
                        "airflow_run": urls.airflow_run(j.dag_id, j.run_id),
                    },
                }
            )
        body = {"jobs": out, "page": page, "next_page": page + 1 if more else None}
        return JSONResponse(json.loads(json.dumps(body, default=str)))

    # -- job details
    @app.get("/jobs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def job_page(
        request: Request,
        dag_id: str,
        run_id: str,
        kind: str = "",
        namespace: str = "",
        name: str = "",
        user=Depends(current_user),
        session: Session = Depends(session_dep),
    ) -> Response:
        if not jobs_mod.is_job_dag(dag_id):
            return render(
                request,
                "error.html",
                status_code=404,
                user=user,
                title="Not a ys1000 job",
                message=f"{dag_id} is not a ys1000 backup, restore or migration DAG.",
            )
        if dag_id not in readable_dag_ids(user):
            raise Forbidden(f"you may not read runs of {dag_id}")
        b = bk(request)
        cfg = config_or_none(b)
        job = jobs_mod.get_job(session, dag_id, run_id, cfg)
        if job is None:
            raise NotFound(f"run {run_id} of {dag_id} does not exist")
        ctx: dict[str, Any] = {
            "user": user,
            "job": job,
            "manifest": None,
            "resources": None,
            "report": None,
            "repo_error": None,
            "f": {"kind": kind, "namespace": namespace, "name": name},
        }
        if job.repository and job.backup_id and job.kind in ("backup", "migration"):
            try:
                ctx.update(_backup_context(b, job.repository, job.backup_id, kind, namespace, name))
            except Exception as exc:
                b.forget(job.repository)
                ctx["repo_error"] = f"{type(exc).__name__}: {exc}"
        if job.repository and job.restore_id:
            try:
                ctx["report"] = b.restore_report(job.repository, job.restore_id)
            except Exception as exc:
                ctx["repo_error"] = f"restore report {job.restore_id}: {type(exc).__name__}: {exc}"
        if job.repository:
            # a restore or cutover: the decision about its restore id, or asked in this run (a
            # rejected restore never got a restore id); a backup: the review of its anomaly
            about = {job.restore_id} if job.kind in ("restore", "migration") else {job.backup_id}
            ctx["approvals"] = _approvals_or_error(b, job.repository, ids=about, dag_id=job.dag_id, run_id=job.run_id)
            ctx["approvals_repository"] = job.repository
        return render(request, "job.html", **ctx)

    def _approvals_or_error(b: Backups, repo: str, **match: Any) -> list[dict] | str:
        try:
            return approvals_mod.concerning(b.approvals(repo), **match)
        except Exception as exc:  # the page is still worth showing without the decisions
            log.warning("ys1000 UI: approvals in %s: %s", repo, exc)
            return f"{type(exc).__name__}: {exc}"

    def _backup_context(b: Backups, repo: str, backup_id: str, kind: str, namespace: str, name: str) -> dict:
        m = b.manifest(repo, backup_id)
        index = b.index(repo, backup_id)
        shown = filter_index(index, kind=kind, namespace=namespace, name=name)
        return {
            "manifest": m,
            "repository": repo,
            "resources": shown[:RESOURCE_PAGE],
            "resources_total": len(index),
            "resources_matched": len(shown),
            "kinds_available": sorted({e.kind for e in index}),
            "namespaces_available": sorted({e.namespace or "-" for e in index}),
            "verify": b.verified.get((repo, backup_id)),
            "drills": _drills_or_error(b, repo, backup_id),
        }

    def _drills_or_error(b: Backups, repo: str, backup_id: str) -> list[dict] | str:
        try:
            return b.drills(repo, backup_id)
        except Exception as exc:  # the backup is still worth showing without its drills
            log.warning("ys1000 UI: drills of %s in %s: %s", backup_id, repo, exc)
            return f"{type(exc).__name__}: {exc}"

    # -- repositories and catalog
    @app.get("/repositories", response_class=HTMLResponse)
    def repositories_page(request: Request, user=Depends(current_user)) -> Response:
        b = bk(request)
        cfg = config_or_none(b)
        repos = [
            (name, spec.describe() if hasattr(spec, "describe") else name)
            for name, spec in (cfg.repositories.items() if cfg is not None else [])
        ]
        if len(repos) == 1:
            return RedirectResponse(Urls(request, request.app.state.prefix).catalog(repos[0][0]), status_code=303)
        return render(request, "repositories.html", user=user, repos=repos)

    @app.get("/repositories/{repo}/backups", response_class=HTMLResponse)
    def catalog_page(
        request: Request, repo: str, plan: str = "", user=Depends(current_user), session: Session = Depends(session_dep)
    ) -> Response:
        b = bk(request)
        cfg = config_or_none(b)
        try:
            entries = b.list_backups(repo, plan or None)
        except Exception as exc:
            return repo_error(request, user, repo, exc)
        readable = readable_dag_ids(user)
        backup_dags = {p.name: p.dag_id for p in (cfg.backup_plans.values() if cfg is not None else [])}

        def visible(e) -> bool:
            dag_id = backup_dags.get(e.plan) or jobs_mod.GENERIC_RESTORE
            return dag_id in readable or may_dag_runs(user, dag_id)

        entries = [e for e in entries if visible(e)]
        runs = jobs_mod.backup_runs(session, jobs_mod.job_dag_ids(session, readable))
        return render(
            request,
            "catalog.html",
            user=user,
            repo=repo,
            describe=b.describe(repo),
            entries=entries,
            runs=runs,
            verified=b.verified,
            plan=plan,
            plans=sorted({e.plan for e in entries} | ({plan} if plan else set())),
        )

    @app.get("/repositories/{repo}/backups/{backup_id}", response_class=HTMLResponse)
    def backup_page(
        request: Request,
        repo: str,
        backup_id: str,
        kind: str = "",
        namespace: str = "",
        name: str = "",
        user=Depends(current_user),
        session: Session = Depends(session_dep),
    ) -> Response:
        b = bk(request)
        try:
            m = b.manifest(repo, backup_id)
            require_backup_access(user, b, m.plan)
            ctx = _backup_context(b, repo, backup_id, kind, namespace, name)
        except Forbidden:
            raise
        except Exception as exc:
            return repo_error(request, user, repo, exc)
        run = jobs_mod.backup_runs(session, jobs_mod.job_dag_ids(session, readable_dag_ids(user))).get(backup_id)
        return render(
            request,
            "backup.html",
            user=user,
            run=run,
            f={"kind": kind, "namespace": namespace, "name": name},
            approvals=_approvals_or_error(b, repo, ids={backup_id}, kinds=("anomaly",)),
            approvals_repository=repo,
            **ctx,
        )

    @app.get("/repositories/{repo}/backups/{backup_id}/resource", response_class=HTMLResponse)
    def resource_page(
        request: Request,
        repo: str,
        backup_id: str,
        gr: str,
        name: str,
        namespace: str = "",
        reveal: int = 0,
        user=Depends(current_user),
        session: Session = Depends(session_dep),
    ) -> Response:
        b = bk(request)
        try:
            m = b.manifest(repo, backup_id)
            require_backup_access(user, b, m.plan)
            entry = b.find(repo, backup_id, gr, namespace or None, name)
            if entry is None:
                raise NotFound(f"{gr} {namespace + '/' if namespace else ''}{name} is not in backup {backup_id}")
            doc = b.document(repo, backup_id, entry)
        except (Forbidden, NotFound):
            raise
        except Exception as exc:
            return repo_error(request, user, repo, exc)
        is_secret = doc.get("kind") == "Secret"
        allowed = may_reveal_secrets(user)
        revealed = bool(reveal) and is_secret and allowed
        if reveal and is_secret and not allowed:
            raise Forbidden("revealing a Secret's values needs the right to read Airflow connections")
        if revealed:
            _audit(
                session,
                user,
                "ys1000.reveal_secret",
                {"repository": repo, "backup": backup_id, "resource": f"{gr}/{namespace}/{name}"},
            )
        text = to_yaml(doc if revealed else mask_document(doc))
        return render(
            request,
            "resource.html",
            user=user,
            repo=repo,
            backup_id=backup_id,
            manifest=m,
            entry=entry,
            yaml_text=text,
            is_secret=is_secret,
            revealed=revealed,
            may_reveal=allowed,
        )

    @app.post("/repositories/{repo}/backups/{backup_id}/verify")
    def verify_action(
        request: Request, repo: str, backup_id: str, next: str = "", user=Depends(current_user)
    ) -> Response:
        b = bk(request)
        cfg = config_or_none(b)
        try:
            m = b.manifest(repo, backup_id)
        except Exception as exc:
            return repo_error(request, user, repo, exc)
        dag_id = (
            cfg.backup_plans[m.plan].dag_id
            if cfg is not None and m.plan in cfg.backup_plans
            else jobs_mod.GENERIC_RESTORE
        )
        if not may_dag_runs(user, dag_id, "POST"):
            raise Forbidden(f"verifying needs the right to trigger {dag_id}")
        b.verify(repo, backup_id, user_name(user))
        urls = Urls(request, request.app.state.prefix)
        target = next if next.startswith(urls.base + "/") else urls.catalog(repo)
        return RedirectResponse(target, status_code=303)

    # -- protection dashboard
    def _protection(request: Request, user, session: Session) -> tuple[list[dict], str | None]:
        b = bk(request)
        try:
            cfg = b.config()
        except Exception as exc:
            log.warning("ys1000 UI: configuration not readable: %s", exc)
            return [], f"the configuration is not readable: {type(exc).__name__}: {exc}"
        readable = readable_dag_ids(user)
        rows = protection_mod.dashboard_rows(
            b,
            cfg,
            session,
            lambda dag_id: dag_id in readable or may_dag_runs(user, dag_id),
            datetime.now(timezone.utc),
        )
        urls = Urls(request, request.app.state.prefix)
        for row in rows:
            last, drill = row.get("last_backup"), row.get("last_drill")
            row["links"] = {
                "catalog": urls.catalog(row["repository"], plan=row["plan"]),
                "dag": urls.airflow_dag(row["dag_id"]),
                "backup": urls.backup(row["repository"], last["backup_id"]) if last else None,
                "drill_backup": urls.backup(row["repository"], drill["backup_id"]) if drill else None,
                "drill_evidence": urls.drill_evidence(row["repository"], drill["backup_id"], drill["drill_id"])
                if drill and drill.get("drill_id")
                else None,
            }
        return rows, None

    @app.get("/protection", response_class=HTMLResponse)
    def protection_page(
        request: Request, user=Depends(current_user), session: Session = Depends(session_dep)
    ) -> Response:
        rows, error = _protection(request, user, session)
        counts: dict[str, int] = {}
        for row in rows:
            key = "error" if row["error"] else (row["rpo"]["state"] if row["rpo"] else "no_rpo")
            counts[key] = counts.get(key, 0) + 1
        return render(
            request,
            "protection.html",
            status_code=502 if error else 200,
            user=user,
            rows=[{**r, "charts": protection_mod.charts(r) if not r["error"] else None} for r in rows],
            counts=counts,
            error=error,
            history=protection_mod.HISTORY,
            at_risk_percent=round(AT_RISK * 100),
        )

    @app.get("/api/protection")
    def protection_json(
        request: Request, user=Depends(current_user), session: Session = Depends(session_dep)
    ) -> Response:
        rows, error = _protection(request, user, session)
        if error:
            return JSONResponse({"detail": error}, status_code=502)
        return JSONResponse({"generated_at": datetime.now(timezone.utc).isoformat(), "rows": rows})

    # -- approvals (human decisions)
    def _approvals(
        request: Request, user, kind: str, decision: str, plan: str
    ) -> tuple[list[dict], list[dict], str | None]:
        b = bk(request)
        try:
            cfg = b.config()
        except Exception as exc:
            log.warning("ys1000 UI: configuration not readable: %s", exc)
            return [], [], f"the configuration is not readable: {type(exc).__name__}: {exc}"
        readable = readable_dag_ids(user)
        allowed: dict[str, bool] = {}

        def may_read(dag_id: str) -> bool:
            if dag_id not in allowed:
                allowed[dag_id] = dag_id in readable or may_dag_runs(user, dag_id)
            return allowed[dag_id]

        rows, errors = approvals_mod.collect(b, cfg, may_read, kind=kind, decision=decision, plan=plan)
        urls = Urls(request, request.app.state.prefix)
        for row in rows:
            dag_id, run_id, about = row["dag_id"], row["run_id"], row["about"]
            run = urls.airflow_run(dag_id, run_id) if dag_id and run_id else None
            backup = urls.backup(row["repository"], about) if row["kind"] == "anomaly" and about else None
            row["links"] = {
                "about": backup if row["kind"] == "anomaly" else run,
                "backup": backup,
                "airflow_run": run,
                "job": urls.job(dag_id, run_id) if dag_id and run_id and jobs_mod.is_job_dag(dag_id) else None,
                "airflow_task": urls.airflow_task(dag_id, run_id, row["task_id"])
                if dag_id and run_id and row["task_id"]
                else None,
            }
        return rows, errors, None

    @app.get("/approvals", response_class=HTMLResponse)
    def approvals_page(
        request: Request, kind: str = "", decision: str = "", plan: str = "", user=Depends(current_user)
    ) -> Response:
        rows, errors, error = _approvals(request, user, kind, decision, plan)
        counts = {d: sum(r["decision"] == d for r in rows) for d in approvals_mod.DECISIONS}
        return render(
            request,
            "approvals.html",
            status_code=502 if error else 200,
            user=user,
            rows=rows,
            errors=errors,
            error=error,
            counts=counts,
            kinds=approvals_mod.KINDS,
            decisions=approvals_mod.DECISIONS,
            plans=sorted({r["plan"] for r in rows if r["plan"]} | ({plan} if plan else set())),
            f={"kind": kind, "decision": decision, "plan": plan},
        )

    @app.get("/api/approvals")
    def approvals_json(
        request: Request, kind: str = "", decision: str = "", plan: str = "", user=Depends(current_user)
    ) -> Response:
        rows, errors, error = _approvals(request, user, kind, decision, plan)
        if error:
            return JSONResponse({"detail": error}, status_code=502)
        body = {"generated_at": datetime.now(timezone.utc).isoformat(), "approvals": rows, "errors": errors}
        return JSONResponse(json.loads(json.dumps(body, default=str)))

    @app.get("/api/repositories/{repo}/backups/{backup_id}/drills/{drill_id}")
    def drill_evidence(request: Request, repo: str, backup_id: str, drill_id: str, user=Depends(current_user)):
        b = bk(request)
        try:
            m = b.manifest(repo, backup_id)
            require_backup_access(user, b, m.plan)
            found = [d for d in b.drills(repo, backup_id) if d.get("drill_id") == drill_id]
        except Forbidden:
            raise
        except Exception as exc:
            b.forget(repo)
            from ys1000.repository import BackupNotFound

            code = 404 if isinstance(exc, (BackupNotFound, KeyError)) else 502
            return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=code)
        if not found:
            raise NotFound(f"backup {backup_id} has no drill {drill_id}")
        return JSONResponse(json.loads(json.dumps(found[0], default=str)))

    # -- restore form
    @app.get("/restore", response_class=HTMLResponse)
    def restore_form(
        request: Request, repository: str = "", backup: str = "", plan: str = "", user=Depends(current_user)
    ) -> Response:
        from ys1000.airflow.dagfactory import GENERIC_RESTORE_DAG_ID, restore_params

        b = bk(request)
        cfg = config_or_none(b)
        if cfg is None or not cfg.repositories or not cfg.clusters:
            raise NotFound("the configuration has no repositories or clusters, so there is no restore DAG")
        prefill = {"backup": backup or "latest", "plan": plan or None}
        if repository:
            prefill["repository"] = repository
        fields = []
        for key, param in restore_params(cfg).items():
            schema = dict(param.schema)
            value = prefill.get(key, param.value) if key in prefill else param.value
            fields.append(
                {
                    "name": key,
                    "schema": schema,
                    "value": value,
                    "widget": _widget(schema),
                    "title": schema.get("title") or key,
                    "description": schema.get("description") or "",
                }
            )
        return render(
            request,
            "restore.html",
            user=user,
            fields=fields,
            dag_id=GENERIC_RESTORE_DAG_ID,
            backup=backup,
            repository=repository,
            plan=plan,
            may_trigger=may_dag_runs(user, GENERIC_RESTORE_DAG_ID, "POST"),
        )

    return app


def _widget(schema: dict) -> str:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    if "enum" in schema:
        return "select"
    if "boolean" in types:
        return "checkbox"
    if "array" in types:
        return "lines"
    if "object" in types:
        return "json"
    return "text"


def _audit(session, user, event: str, extra: dict) -> None:
    """A row in Airflow's audit log (Browse → Audit Log); never fails the request."""
    try:
        from airflow.models.log import Log

        session.add(Log(event=event, owner=user_name(user), extra=json.dumps(extra)))
        session.commit()
    except Exception:  # pragma: no cover - auditing must not break the page
        log.exception("ys1000 UI: could not write the audit log entry %s", event)
    log.info("ys1000 UI: %s by %s: %s", event, user_name(user), extra)
