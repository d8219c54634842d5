"""``make demo``: the product on its embedded defaults — backup, disaster, restore, through Airflow.

1. sandbox up in ``--dir`` (two local Kubernetes clusters ``source`` and ``target`` + S3);
2. the sample application (WordPress + MySQL style, with PVC content) in namespace ``wordpress``
   of ``source``;
3. Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor + SQLite) in
   ``--dir/airflow`` with the example config (``config/``): connections and the key Variable from
   the sandbox (environment), one pool per cluster;
4. the backup plan DAG ``ys1000_backup__wordpress-backup`` triggered through the REST API; its
   asset event starts the restore drill ``ys1000_drill__wordpress-backup`` (scratch namespace,
   PVC bytes read back, readiness, checks incl. a SQL query on the app's MariaDB, evidence, RTO);
5. the namespace deleted (the disaster);
6. the restore: the generic ``ys1000_restore`` DAG back into ``source`` and, side by side, the
   restore plan DAG ``ys1000_restore__wordpress-restore`` into ``target`` as ``wordpress-restored``;
7. every object of the application and the PVC content checked in both places;
8. the migration ``ys1000_migrate__wordpress-migrate``: an incremental sync, then the cutover into
   ``target`` as ``wordpress-migrated``, after which the manual's WordPress hook rewrites the site
   URL in the app's database (a real MariaDB the demo runs on loopback) and the Ingress host.

Then it prints the Airflow UI address and login and keeps everything running until Ctrl-C. With
``--no-wait`` it stops everything at the end and exits 0 only when every step worked.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ys1000_dev.processes import AirflowStack, repo_root
from ys1000_dev.ports import free_port, port_is_free
from ys1000.waiting import wait_until

NAMESPACE = "wordpress"
BACKUP_PLAN = "wordpress-backup"
BACKUP_DAG = f"ys1000_backup__{BACKUP_PLAN}"
DRILL_DAG = f"ys1000_drill__{BACKUP_PLAN}"
RESTORE_PLAN_DAG = "ys1000_restore__wordpress-restore"
GENERIC_RESTORE_DAG = "ys1000_restore"
RESTORED_ELSEWHERE = ("target", "wordpress-restored")  # what config/plans/wordpress-restore.yaml says
MIGRATE_DAG = "ys1000_migrate__wordpress-migrate"
MIGRATED = "wordpress-migrated"  # config/plans/wordpress-migrate.yaml's namespace mapping
NEW_URL = "http://blog.migrated.example.com"  # and its WordPress hook's NEW_URL

#: sample content planted in the application's volumes (path in the PVC → bytes)
CONTENT = {
    "wp-content": {
        "index.php": b"<?php /* ys1000 demo blog */ require 'wp-blog-header.php';\n",
        "uploads/2024/05/hello-world.txt": b"Hello from the ys1000 demo: this file lives on a PVC.\n",
        "uploads/2024/05/photo.bin": bytes(range(256)) * 2048,  # 512 KiB
    },
    "data-mysql-0": {
        "ibdata1": b"\x00" * 65536,
        "wordpress/wp_posts.ibd": b"ys1000-demo wp_posts " * 512,
    },
}


class DemoError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(msg, flush=True)


class Steps:
    """Numbered steps with their durations."""

    def __init__(self) -> None:
        self.n = 0
        self.t0 = time.monotonic()

    def __call__(self, title: str) -> None:
        self.n += 1
        _say(f"\n[{self.n}] {title}  (t+{time.monotonic() - self.t0:.0f} s)")


# -- the application ----------------------------------------------------------------------------


def _kube(info: dict, cluster: str):
    from ys1000.kube import Kube

    return Kube.from_kubeconfig(info["clusters"][cluster]["kubeconfig"], name=cluster)


def _delete_namespace(kube, ns: str, timeout: float = 120) -> float:
    """Delete ``ns`` and wait until it is gone; returns the seconds it took (0: there was none)."""
    from ys1000.kube.discovery import NAMESPACES
    from ys1000.waiting import wait_until

    if kube.get_or_none(NAMESPACES.path(name=ns)) is None:
        return 0.0
    t = time.monotonic()
    kube.delete(NAMESPACES, ns)
    wait_until(
        lambda: kube.get_or_none(NAMESPACES.path(name=ns)) is None,
        timeout=timeout,
        what=f"namespace {ns} to be deleted",
        interval=0.5,
    )
    return time.monotonic() - t


def _pv_dir(kube, ns: str, pvc: str) -> Path:
    from ys1000.waiting import wait_until

    claim = wait_until(
        lambda: (
            (c := kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}"))["spec"].get("volumeName") and c
        ),
        timeout=90,
        what=f"PVC {ns}/{pvc} to be bound",
    )
    pv = kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    path = (((pv.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}).get("path")
    if not path:
        raise DemoError(f"PV {pv['metadata']['name']} of {ns}/{pvc} has no local path (not a sandbox volume?)")
    return Path(path)


def deploy_app(kube) -> list[dict]:
    """A fresh ``wordpress`` namespace with the sample app and content on its volumes."""
    from ys1000.kube.discovery import NAMESPACES
    from ys1000_dev.sandbox import sampleapp

    if took := _delete_namespace(kube, NAMESPACE):
        _say(f"    removed the namespace {NAMESPACE} left by an earlier demo ({took:.0f} s)")
    kube.create(
        NAMESPACES,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "wordpress"}},
        },
    )
    sampleapp.deploy(kube, NAMESPACE)
    for pvc, files in CONTENT.items():
        root = _pv_dir(kube, NAMESPACE, pvc)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return sampleapp.manifests(NAMESPACE)


def check_app(kube, ns: str, manifests: list[dict]) -> list[str]:
    """Every object of the app present in ``ns`` and the volumes' content byte-identical; returns
    problems (empty: all good) and prints what is there."""
    from ys1000.kube import Discovery

    disc = Discovery.load(kube)
    problems: list[str] = []
    found: dict[str, list[str]] = {}
    for obj in manifests:
        rt = disc.by_api_version(obj["apiVersion"], obj["kind"])
        name = obj["metadata"]["name"]
        if rt is None or kube.get_or_none(rt.path(ns if rt.namespaced else None, name)) is None:
            problems.append(f"{obj['kind']} {ns}/{name} is missing")
        else:
            found.setdefault(obj["kind"], []).append(name)
    for kind in sorted(found):
        _say(f"      {kind:<24} {', '.join(found[kind])}")
    files = 0
    for pvc, content in CONTENT.items():
        try:
            root = _pv_dir(kube, ns, pvc)
        except Exception as exc:
            problems.append(f"PVC {ns}/{pvc}: {exc}")
            continue
        for rel, data in content.items():
            path = root / rel
            if not path.exists():
                problems.append(f"{pvc}:/{rel} is missing")
            elif hashlib.sha256(path.read_bytes()).digest() != hashlib.sha256(data).digest():
                problems.append(f"{pvc}:/{rel} differs from the original")
            else:
                files += 1
    total = sum(len(c) for c in CONTENT.values())
    _say(
        f"      volume content: {files}/{total} files byte-identical "
        f"({', '.join(f'{p}: {len(c)}' for p, c in CONTENT.items())})"
    )
    return problems


def demo_config(src: Path, dest: Path, db_port: int) -> Path:
    """A copy of the config whose WordPress hook reaches the demo's MariaDB port."""
    import shutil

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    plan = dest / "plans" / "wordpress-migrate.yaml"
    if plan.exists():
        plan.write_text(plan.read_text().replace('DB_PORT: "3306"', f'DB_PORT: "{db_port}"'))
    plan = dest / "plans" / "wordpress-backup.yaml"
    if plan.exists():  # the sandbox has no Service DNS: the drill's SQL check goes to the demo's MariaDB
        plan.write_text(
            plan.read_text().replace("service: mysql,", f"service: mysql, host: 127.0.0.1, port: {db_port},")
        )
    return dest


