"""End to end in a real browser: a backup DAG run against the sandbox, a real ``airflow api-server``
with the plugin (SimpleAuthManager, the session's SQLite DB), and headless Chromium driven by
Selenium: log into the Airflow UI, open the job monitor from its navigation bar, see the
finished backup, open its details, filter to the Secret, see its YAML masked, click Restore and
get the prefilled trigger form, trigger it (Airflow's REST API creates the run); and the same
details as a tab embedded in Airflow's run page.

Screenshots go to ``test-artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from ys1000_dev.ports import start_on_port

from ui_helpers import REPO


def settled_wait(browser):
    """A wait that also rides out "aborted by navigation": the UI redirects on its own (login,
    the SPA's router), and a lookup racing a navigation fails instead of finding nothing (seen
    under load); the next poll sees the settled page."""
    from selenium.common.exceptions import NoSuchElementException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, ignored_exceptions=(NoSuchElementException, WebDriverException))


ARTIFACTS = REPO / "test-artifacts" / "ui"
PLAN = "ui-e2e"
DAG_ID = f"ys1000_backup__{PLAN}"
SECRET_VALUE = "e2e-Planted-Secret-Value"
WAIT = 60  # seconds for any one thing to appear in the browser

pytestmark = pytest.mark.slow


def entry_point_registered() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == "ys1000" for ep in entry_points(group="airflow.plugins"))


@pytest.fixture
def backup_env(sandbox, sandbox_s3, source, make_namespace, tmp_path, airflow_db):
    """A namespace with a Secret and a ConfigMap, a config whose plan backs it up into a fresh
    bucket, and one finished run of that plan's DAG (``dag.test()``; it also syncs the DAGs,
    ``ys1000_restore`` included, to the metadata DB)."""
    from airflow.utils.state import DagRunState

    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.airflow.dagfactory import build_dags

    ns = make_namespace(source, "ui")
    source.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "db-pass"},
            "type": "Opaque",
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
        },
    )
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "app-config"}, "data": {"mode": "e2e"}})
    bucket = sandbox_s3.new_bucket(f"ui-{uuid.uuid4().hex[:10]}")
    cdir = tmp_path / "config"
    shutil.copytree(REPO / "config", cdir)
    shutil.rmtree(cdir / "plans")
    (cdir / "plans").mkdir()
    repos = yaml.safe_load((cdir / "repositories.yaml").read_text())
    repos["sandbox-s3"]["bucket"] = bucket
    (cdir / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (cdir / "plans" / f"{PLAN}.yaml").write_text(
        f"kind: BackupPlan\nname: {PLAN}\ncluster: source\nrepository: sandbox-s3\n"
        f"namespaces: {{names: [{ns}]}}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n"
    )
    mp = pytest.MonkeyPatch()
    for key, value in sandbox_env(sandbox["dir"]).items():
        mp.setenv(key, value)
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))
    try:
        run = build_dags(cdir)[DAG_ID].test()
        assert run.state == DagRunState.SUCCESS
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id="commit", key="return_value")
                .one()
            )
            summary = XComModel.deserialize_value(row)
        yield {"run_id": run.run_id, "backup_id": summary["backup_id"], "namespace": ns, "config_dir": cdir}
    finally:
        mp.undo()


@pytest.fixture
def api_server(backup_env, tmp_path):
    """``airflow api-server`` on a free loopback port, same AIRFLOW_HOME/DB and connections as the
    test, the plugin loaded (entry point, else a plugins folder), user admin with a known password."""
    password = secrets.token_urlsafe(12)
    pw_file = tmp_path / "passwords.json"
    pw_file.write_text(json.dumps({"admin": password}))
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
            "AIRFLOW__API__WORKERS": "1",
            "YS1000_CONFIG_DIR": str(backup_env["config_dir"]),
        }
    )
    if not entry_point_registered():
        plugins = tmp_path / "plugins"
        plugins.mkdir()
        (plugins / "ys1000_ui_plugin.py").write_text("from ys1000.ui.plugin import Ys1000Plugin  # noqa: F401\n")
        env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(plugins)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "api-server.log"
    airflow = Path(sys.executable).with_name("airflow")
    log_path.write_bytes(b"")

    def launch(port: int) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                env={**env, "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # a free port, another one if it is taken before the api-server binds it
    proc, port = start_on_port(launch, log_path, "api-server", timeout=120)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"api-server exited ({proc.returncode}); see {log_path}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=3) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server not up after 120 s; see {log_path}")
            time.sleep(1)
        yield {"base": base, "user": "admin", "password": password}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()]
    if missing:
        message = (
            f"{', '.join(missing)} missing: install the Debian chromium and chromium-driver packages (make system)"
        )
        if os.environ.get("YS1000_REQUIRE_SANDBOX") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_job_monitor_details_secret_and_restore(browser, backup_env, api_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select

    base, bid = api_server["base"], backup_env["backup_id"]
    wait = settled_wait(browser)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    try:
        # log into the Airflow UI (SimpleAuthManager's login form)
        browser.get(f"{base}/")
        wait.until(EC.presence_of_element_located((By.NAME, "username")))
        shot("01-login")
        browser.find_element(By.NAME, "username").send_keys(api_server["user"])
        browser.find_element(By.NAME, "password").send_keys(api_server["password"])
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/" not in d.current_url and d.get_cookie("_token"))

        # the job monitor from Airflow's navigation (Plugins → Backup jobs: opens a new tab)
        wait.until(EC.element_to_be_clickable((By.XPATH, '//button[.//*[@aria-label="Plugins"]]'))).click()
        entry = wait.until(EC.element_to_be_clickable((By.XPATH, '//a[normalize-space()="Backup jobs"]')))
        shot("02-airflow-plugins-menu")
        handles = set(browser.window_handles)
        entry.click()
        wait.until(lambda d: len(d.window_handles) > len(handles))
        browser.switch_to.window((set(browser.window_handles) - handles).pop())
        wait.until(lambda d: d.current_url.endswith("/ys1000/jobs"))
        row = wait.until(
            EC.presence_of_element_located(
                (By.CSS_SELECTOR, f'tr.job[data-dag-id="{DAG_ID}"][data-run-id="{backup_env["run_id"]}"]')
            )
        )
        assert "success" in row.text and PLAN in row.text and bid in row.text and "source" in row.text
        shot("03-job-monitor")

        # job details: summary and resources
        row.find_element(By.CSS_SELECTOR, "a.job-link").click()
        wait.until(EC.presence_of_element_located((By.ID, "resource-list")))
        assert bid in browser.find_element(By.ID, "backup-id").text
        kinds = {r.get_attribute("data-kind") for r in browser.find_elements(By.CSS_SELECTOR, "tr.resource")}
        assert {"Secret", "ConfigMap", "Namespace"} <= kinds
        shot("04-job-details")

        # filter to Secrets
        Select(browser.find_element(By.ID, "filter-res-kind")).select_by_value("Secret")
        browser.find_element(By.ID, "filter-res-apply").click()
        wait.until(lambda d: "kind=Secret" in d.execute_script("return window.location.search"))
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.resource")
        assert rows and {r.get_attribute("data-kind") for r in rows} == {"Secret"}
        shot("05-secrets")

        # the Secret's YAML, masked
        secret_row = next(r for r in rows if r.get_attribute("data-name") == "db-pass")
        secret_row.find_element(By.CSS_SELECTOR, "a.resource-link").click()
        text = wait.until(EC.presence_of_element_located((By.ID, "resource-yaml"))).text
        assert "kind: Secret" in text and "password: '***'" in text
        assert SECRET_VALUE not in browser.page_source
        assert base64.b64encode(SECRET_VALUE.encode()).decode() not in browser.page_source
        assert "masked" in browser.find_element(By.ID, "secret-note").text
        shot("06-secret-yaml-masked")

        # Restore → the ys1000_restore trigger form, prefilled
        browser.find_element(By.ID, "restore-button").click()
        backup_input = wait.until(EC.presence_of_element_located((By.ID, "param-backup")))
        assert backup_input.get_attribute("value") == bid
        assert browser.find_element(By.ID, "param-plan").get_attribute("value") == PLAN
        assert Select(browser.find_element(By.ID, "param-repository")).first_selected_option.text == "sandbox-s3"
        conf = json.loads(browser.find_element(By.ID, "conf-preview").get_attribute("textContent"))
        assert conf["backup"] == bid and conf["repository"] == "sandbox-s3"
        shot("07-restore-form-prefilled")

        # trigger it: Airflow's REST API creates the run, the browser goes to its page
        Select(browser.find_element(By.ID, "param-target_cluster")).select_by_value("target")
        browser.find_element(By.ID, "param-dry_run").click()
        browser.find_element(By.ID, "trigger-submit").click()
        link = wait.until(EC.presence_of_element_located((By.ID, "triggered-run")))
        run_id = link.text
        wait.until(lambda d: "/dags/ys1000_restore/runs/" in d.current_url)
        wait.until(lambda d: "Task Instances" in d.find_element(By.TAG_NAME, "body").text)  # rendered
        shot("08-restore-run")

        # the run-page tab: the same details embedded in Airflow's run page
        browser.get(f"{base}/dags/{DAG_ID}/runs/{quote(backup_env['run_id'], safe='')}/plugin/ys1000-run")
        frame = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        browser.switch_to.frame(frame)
        wait.until(EC.presence_of_element_located((By.ID, "resource-list")))
        assert browser.find_element(By.ID, "airflow-run-link").get_attribute("href") is None  # no dead links
        browser.switch_to.default_content()
        shot("09-run-page-tab")
    except Exception:
        shot("failure")
        (ARTIFACTS / "failure.html").write_text(browser.page_source)
        browser.switch_to.default_content()
        shot("failure-top")
        raise

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dr = session.query(DagRun).filter_by(dag_id="ys1000_restore", run_id=run_id).one()
        assert dr.conf["backup"] == bid and dr.conf["target_cluster"] == "target" and dr.conf["dry_run"] is True
        session.delete(dr)  # no scheduler runs here: do not leave a queued run behind
