"""The protection dashboard, and drill states in the catalog and on backup pages.

A ``local`` repository holds backups of three plans, made with the engine at chosen times:
``dash-ok`` (namespaces shop, shop-db; rpo 6h, rto 2m; newest backup 30 minutes old, its drill
verified in 42 s), ``dash-late`` (glob late-*; rpo 1h, rto 30s; newest backup 3 hours old, its drill
verified in 50 s: over the RTO), ``dash-none`` (no objectives; its only drill failed); plus
``dash-broken`` on a repository that cannot be opened. Backups grow in size and duration, so the
charts have distinct bars. Page tests use FastAPI's TestClient with Airflow's auth manager; the
browser test uses the real api-server and headless Chromium of ``test_ui_e2e.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import yaml

from test_ui_e2e import ARTIFACTS, WAIT, api_server, browser, settled_wait  # noqa: F401  (fixtures reused)
from ui_helpers import REPO, REPO_KEY, jwt_for, sync_dags

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

OK, LATE, NONE, BROKEN = "dash-ok", "dash-late", "dash-none", "dash-broken"
TOLERANCE = 300  # seconds between making the backups and asking the page (a loaded machine)

# plan → [(backup age, namespaces, payload bytes, duration seconds, drill)], oldest first;
# drill: None, ("verified", rto_seconds) or ("failed", reason)
NOT_READY = "workloads not ready: Deployment shop/web: 0/1 replicas ready"
PARTIAL = "restore PartiallyFailed: ConfigMap misc/settings: admission webhook denied the request"
BACKUPS = {
    OK: [
        (timedelta(days=3), ["shop"], 2_000, 20, None),
        (timedelta(days=2), ["shop", "shop-db"], 8_000, 40, ("failed", NOT_READY)),
        (timedelta(days=1), ["shop", "shop-db"], 20_000, 60, None),
        (timedelta(minutes=30), ["shop", "shop-db"], 40_000, 90, ("verified", 42.4)),
    ],
    LATE: [
        (timedelta(hours=5), ["late-a", "late-b"], 4_000, 30, ("verified", 20.0)),
        (timedelta(hours=3), ["late-a", "late-b"], 6_000, 35, ("verified", 50.0)),
    ],
    NONE: [(timedelta(hours=1), ["misc"], 1_000, 10, ("failed", PARTIAL))],
}
RTO = {OK: 120.0, LATE: 30.0}
PLANS = {
    OK: "namespaces: {names: [shop, shop-db]}\nrpo: 6h\nrto: 2m\n"
    "policy: {scope: resources, method: filecopy, retention: 30d,\n"
    "         schedule: {type: times_daily, times: ['02:30']}}\n",
    LATE: "namespaces: {globs: ['late-*']}\nrpo: 1h\nrto: 30s\n"
    "policy: {scope: resources, method: filecopy, retention: 30d, schedule: {type: every_hours, hours: 1, minute: 5}}\n",
    NONE: "namespaces: {names: [misc]}\n"
    "policy: {scope: resources, method: filecopy, retention: 30d, schedule: {type: on_demand}}\n",
}


def backup_id(plan: str, created: datetime) -> str:
    return f"{plan}-{created:%Y%m%d%H%M%S}"


def open_repo(path):
    from ys1000.repository import RepositoryConfig, open_repository

    return open_repository(RepositoryConfig(type="local", path=str(path)), REPO_KEY, create=True)


def make_backups(repo, now: datetime) -> dict[str, list[dict]]:
    """The backups and drills of ``BACKUPS``; per plan, what was made (oldest first)."""
    made: dict[str, list[dict]] = {}
    for plan, specs in BACKUPS.items():
        for n, (age, namespaces, payload, duration, drill) in enumerate(specs):
            created = (now - age).replace(microsecond=0)
            bid = backup_id(plan, created)
            with repo.begin_backup(bid, plan, now=created) as w:
                for ns in namespaces:
                    w.add(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                        group="",
                        version="v1",
                        resource="namespaces",
                        kind="Namespace",
                    )
                # random bytes do not compress: archive sizes follow the payloads
                w.add(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "blob", "namespace": namespaces[0]},
                        "data": {"blob": os.urandom(payload // 2).hex()},
                    },
                    group="",
                    version="v1",
                    resource="configmaps",
                    kind="ConfigMap",
                )
                w.commit(
                    cluster_name="source",
                    namespaces=namespaces,
                    scope="resources",
                    completed=created + timedelta(seconds=duration),
                )
            ev = None
            if drill is not None:
                state, detail = drill
                started = created + timedelta(minutes=5)
                ev = {
                    "drill_id": f"drill-{started:%Y%m%d%H%M%S}-{n:04x}",
                    "backup_id": bid,
                    "plan": plan,
                    "backup_cluster": "source",
                    "cluster": "source",
                    "status": state,
                    "namespaces": {ns: f"{ns}-drill-{n:04x}" for ns in namespaces},
                    "started": started.isoformat(),
                    "finished": (started + timedelta(seconds=60)).isoformat(),
                    "steps": {"restore": 12.5, "volumes": 0.1, "ready": 20.3, "checks": 9.5},
                    "checks": [
                        {
                            "name": "site-config",
                            "type": "object",
                            "ok": True,
                            "detail": "ConfigMap found",
                            "seconds": 0.2,
                        },
                        {
                            "name": "http",
                            "type": "hook",
                            "ok": state == "verified",
                            "detail": "HTTP 200",
                            "seconds": 3.1,
                        },
                    ],
                    "cleanup": list(f"{ns}-drill-{n:04x}" for ns in namespaces),
                }
                if state == "verified":
                    ev["rto_seconds"] = detail
                    if plan in RTO:  # as the drill records it against the plan's rto
                        ev.update(rto_objective_seconds=RTO[plan], rto_met=detail <= RTO[plan])
                else:
                    ev["reason"] = detail
                ev["key"] = repo.save_drill(ev)
            made.setdefault(plan, []).append(
                {"backup_id": bid, "created": created, "namespaces": namespaces, "duration": duration, "drill": ev}
            )
    return made


@pytest.fixture(scope="module")
def dash_env(airflow_db, tmp_path_factory):
    """Config with the four plans, the repository with their backups and drills, the DAGs in
    Airflow's DB: dash-ok and dash-none active, dash-late paused."""
    from sqlalchemy import update

    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    root = tmp_path_factory.mktemp("dashboard")
    repo_path = root / "repo"
    cdir = root / "config"
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    repos = yaml.safe_load((cdir / "repositories.yaml").read_text())
    repos["local"] = {"type": "local", "path": str(repo_path), "key": {"variable": "ys1000_repo_key"}}
    repos["broken"] = {"type": "local", "path": str(root / "no-repo-here"), "key": {"variable": "ys1000_repo_key"}}
    (cdir / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    for plan, body in {**PLANS, BROKEN: PLANS[NONE].replace("misc", "x")}.items():
        repo = "broken" if plan == BROKEN else "local"
        (cdir / "plans" / f"{plan}.yaml").write_text(
            f"kind: BackupPlan\nname: {plan}\ncluster: source\nrepository: {repo}\n" + textwrap.dedent(body)
        )
    mp = pytest.MonkeyPatch()
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))
    mp.setenv("AIRFLOW_VAR_YS1000_REPO_KEY", REPO_KEY)
    now = datetime.now(timezone.utc)
    made = make_backups(open_repo(repo_path), now)
    sync_dags()
    with create_session() as session:
        for plan, paused in ((OK, False), (LATE, True), (NONE, False), (BROKEN, False)):
            session.execute(
                update(DagModel).where(DagModel.dag_id == f"ys1000_backup__{plan}").values(is_paused=paused)
            )
    yield SimpleNamespace(config_dir=cdir, repo_path=repo_path, now=now, made=made)
    mp.undo()