def site_url(db) -> str:
    import pymysql

    conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, database="wordpress")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT option_value FROM wp_options WHERE option_name = 'siteurl'")
            return cur.fetchone()[0]
    finally:
        conn.close()


# -- Airflow ------------------------------------------------------------------------------------


def _create_pools(stack: AirflowStack) -> None:
    stack.procs.run("pools", [str(Path(sys.executable).parent / "ys1000"), "airflow", "pools"], timeout=120)


def _xcom(client, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    entry = client.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
        params={"deserialize": "true", "stringify": "false"},
    )
    return entry["value"]


def _restore_summary(client, dag_id: str, run_id: str) -> dict:
    """The restore's summary: the ``workloads`` task's XCom when the DAG splits the restore around
    its volume tasks, else the ``restore`` task's."""
    for task_id in ("workloads", "restore"):
        try:
            value = _xcom(client, dag_id, run_id, task_id)
        except Exception:  # no such task or XCom in this DAG's shape
            continue
        if isinstance(value, dict) and "restore_id" in value:
            return value
    raise DemoError(f"{dag_id} run {run_id}: no restore summary in the XComs of workloads or restore")


def _trigger(client, dag_id: str, conf: dict | None = None) -> str:
    run_id = client.trigger(dag_id, conf)["dag_run_id"]
    _say(f"    triggered {dag_id} (POST /api/v2/dags/{dag_id}/dagRuns): run {run_id}")
    return run_id


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _wait(client, stack: AirflowStack, dag_id: str, run_id: str, timeout: float = 600) -> dict:
    t = time.monotonic()
    run = client.wait_run(dag_id, run_id, timeout=timeout)
    took = time.monotonic() - t
    if run["state"] != "success":
        tis = client.task_instances(dag_id, run_id)
        failed = [f"{k}: {v['state']}" for k, v in tis.items() if v["state"] not in ("success", "skipped")]
        raise DemoError(
            f"{dag_id} run {run_id} ended {run['state']} ({', '.join(failed)}); its logs are in "
            f"the Airflow UI ({stack.url}/dags/{dag_id}) and under {stack.home / 'logs'}"
        )
    _say(f"    {dag_id}: {run['state']} (waited {took:.0f} s)")
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ys1000_dev.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=Path(".sandbox"), help="sandbox directory (default .sandbox)")
    p.add_argument(
        "--config",
        type=Path,
        default=repo_root() / "config",
        help="ys1000 config directory (default: the example config/)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="Airflow API server / UI port (default: 8080, or a free one when 8080 is taken; the address is printed)",
    )
    p.add_argument(
        "--no-wait", action="store_true", help="stop everything at the end and exit (0 only when every step worked)"
    )
    a = p.parse_args(argv)
    root = a.dir.resolve()
    config_dir = a.config.resolve()
    # 8080 when free, else a free port; either moves to another free port if taken before the
    # api-server binds it (a --port given is kept, or the demo fails). stack.url is what is printed.
    port = a.port or (8080 if port_is_free(8080) else free_port())
    port_attempts = 1 if a.port else None

    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000_dev.sandbox import supervisor

    step = Steps()
    stack: AirflowStack | None = None
    db = None
    started_sandbox = False
    ok = False
    # SIGTERM (e.g. from a CI runner) ends the demo like Ctrl-C: everything is stopped
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    try:
        step(f"sandbox: 2 local Kubernetes clusters + S3 in {root}")
        started_sandbox = not supervisor.status(root)  # (set first: Ctrl-C during up() stops it too)
        info = supervisor.up(root)
        for name, c in info["clusters"].items():
            _say(
                f"    cluster {name}: {c['server']} (Kubernetes {c.get('version', '?')}); "
                f"kubectl --kubeconfig {c['kubeconfig']} get all -A"
            )
        _say(
            f"    S3: {info['s3']['endpoint_url']} (bucket {info['s3']['bucket']}; credentials in {info['s3']['env_file']})"
        )
        source, target = _kube(info, "source"), _kube(info, "target")

        step(f"sample application (WordPress + MySQL) in namespace {NAMESPACE} of cluster source")
        manifests = deploy_app(source)
        kinds = sorted({m["kind"] for m in manifests})
        _say(f"    {len(manifests)} objects ({', '.join(kinds)}), pods running, content on PVCs {', '.join(CONTENT)}")

        step("the app's database: a real MariaDB on loopback (Debian package), standing in for its MySQL")
        from ys1000_dev.sandbox import databases, sampleapp

        db = databases.start_mariadb(
            root / "mariadb", user=sampleapp.DB_USER, password=sampleapp.SECRET_VALUE, init_sql=sampleapp.WP_OPTIONS_SQL
        )
        config_dir = demo_config(config_dir, root / "config", db.port)
        _say(f"    MariaDB at {db.host}:{db.port}; siteurl = {site_url(db)}; config copied to {config_dir}")

        step(f"Airflow (api-server, scheduler, dag-processor, triggerer) in {root / 'airflow'}")
        env = sandbox_env(root) | {"YS1000_CONFIG_DIR": str(config_dir)}
        stack = AirflowStack.standalone(
            root / "airflow", env, port=port, **({"port_attempts": port_attempts} if port_attempts else {})
        )
        t = time.monotonic()
        stack.start(on_migrated=_create_pools)
        client = stack.client()
        for dag_id in (BACKUP_DAG, RESTORE_PLAN_DAG, GENERIC_RESTORE_DAG, MIGRATE_DAG):
            client.wait_for_dag(dag_id)
        if errors := client.import_errors():
            raise DemoError("DAG import errors: " + "; ".join(e.get("stack_trace", "")[-300:] for e in errors))
        _say(
            f"    healthy in {time.monotonic() - t:.0f} s at {stack.url}; config {config_dir}; "
            f"logs {stack.home / 'process-logs'}"
        )

        step(f"backup: {BACKUP_DAG} triggered through the REST API (its drill DAG waits for the asset)")
        client.unpause(DRILL_DAG)
        run_id = _trigger(client, BACKUP_DAG)
        _wait(client, stack, BACKUP_DAG, run_id)
        summary = _xcom(client, BACKUP_DAG, run_id, "commit")
        counts = ", ".join(f"{k} {v}" for k, v in sorted((summary.get("counts") or {}).items()))
        backup_id = summary["backup_id"]
        _say(
            f"    backup {backup_id}: {summary['status']}, {summary['objects']} objects, "
            f"{summary['volumes']} volume(s), archive {summary['archive_bytes']} bytes"
        )
        _say(f"    {counts}")

        step(f"drill: {DRILL_DAG}, started by the backup's asset event, proves the backup restores")
        drill_run = wait_until(
            lambda: client.get(f"/api/v2/dags/{DRILL_DAG}/dagRuns")["dag_runs"],
            timeout=120,
            what=f"{DRILL_DAG} to start after the backup",
            interval=1.0,
        )[0]["dag_run_id"]
        _wait(client, stack, DRILL_DAG, drill_run)
        drill = _xcom(client, DRILL_DAG, drill_run, "drill")
        _say(
            f"    backup {drill['backup_id']} verified by drill {drill['drill_id']}: RTO {drill['rto_seconds']:.0f} s "
            "(restored into a scratch namespace with every PVC byte read back, workloads ready, checks "
            "site-config, database, posts passed; the scratch namespace removed)"
        )

        step(f"disaster: namespace {NAMESPACE} deleted")
        took = _delete_namespace(source, NAMESPACE)
        _say(f"    namespace {NAMESPACE} is gone ({took:.0f} s)")
        _delete_namespace(target, RESTORED_ELSEWHERE[1])  # an earlier demo's restore

        step(
            f"restore: {GENERIC_RESTORE_DAG} back into source, {RESTORE_PLAN_DAG} into "
            f"{RESTORED_ELSEWHERE[0]} as {RESTORED_ELSEWHERE[1]}"
        )
        back = _trigger(
            client,
            GENERIC_RESTORE_DAG,
            {"backup": backup_id, "plan": BACKUP_PLAN, "repository": "sandbox-s3", "target_cluster": "source"},
        )
        other = _trigger(client, RESTORE_PLAN_DAG)
        for dag_id, rid in ((GENERIC_RESTORE_DAG, back), (RESTORE_PLAN_DAG, other)):
            _wait(client, stack, dag_id, rid)
            r = _restore_summary(client, dag_id, rid)
            _say(
                f"    {dag_id}: restore {r['restore_id']} of {r['backup_id']}: {r['status']}; "
                + ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
            )

        step("check: the application's objects and volume content are back")
        problems: list[str] = []
        for label, kube, ns in (("source", source, NAMESPACE), (RESTORED_ELSEWHERE[0], target, RESTORED_ELSEWHERE[1])):
            _say(f"    cluster {label}, namespace {ns}:")
            problems += [f"{label}/{ns}: {x}" for x in check_app(kube, ns, manifests)]
        if problems:
            raise DemoError("the restored application is incomplete:\n  " + "\n  ".join(problems))

        step(f"migration: {MIGRATE_DAG}, source/{NAMESPACE} → target/{MIGRATED} (incremental sync, then cutover)")
        if took := _delete_namespace(target, MIGRATED):
            _say(f"    removed the namespace {MIGRATED} left by an earlier demo ({took:.0f} s)")
        for mode in ("incremental", "cutover"):
            rid = _trigger(client, MIGRATE_DAG, {"mode": mode})
            _wait(client, stack, MIGRATE_DAG, rid)
            sync = _xcom(client, MIGRATE_DAG, rid, "sync_commit")
            _say(f"    {mode}: sync {sync['backup_id']} sent {sync['bytes_sent']} bytes")
        from ys1000.kube import Discovery

        disc = Discovery.load(target)
        ingress = target.get(disc.by_kind("Ingress", "networking.k8s.io").path(MIGRATED, "wordpress"))
        host = ingress["spec"]["rules"][0]["host"]
        replicas = target.get(disc.by_kind("Deployment", "apps").path(MIGRATED, "wordpress"))["spec"]["replicas"]
        src_replicas = source.get(disc.by_kind("Deployment", "apps").path(NAMESPACE, "wordpress"))["spec"]["replicas"]
        url = site_url(db)
        _say(
            f"    target/{MIGRATED}: Deployment wordpress at {replicas} replicas (source now {src_replicas}); "
            f"Ingress host {host}; WordPress siteurl {url} (rewritten by the PostRestore hook)"
        )
        problems = [x for x in check_app(target, MIGRATED, manifests)]
        if url != NEW_URL or host != NEW_URL.split("//")[1] or replicas != 2 or src_replicas != 0:
            problems.append(
                f"after the cutover: siteurl {url}, Ingress host {host}, replicas {replicas}/{src_replicas}"
            )
        if problems:
            raise DemoError("the migrated application is not as expected:\n  " + "\n  ".join(problems))
        ok = True
        _say(
            f"\nDEMO OK: backup {backup_id} restored into source/{NAMESPACE} and "
            f"{RESTORED_ELSEWHERE[0]}/{RESTORED_ELSEWHERE[1]}, migrated to target/{MIGRATED} "
            f"in {time.monotonic() - step.t0:.0f} s"
        )
    except KeyboardInterrupt:
        _say("\ninterrupted")
    except Exception as exc:  # report, then (interactive) keep Airflow up for a look at the logs
        _say(f"\nDEMO FAILED: {type(exc).__name__}: {exc}")
        if stack is not None:
            for name in ("scheduler", "api-server"):
                tail = stack.log_tail(name, 15)
                if tail:
                    _say(f"--- {name} log (last lines; all in {stack.home / 'process-logs'}) ---\n{tail}")
    try:
        if stack is not None and stack.procs.procs:
            _say(
                f"\nAirflow UI: {stack.url}  (user: admin, password: {stack.admin_password()}; "
                f"stored in {stack.password_file})"
            )
            _say(f"  DAGs: {stack.url}/dags/{BACKUP_DAG}  {stack.url}/dags/{GENERIC_RESTORE_DAG}")
            _say(f"  CLI:  . {stack.write_env_file()} && airflow dags list")
        if not a.no_wait and stack is not None and stack.procs.procs:
            _say("Airflow and the sandbox keep running; Ctrl-C stops everything.")
            try:
                while True:
                    signal.pause()
            except KeyboardInterrupt:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave things half-stopped
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _say("\nstopping ...")
        if stack is not None:
            stack.stop()
            _say("    Airflow stopped")
        if db is not None:
            db.stop()
            _say("    MariaDB stopped")
        if started_sandbox:
            supervisor.down(root)
            _say("    sandbox stopped")
        elif supervisor.status(root):
            _say(f"    the sandbox was already running before the demo: left running ({root})")
    _say("demo finished" + ("" if ok else " (with errors)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