@pytest.fixture(scope="module")
def app(dash_env):
    """The ys1000 app behind Airflow's auth manager (over conftest's: this module's config)."""
    from fastapi import FastAPI

    from airflow.api_fastapi.app import init_auth_manager
    from ys1000.ui.plugin import LazyApp

    parent = FastAPI()
    init_auth_manager(parent)
    parent.mount("/ys1000", LazyApp("/ys1000"))
    return parent


def login(client, role: str = "viewer", username: str | None = None) -> None:
    client.cookies.set("_token", jwt_for(username or role, role))


def age(dash_env, plan: str, n: int = -1) -> float:
    return (dash_env.now - dash_env.made[plan][n]["created"]).total_seconds()


def history(dash_env, plan: str, namespace: str) -> dict:
    repo = open_repo(dash_env.repo_path)
    entries = {e.backup_id: e for e in repo.list_backups(plan)}
    mine = [b for b in dash_env.made[plan] if namespace in b["namespaces"]]
    return {
        "backups": [
            {
                "backup_id": b["backup_id"],
                "created": b["created"].isoformat(),
                "status": "Completed",
                "archive_size": entries[b["backup_id"]].archive_size,
                "duration_seconds": float(b["duration"]),
            }
            for b in mine
        ],
        "drills": [
            {
                "backup_id": b["backup_id"],
                "drill_id": b["drill"]["drill_id"],
                "state": b["drill"]["status"],
                "rto_seconds": b["drill"].get("rto_seconds"),
                "reason": b["drill"].get("reason"),
            }
            for b in mine
            if b["drill"]
        ],
    }


def expected_row(dash_env, plan: str, namespace: str, *, rpo, rto, next_run: dict, schedule: str) -> dict:
    last = dash_env.made[plan][-1]
    drilled = [b for b in dash_env.made[plan] if b["drill"] and namespace in b["namespaces"]][-1]
    d = drilled["drill"]
    base = "/ys1000/repositories/local/backups"
    return {
        "plan": plan,
        "cluster": "source",
        "repository": "local",
        "namespace": namespace,
        "dag_id": f"ys1000_backup__{plan}",
        "last_backup": {
            "backup_id": last["backup_id"],
            "created": last["created"].isoformat(),
            "completed": (last["created"] + timedelta(seconds=last["duration"])).isoformat(),
            "age_seconds": pytest.approx(age(dash_env, plan), abs=TOLERANCE),
        },
        "rpo": rpo,
        "last_drill": {
            "backup_id": drilled["backup_id"],
            "drill_id": d["drill_id"],
            "state": d["status"],
            "rto_seconds": d.get("rto_seconds"),
            "reason": d.get("reason"),
            "finished": d["finished"],
        },
        "rto": rto,
        "next_run": {**next_run, "schedule": schedule},
        "history": history(dash_env, plan, namespace),
        "error": None,
        "links": {
            "catalog": f"/ys1000/repositories/local/backups?plan={plan}",
            "dag": f"/dags/ys1000_backup__{plan}",
            "backup": f"{base}/{last['backup_id']}",
            "drill_backup": f"{base}/{drilled['backup_id']}",
            "drill_evidence": f"/ys1000/api/repositories/local/backups/{drilled['backup_id']}/drills/{d['drill_id']}",
        },
    }


def test_dashboard_json_rows(client, dash_env):
    login(client)
    r = client.get("/ys1000/api/protection")
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [(x["plan"], x["namespace"]) for x in rows] == [
        (BROKEN, None),
        (LATE, "late-a"),
        (LATE, "late-b"),
        (NONE, "misc"),
        (OK, "shop"),
        (OK, "shop-db"),
    ]
    by = {(x["plan"], x["namespace"]): x for x in rows}

    broken = by[(BROKEN, None)]
    assert broken["error"].startswith("repository broken: ") and broken["repository"] == "broken"
    assert {k: v for k, v in broken.items() if k not in ("error", "links")} == {
        "plan": BROKEN,
        "cluster": "source",
        "repository": "broken",
        "namespace": None,
        "dag_id": f"ys1000_backup__{BROKEN}",
        "last_backup": None,
        "rpo": None,
        "last_drill": None,
        "rto": None,
        "next_run": {"state": "not_scheduled", "at": None, "logical_date": None, "due": False, "schedule": "on demand"},
        "history": None,
    }

    # the next 02:30 the scheduler creates a run at: with catchup off, a DAG without runs gets the
    # latest 02:30 already passed (due: created as soon as a scheduler sees it)
    ok_run = by[(OK, "shop")]["next_run"]
    assert ok_run["state"] == "scheduled", ok_run
    nxt, now = datetime.fromisoformat(ok_run["at"]), datetime.now(timezone.utc)
    assert (nxt.hour, nxt.minute) == (2, 30) and abs(nxt - now) <= timedelta(days=1)
    assert ok_run["due"] == (nxt <= now)
    ok_next = {"state": "scheduled", "at": ok_run["at"], "logical_date": ok_run["logical_date"], "due": ok_run["due"]}
    for ns in ("shop", "shop-db"):
        assert by[(OK, ns)] == expected_row(
            dash_env,
            OK,
            ns,
            rpo={"seconds": 6 * 3600.0, "state": "ok"},
            rto={"seconds": 120.0, "state": "ok"},
            next_run=ok_next,
            schedule="daily at 02:30 (UTC)",
        )
    paused = {"state": "paused", "at": None, "logical_date": None, "due": False}
    for ns in ("late-a", "late-b"):
        assert by[(LATE, ns)] == expected_row(
            dash_env,
            LATE,
            ns,
            rpo={"seconds": 3600.0, "state": "breached"},
            rto={"seconds": 30.0, "state": "exceeded"},
            next_run=paused,
            schedule=by[(LATE, ns)]["next_run"]["schedule"],
        )
    assert by[(NONE, "misc")] == expected_row(
        dash_env,
        NONE,
        "misc",
        rpo=None,
        rto=None,
        next_run={"state": "not_scheduled", "at": None, "logical_date": None, "due": False},
        schedule="on demand",
    )

    # the states the rows are about, spelled out
    assert (
        by[(OK, "shop")]["last_drill"]["state"] == "verified" and by[(OK, "shop")]["last_drill"]["rto_seconds"] == 42.4
    )
    assert by[(LATE, "late-a")]["last_backup"]["age_seconds"] == pytest.approx(3 * 3600, abs=TOLERANCE)
    assert by[(NONE, "misc")]["last_drill"]["state"] == "failed"
    assert by[(NONE, "misc")]["last_drill"]["reason"] == PARTIAL
    # shop-db was not in the first backup: its history is one backup shorter
    assert len(by[(OK, "shop")]["history"]["backups"]) == 4 and len(by[(OK, "shop-db")]["history"]["backups"]) == 3
    sizes = [b["archive_size"] for b in by[(OK, "shop")]["history"]["backups"]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4  # several sizes, oldest first


def svgs(row_html: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="chart chart-(\w+)".*?</svg>', row_html, re.S)}


def app_rows(html: str) -> dict[tuple[str, str], str]:
    out = {}
    for m in re.finditer(r'<tr class="app[^"]*" data-plan="([^"]+)"(?: data-namespace="([^"]*)")?.*?</tr>', html, re.S):
        out[(m.group(1), m.group(2) or "")] = m.group(0)
    return out


def test_dashboard_page_badges_and_charts(client, dash_env):
    login(client)
    r = client.get("/ys1000/protection")
    assert r.status_code == 200, r.text
    html = r.text
    assert 'id="nav-protection"' in html
    rows = app_rows(html)
    assert set(rows) == {
        (BROKEN, ""),
        (LATE, "late-a"),
        (LATE, "late-b"),
        (NONE, "misc"),
        (OK, "shop"),
        (OK, "shop-db"),
    }
    assert "repository broken: " in rows[(BROKEN, "")] and "<svg" not in rows[(BROKEN, "")]

    shop = rows[(OK, "shop")]
    assert 'data-rpo-state="ok"' in shop and 'data-drill-state="verified"' in shop and 'data-rto-state="ok"' in shop
    assert '<span class="badge ok">ok</span>' in shop and "RPO 6h 00m" in shop
    assert '<span class="badge verified"' in shop and "42s" in shop
    assert f'href="/ys1000/repositories/local/backups/{dash_env.made[OK][-1]["backup_id"]}"' in shop
    assert re.search(r"3\dm \d\ds ago", shop)  # the age of the last backup (30 minutes and the test's time)

    late = rows[(LATE, "late-a")]
    assert 'data-rpo-state="breached"' in late and '<span class="badge breached">breached</span>' in late
    assert '<span class="badge exceeded">exceeded</span>' in late and '<span class="badge paused">paused</span>' in late

    misc = rows[(NONE, "misc")]
    assert '<span class="badge none">no RPO</span>' in misc and '<span class="badge none">no RTO</span>' in misc
    assert 'data-drill-state="failed"' in misc and "drill failed" in misc
    assert f'title="{PARTIAL}"' in misc and "not scheduled" in misc and "on demand" in misc

    # one <svg> per chart, one point (with its <title>) per backup / drill
    points = {
        (OK, "shop"): (4, 2),
        (OK, "shop-db"): (3, 2),
        (LATE, "late-a"): (2, 2),
        (LATE, "late-b"): (2, 2),
        (NONE, "misc"): (1, 1),
    }
    for key, (n_backups, n_drills) in points.items():
        charts = svgs(rows[key])
        assert sorted(charts) == ["durations", "rto", "sizes"], key
        assert rows[key].count("<svg") == 3
        for kind, n in (("sizes", n_backups), ("durations", n_backups), ("rto", n_drills)):
            svg = charts[kind]
            assert f'data-points="{n}"' in svg, (key, kind)
            assert len(re.findall(r'class="pt[ "]', svg)) == n, (key, kind)
            assert len(re.findall(r"<title>", svg)) == n + 1, (key, kind)  # + the chart's own
    # bar heights follow the archive sizes; the RTO line has the objective and a red failed drill
    heights = [float(h) for h in re.findall(r'<rect class="pt [^"]*"[^>]*height="([\d.]+)"', svgs(shop)["sizes"])]
    assert heights == sorted(heights) and len(set(heights)) == 4
    rto_svg = svgs(shop)["rto"]
    assert 'class="objective"' in rto_svg and 'class="pt failed"' in rto_svg and 'class="pt verified"' in rto_svg
    assert NOT_READY in rto_svg  # the failed drill's reason on hover
    assert 'class="pt exceeded"' in svgs(late)["rto"]


def test_dashboard_needs_login_and_hides_plans_the_user_may_not_read(client, dash_env, monkeypatch):
    assert client.get("/ys1000/protection").status_code == 303
    assert client.get("/ys1000/api/protection").status_code == 401

    from airflow.api_fastapi.app import get_auth_manager

    am = get_auth_manager()
    hidden = f"ys1000_backup__{LATE}"
    orig_dag, orig_ids = am.is_authorized_dag, am.get_authorized_dag_ids

    def is_authorized_dag(**kw):
        if kw["user"].get_name() == "restricted" and kw.get("details") is not None and kw["details"].id == hidden:
            return False
        return orig_dag(**kw)

    def get_authorized_dag_ids(**kw):
        ids = set(orig_ids(**kw))
        return ids - {hidden} if kw["user"].get_name() == "restricted" else ids

    monkeypatch.setattr(am, "is_authorized_dag", is_authorized_dag)
    monkeypatch.setattr(am, "get_authorized_dag_ids", get_authorized_dag_ids)
    login(client, "viewer", "restricted")
    plans = {x["plan"] for x in client.get("/ys1000/api/protection").json()["rows"]}
    assert plans == {OK, NONE, BROKEN}
    html = client.get("/ys1000/protection").text
    assert f'data-plan="{LATE}"' not in html and f'data-plan="{OK}"' in html
    bid = dash_env.made[LATE][-1]["backup_id"]
    assert bid not in client.get("/ys1000/repositories/local/backups").text  # the catalog agrees
    drill = dash_env.made[LATE][-1]["drill"]["drill_id"]
    assert client.get(f"/ys1000/api/repositories/local/backups/{bid}/drills/{drill}").status_code == 403

    login(client, "viewer", "someone-else")
    assert {x["plan"] for x in client.get("/ys1000/api/protection").json()["rows"]} == {OK, NONE, BROKEN, LATE}


def test_catalog_shows_drill_states(client, dash_env):
    login(client)
    html = client.get("/ys1000/repositories/local/backups").text
    assert 'id="protection-link"' in html
    cells = dict(re.findall(r'<tr class="backup" data-backup-id="([^"]+)">.*?<td class="drill">(.*?)</td>', html, re.S))
    for plan, made in dash_env.made.items():
        for b in made:
            cell = cells[b["backup_id"]]
            d = b["drill"]
            if d is None:
                assert '<small class="drill-none">-</small>' in cell
            elif d["status"] == "verified":
                rto = f"{int(d['rto_seconds'])}s"
                assert f"verified (RTO {rto})" in cell, cell
                assert ("exceeded" in cell) == (plan == LATE and d["rto_seconds"] > 30)
            else:
                assert "drill failed" in cell and f'title="{d["reason"]}"' in cell
    assert "verified (RTO 42s)" in cells[dash_env.made[OK][-1]["backup_id"]]
    assert 'id="protection-link"' in client.get("/ys1000/jobs").text


def test_backup_page_shows_the_newest_drill_and_its_evidence(client, dash_env):
    login(client)
    b = dash_env.made[OK][-1]
    html = client.get(f"/ys1000/repositories/local/backups/{b['backup_id']}").text
    d = b["drill"]
    assert f'<dd class="mono" id="drill-id">{d["drill_id"]}</dd>' in html
    assert '<span class="badge verified" id="drill-state">verified</span>' in html
    assert "42s (42.4 s" in html
    assert "restore 12s · volumes 0s · ready 20s · checks 9s" in html
    assert 'data-check="site-config"' in html and 'data-check="http"' in html and "HTTP 200" in html
    for src, dst in d["namespaces"].items():
        assert f'{src} → <span class="mono">{dst}</span>' in html
    link = f"/ys1000/api/repositories/local/backups/{b['backup_id']}/drills/{d['drill_id']}"
    assert f'href="{link}"' in html and f"drills/{b['backup_id']}/{d['drill_id']}.json" in html
    evidence = client.get(link).json()
    assert evidence == {k: v for k, v in d.items() if k != "key"}
    assert client.get(link.replace(d["drill_id"], "drill-20000101000000-0000")).status_code == 404

    failed = dash_env.made[NONE][-1]
    html = client.get(f"/ys1000/repositories/local/backups/{failed['backup_id']}").text
    assert 'id="drill-state"' in html and "drill failed" in html and PARTIAL in html
    never = dash_env.made[OK][0]
    assert 'id="no-drill"' in client.get(f"/ys1000/repositories/local/backups/{never['backup_id']}").text


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture
def backup_env(dash_env):
    """What ``test_ui_e2e.api_server`` needs (its config dir), here without the sandbox."""
    return {"config_dir": dash_env.config_dir}


@pytest.mark.slow
def test_browser_dashboard_and_catalog(browser, dash_env, api_server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    base = api_server["base"]
    wait = settled_wait(browser)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    try:
        browser.get(f"{base}/")
        wait.until(EC.presence_of_element_located((By.NAME, "username")))
        browser.find_element(By.NAME, "username").send_keys(api_server["user"])
        browser.find_element(By.NAME, "password").send_keys(api_server["password"])
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/" not in d.current_url and d.get_cookie("_token"))

        browser.get(f"{base}/ys1000/jobs")
        wait.until(EC.element_to_be_clickable((By.ID, "nav-protection"))).click()
        wait.until(EC.presence_of_element_located((By.ID, "protection")))
        ok = browser.find_element(By.CSS_SELECTOR, f'tr.app[data-plan="{OK}"][data-namespace="shop"]')
        late = browser.find_element(By.CSS_SELECTOR, f'tr.app[data-plan="{LATE}"][data-namespace="late-a"]')
        assert ok.get_attribute("data-rpo-state") == "ok" and "ok" in ok.find_element(By.CSS_SELECTOR, "td.rpo").text
        assert "breached" in late.find_element(By.CSS_SELECTOR, "td.rpo").text
        assert "verified" in ok.find_element(By.CSS_SELECTOR, "td.drill").text
        for row, n in ((ok, 4), (late, 2)):
            charts = row.find_elements(By.CSS_SELECTOR, "svg.chart")
            assert len(charts) == 3 and all(c.is_displayed() and c.size["width"] >= 100 for c in charts)
            bars = charts[0].find_elements(By.CSS_SELECTOR, ".pt")
            assert len(bars) == n and all(b.size["height"] >= 1 for b in bars)
        assert "repository broken" in browser.find_element(By.CSS_SELECTOR, f'tr[data-plan="{BROKEN}"]').text
        shot("protection-01-dashboard")

        # the catalog (one repository readable here: local, the broken one fails to list)
        browser.get(f"{base}/ys1000/repositories/local/backups")
        newest = dash_env.made[OK][-1]["backup_id"]
        row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr.backup[data-backup-id="{newest}"]')))
        assert "verified (RTO 42s)" in row.find_element(By.CSS_SELECTOR, "td.drill").text
        failed = dash_env.made[NONE][-1]["backup_id"]
        badge = browser.find_element(By.CSS_SELECTOR, f'tr.backup[data-backup-id="{failed}"] td.drill .badge')
        assert badge.text == "drill failed" and badge.get_attribute("title") == PARTIAL
        shot("protection-02-catalog-drills")

        row.find_element(By.CSS_SELECTOR, "a.backup-link").click()
        wait.until(EC.presence_of_element_located((By.ID, "drill-summary")))
        assert browser.find_element(By.ID, "drill-state").text == "verified"
        shot("protection-03-backup-drill")
    except Exception:
        shot("protection-failure")
        (ARTIFACTS / "protection-failure.html").write_text(browser.page_source)
        raise
