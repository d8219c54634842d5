"""Airflow on Kubernetes (issue 17): real Airflow processes (api-server, scheduler, dag-processor,
triggerer; SQLite) with the **KubernetesExecutor** against the sandbox. The scheduler creates one
worker pod per task through the source cluster's real API server, in a namespace of its own; the
sandbox's node agent runs each pod (labelled ``ys1000.io/executable=true``) as a local process,
with the environment of the pod template only — connections and the repository key come from a
Kubernetes Secret through ``envFrom``, as in ``deploy/helm``.

- A backup of a namespace with a PVC holding bytes ends in success; every task try ran in its own
  worker pod (the volume task in two: before and after its deferred wait), each pod Succeeded; the
  backup is Completed with the PVC's volume record and its restic data restores to the same bytes.
- A worker pod deleted while its task runs (the volume task resuming after its mover finished:
  the workers' path to the API server is cut while the task waits deferred, so the resumed try
  cannot get past its first call and is certainly running when the pod is deleted) gives a retry
  that succeeds: the node agent stops the pod's processes, the scheduler fails try 1 when its
  heartbeats stop (up for retry), try 2 succeeds; the finished mover Job and its Secret the killed
  try left behind are removed by the retry; no mover Job or Secret is left; the data restores byte
  for byte.
- The Helm values (``deploy/helm/values.yaml``) validate against the official chart's
  ``values.schema.json`` (vendored excerpt, ``fixtures/``), and the RBAC manifests apply to the
  sandbox with a server-side dry run (``kubectl apply --dry-run=server``).

The triggerer reaches the API server directly, the workers through a toxiproxy (``ys1000_source``
of the Secret): the cut stops only the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from af_helpers import copy_config, set_bucket, write_plan
from e2e_helpers import (
    all_tis,
    backup_plan,
    create_pools,
    dump_logs,
    movers_in,
    open_repo,
    pv_dir,
    xcom,
)
from test_mapped_volumes import files_under, restic_restore

from ys1000.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "deploy" / "helm"
SCHEMA = Path(__file__).parent / "fixtures" / "airflow-chart-values.schema.json"
PLAN = "k8s-backup"
DAG = f"ys1000_backup__{PLAN}"
PVC = "data"
SECRET = "ys1000-airflow-connections"


def token_kubeconfig(cluster, dest: Path, namespace: str, account: str, address: str | None = None) -> Path:
    """A kubeconfig with a token of ServiceAccount ``namespace/account`` (the cluster's server and
    CA; reached at ``address`` host:port when given)."""
    token = cluster.core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 7200}}
    ).status.token
    server = dict(yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"])
    if address:
        server["server"] = f"https://{address}"
    dest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
                "current-context": "c",
            }
        )
    )
    dest.chmod(0o600)
    return dest


def deployment_rbac(airflow_ns: str, tag: str) -> list[dict]:
    """deploy/helm/rbac.yaml for the test's namespace: ``airflow`` → ``airflow_ns``, the
    cluster-scoped bindings' names suffixed with ``tag`` (several runs can share a sandbox)."""
    docs = [d for d in yaml.safe_load_all((HELM / "rbac.yaml").read_text()) if d]
    for d in docs:
        md = d["metadata"]
        if md.get("namespace") == "airflow":
            md["namespace"] = airflow_ns
        if d["kind"] == "ClusterRoleBinding":
            md["name"] = f"{md['name']}-{tag}"
        for s in d.get("subjects", []):
            if s.get("namespace") == "airflow":
                s["namespace"] = airflow_ns
    return docs


@pytest.fixture(scope="module")
def k8s_env(sandbox, sandbox_s3, source, tmp_path_factory):
    """A config dir with one backup plan (a namespace with one PVC holding bytes), a fresh bucket,
    the namespace the worker pods run in with the Secret of connections and the repository key,
    and a toxiproxy between the workers and the source cluster's API server.

    The deployment's RBAC is real: deploy/rbac/'s ClusterRoles and deploy/helm/rbac.yaml are
    applied, and the scheduler (executor), the workers and the triggerer reach the API server
    with tokens of their own ServiceAccounts only."""
    from kubernetes import client
    from kubernetes.utils import create_from_dict

    from ys1000.airflow.bootstrap import connection_env, kubernetes_connection
    from ys1000.kube import Kube
    from ys1000_dev.sandbox.connections import SANDBOX_CLUSTER_CONNECTIONS, sandbox_env
    from ys1000_dev.toxiproxy import Toxiproxy

    base = tmp_path_factory.mktemp("k8s-executor")
    tag = uuid.uuid4().hex[:8]
    bucket = sandbox_s3.new_bucket(f"k8s-{tag}")
    cdir = copy_config(base / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    app_ns, airflow_ns = f"k8s-app-{tag}", f"airflow-{tag}"
    for ns in (app_ns, airflow_ns):
        source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    source.core.create_namespaced_persistent_volume_claim(
        app_ns,
        {
            "metadata": {"name": PVC},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "ys1000-local",
                "resources": {"requests": {"storage": "64Mi"}},
            },
        },
    )
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    root = pv_dir(kube, app_ns, PVC)
    (root / "first.bin").write_bytes(os.urandom(512 << 10))
    (root / "notes").mkdir()
    (root / "notes" / "hello.txt").write_text("written before the first backup\n")
    write_plan(cdir, f"{PLAN}.yaml", backup_plan(PLAN, app_ns))

    # the product's ClusterRoles (kept when they exist) and the deployment's Roles and bindings
    created_roles, bindings = [], []
    for f in ("backup.yaml", "restore.yaml", "movers-hooks.yaml"):
        for d in yaml.safe_load_all((ROOT / "deploy" / "rbac" / f).read_text()):
            try:
                create_from_dict(source.api(), d)
                created_roles.append(d["metadata"]["name"])
            except Exception as exc:  # FailToCreateError wrapping a 409: already there
                if "AlreadyExists" not in str(exc):
                    raise
    for account in ("scheduler", "worker", "triggerer", "api-server", "dag-processor"):
        source.core.create_namespaced_service_account(airflow_ns, {"metadata": {"name": f"ys1000-airflow-{account}"}})
    for d in deployment_rbac(airflow_ns, tag):
        create_from_dict(source.api(), d)
        if d["kind"] == "ClusterRoleBinding":
            bindings.append(d["metadata"]["name"])

    proxy_server = Toxiproxy.start(base / "toxiproxy.log")
    try:
        server = yaml.safe_load(Path(source.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
        api_proxy = proxy_server.proxy(f"workers-api-{tag}", urlsplit(server).netloc)
        scheduler_kubeconfig = token_kubeconfig(
            source, base / "scheduler.kubeconfig", airflow_ns, "ys1000-airflow-scheduler"
        )
        triggerer_kubeconfig = token_kubeconfig(
            source, base / "triggerer.kubeconfig", airflow_ns, "ys1000-airflow-triggerer"
        )
        worker_kubeconfig = token_kubeconfig(
            source, base / "worker.kubeconfig", airflow_ns, "ys1000-airflow-worker", address=api_proxy.listen
        )
        source_conn = SANDBOX_CLUSTER_CONNECTIONS["source"]
        # the Airflow components (the triggerer runs the volume tasks' waits) as the triggerer
        env = sandbox_env(sandbox["dir"]) | connection_env(
            [kubernetes_connection(source_conn, triggerer_kubeconfig)], {}
        )
        # the workers' connections and key, as a Secret (deploy/helm: extraEnvFrom); their
        # source cluster as the worker ServiceAccount, through the proxy
        worker_conns = dict(env) | connection_env([kubernetes_connection(source_conn, worker_kubeconfig)], {})
        assert sorted(worker_conns) == [
            "AIRFLOW_CONN_YS1000_S3",
            "AIRFLOW_CONN_YS1000_SOURCE",
            "AIRFLOW_CONN_YS1000_TARGET",
            "AIRFLOW_VAR_YS1000_REPO_KEY",
        ], sorted(worker_conns)
        source.core.create_namespaced_secret(
            airflow_ns, {"metadata": {"name": SECRET}, "type": "Opaque", "stringData": worker_conns}
        )
        yield SimpleNamespace(
            base=base,
            config_dir=cdir,
            bucket=bucket,
            app_ns=app_ns,
            airflow_ns=airflow_ns,
            kube=kube,
            proxy=api_proxy,
            scheduler_kubeconfig=scheduler_kubeconfig,
            env=env
            | {
                "YS1000_CONFIG_DIR": str(cdir),
                # the finished worker pods stay, as evidence of where each task ran
                "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "False",
                # a loaded test machine answers late (the default, 5 s, fails a worker there)
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                # a worker pod deleted mid-task may end "Succeeded" (its supervisor exits 0 once
                # the task process is gone) without reporting the task: the scheduler fails the
                # try when its heartbeats stop, after this long (default 300 s)
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
            },
        )
    finally:
        proxy_server.stop()
        rbac = client.RbacAuthorizationV1Api(source.api())
        for name in bindings:
            rbac.delete_cluster_role_binding(name)
        for name in created_roles:
            rbac.delete_cluster_role(name)
        for ns in (app_ns, airflow_ns):
            try:
                source.core.delete_namespace(ns)
            except Exception:
                pass


@pytest.fixture(scope="module")
def stack(k8s_env, source):
    from ys1000_dev.processes import AirflowStack

    s = AirflowStack.kubernetes(
        k8s_env.base / "airflow",
        k8s_env.env,
        kubeconfig=k8s_env.scheduler_kubeconfig,  # the executor's own ServiceAccount
        namespace=k8s_env.airflow_ns,
        worker_secret=SECRET,
    )
    t0 = time.monotonic()
    s.start(on_migrated=create_pools)
    try:
        print(f"Airflow (KubernetesExecutor) healthy at {s.url} in {time.monotonic() - t0:.1f} s")
        c = s.client()
        c.http.timeout = httpx.Timeout(120)  # a loaded test machine answers late
        c.wait_for_dag(DAG)
        assert c.import_errors() == []
        yield s
    finally:
        if any(m.proc.poll() is not None for m in s.procs.procs.values()):
            dump_logs(s)
        s.stop()
        assert s.procs.remaining() == [], "processes of the stack survived stop()"


# -- helpers -------------------------------------------------------------------------------------


def worker_pods(cluster, ns: str, run_id: str) -> list:
    """The run's worker pods (the executor annotates each with its task instance's key)."""
    return [
        p for p in cluster.core.list_namespaced_pod(ns).items if (p.metadata.annotations or {}).get("run_id") == run_id
    ]


def pod_key(pod) -> tuple[str, int, int]:
    a = pod.metadata.annotations
    return a["task_id"], int(a.get("map_index", "-1")), int(a["try_number"])


def tries(c, run_id: str, task_id: str, map_index: int = -1) -> list[dict]:
    path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}"
    path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
    return sorted(c.get(path)["task_instances"], key=lambda t: t["try_number"])


def volume_ti(c, run_id: str) -> dict:
    (ti,) = [ti for ti in all_tis(c, DAG, run_id) if ti["task_id"] == "volumes"]
    return ti


def mover_jobs(cluster, ns: str) -> list:
    return cluster.batch.list_namespaced_job(ns, label_selector="ys1000.io/component=mover").items


def assert_backup_restores(c, run_id: str, env, sandbox_s3) -> dict:
    """The run's backup is Completed with the PVC's record, and its restic data restores to the
    PVC's bytes."""
    summary = xcom(c, DAG, run_id, "commit")
    assert summary["status"] == "Completed" and summary["volumes"] == 1, summary
    repo = open_repo(sandbox_s3, env.bucket)
    m = repo.manifest(summary["backup_id"])
    assert m.status == "Completed" and repo.verify(m.backup_id).ok
    (record,) = m.volumes
    assert (record["namespace"], record["pvc"]) == (env.app_ns, PVC) and not record.get("error"), record
    assert record["restic"]["snapshot_id"], record
    restored = restic_restore(sandbox_s3, env.bucket, record)
    try:
        assert files_under(restored) == files_under(pv_dir(env.kube, env.app_ns, PVC))
    finally:
        shutil.rmtree(restored, ignore_errors=True)
    return record


def end_leftovers_of(ti_id: str) -> list[int]:
    """End what is left of a deleted worker pod's task: the sandbox's node agent kills the pod's
    process group, but Airflow's supervisor runs the task in a group of its own (titled
    ``airflow worker -- <task instance id>``), which a kubelet would kill with the container.
    Returns the pids ended."""
    title = f"airflow worker -- {ti_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.replace(b"\0", b" ").strip().startswith(title):
            found.append(int(entry.name))
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


# -- tests ---------------------------------------------------------------------------------------


def test_backup_with_volume_data_runs_in_worker_pods(stack, k8s_env, source, sandbox_s3):
    c = stack.client()
    t0 = time.monotonic()
    run = c.trigger(DAG)["dag_run_id"]
    final = c.wait_run(DAG, run, timeout=1200)  # a worker pod starts in ~30 s to 2 min on a loaded machine
    tis = all_tis(c, DAG, run)
    assert final["state"] == "success", {ti["task_id"]: ti["state"] for ti in tis}
    print(f"backup run {run} succeeded in {time.monotonic() - t0:.1f} s")

    # every task that ran did so in worker pods of the sandbox cluster, each Succeeded; the volume
    # task in two (before its deferred wait for the mover, and after)
    ran = {(ti["task_id"], ti["map_index"], ti["try_number"]) for ti in tis if ti["state"] == "success"}
    assert {t for t, _, _ in ran} >= {"preflight", "capture", "volumes", "verify", "commit"}, ran
    # (a task reports its state before its process exits: the last pod ends a moment later)
    pods = wait_until(
        lambda: (
            (ps := worker_pods(source, k8s_env.airflow_ns, run))
            and all(p.status.phase == "Succeeded" for p in ps)
            and ps
        ),
        timeout=120,
        what="the run's worker pods to end",
    )
    assert {pod_key(p) for p in pods} == ran, sorted(pod_key(p) for p in pods)
    keys = [pod_key(p) for p in pods]
    assert keys.count(("volumes", 0, 1)) == 2, keys
    assert len(keys) == len(ran) + 1, keys
    for p in pods:
        (container,) = p.spec.containers
        assert container.command == ["/usr/bin/env"] and container.args[:3] == [
            "python",
            "-m",
            "airflow.sdk.execution_time.execute_workload",
        ], container.args[:3]
        # connections and the key only from the Secret, never in the pod spec
        assert [e.secret_ref.name for e in container.env_from] == [SECRET]
        assert not [e.name for e in container.env if e.name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]

    assert_backup_restores(c, run, k8s_env, sandbox_s3)
    assert not movers_in(source, (k8s_env.app_ns,))


def test_a_worker_pod_deleted_mid_task_gives_a_retry_that_succeeds(stack, k8s_env, source, sandbox_s3):
    c, ns = stack.client(), k8s_env.app_ns
    (pv_dir(k8s_env.kube, ns, PVC) / "second.bin").write_bytes(os.urandom(1 << 20))  # fresh bytes
    t0 = time.monotonic()
    run = c.trigger(DAG)["dag_run_id"]

    def waiting_on_its_mover():
        """The volume task has created its mover Job and deferred (it may be waiting for its
        worker pod again already), but has not started running again."""
        ti = volume_ti(c, run)
        jobs = mover_jobs(source, ns)
        return ti["state"] in ("deferred", "scheduled", "queued") and jobs and (ti, jobs)

    _, (job,) = wait_until(
        waiting_on_its_mover, timeout=600, interval=0.5, what="the volume task deferred on its mover"
    )
    job_uid = job.metadata.uid
    # cut the workers off the API server while no worker runs the task; it has not started
    # running again after the cut, so its resumed try makes its first API call after it
    k8s_env.proxy.down()
    try:
        assert volume_ti(c, run)["state"] in ("deferred", "scheduled", "queued"), volume_ti(c, run)

        def resumed_and_running():
            ti = volume_ti(c, run)
            if ti["state"] != "running":
                return None
            pods = [
                p
                for p in worker_pods(source, k8s_env.airflow_ns, run)
                if pod_key(p) == ("volumes", 0, 1) and p.status.phase == "Running"
            ]
            return pods and (ti, pods)

        ti, pods = wait_until(resumed_and_running, timeout=600, interval=0.5, what="the resumed volume task running")
        assert ti["try_number"] == 1, ti
        (pod,) = pods  # the resume's pod (the first pod of the try ended Succeeded when it deferred)
        # the mover is done; the resumed try has not removed its Job and Secret (it cannot reach the API)
        done = source.batch.read_namespaced_job(job.metadata.name, ns)
        assert done.metadata.uid == job_uid and done.status.succeeded, done.status
        assert sorted(movers_in(source, (ns,))) == [f"Job/{ns}/{job.metadata.name}", f"Secret/{ns}/{job.metadata.name}"]

        source.core.delete_namespaced_pod(pod.metadata.name, k8s_env.airflow_ns)
        wait_until(
            lambda: pod.metadata.uid not in {p.metadata.uid for p in worker_pods(source, k8s_env.airflow_ns, run)},
            timeout=120,
            what=f"worker pod {pod.metadata.name} to be gone",
        )
        ended = end_leftovers_of(ti["id"])
        print(f"worker pod {pod.metadata.name} deleted; leftover task processes ended: {ended}")
        failed = wait_until(
            lambda: (t := volume_ti(c, run))["state"] in ("up_for_retry", "failed") and t,
            timeout=300,
            what="the killed try to end",
        )
        assert failed["state"] == "up_for_retry", failed
    finally:
        k8s_env.proxy.up()

    final = c.wait_run(DAG, run, timeout=1200)
    print(f"run {run} {final['state']} {time.monotonic() - t0:.1f} s after the trigger")
    assert final["state"] == "success", {ti["task_id"]: ti["state"] for ti in all_tis(c, DAG, run)}
    vol = tries(c, run, "volumes", 0)
    assert [(t["try_number"], t["state"]) for t in vol] in (
        [(1, "failed"), (2, "success")],
        [(1, "up_for_retry"), (2, "success")],
    ), vol
    # every other task ran once
    others = {ti["task_id"]: ti["try_number"] for ti in all_tis(c, DAG, run) if ti["task_id"] != "volumes"}
    assert set(others.values()) <= {1}, others
    # the retry removed the finished mover Job and Secret the killed try left and copied again;
    # no mover Job or Secret is left
    assert not movers_in(source, (ns,))
    keys = sorted(pod_key(p) for p in worker_pods(source, k8s_env.airflow_ns, run))
    assert keys.count(("volumes", 0, 2)) == 2, keys  # the retry: before and after its wait
    assert_backup_restores(c, run, k8s_env, sandbox_s3)


# -- the deployment files ------------------------------------------------------------------------


def test_helm_values_validate_against_the_chart_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert values["executor"] == "KubernetesExecutor" and values["triggerer"]["enabled"] is True
    # the chart's root takes any key (no additionalProperties): ours must be among its documented ones
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    # the schema bites: a misspelt key inside a component and a wrong executor are refused
    with pytest.raises(jsonschema.ValidationError, match="Additional properties are not allowed .'enabeld'"):
        jsonschema.validate(values | {"triggerer": {"enabeld": True}}, schema, cls=jsonschema.Draft7Validator)
    with pytest.raises(jsonschema.ValidationError, match="'KubernetesExecuter' does not match"):
        jsonschema.validate(values | {"executor": "KubernetesExecuter"}, schema, cls=jsonschema.Draft7Validator)


def server_dry_run(source, files: list[Path]) -> list[str]:
    """``kubectl apply --dry-run=server -f ...`` (the Python client's server-side apply with
    ``dryRun=All`` where no kubectl is installed: the same request to the API server); one line
    per object."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                source.kubeconfig,
                "apply",
                "--dry-run=server",
                *(a for f in files for a in ("-f", str(f))),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(source.api())
    lines = []
    for d in (d for f in files for d in yaml.safe_load_all(f.read_text()) if d):
        res = dyn.resources.get(api_version=d["apiVersion"], kind=d["kind"])
        md = d["metadata"]
        dyn.server_side_apply(
            res, body=d, name=md["name"], namespace=md.get("namespace"), field_manager="ys1000-test", dry_run="All"
        )
        lines.append(f"{d['kind'].lower()}/{md['name']} applied (server dry run)")
    return lines


def test_rbac_manifests_apply_with_a_server_side_dry_run(source):
    """``kubectl apply --dry-run=server`` of the product's roles and the deployment's RBAC: the API
    server validates and admits every object (RBAC escalation checks included) without storing it."""
    from kubernetes import client

    files = [*sorted((ROOT / "deploy" / "rbac").glob("*.yaml")), HELM / "rbac.yaml"]
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    # a namespaced dry run needs its namespace: the ones the manifests name are created (and
    # deleted afterwards) when the sandbox has none
    existing = {n.metadata.name for n in source.core.list_namespace().items}
    made = sorted({d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")} - existing)
    for ns in made:
        source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    rbac = client.RbacAuthorizationV1Api(source.api())

    def stored() -> tuple[set, set]:
        return (
            {b.metadata.name for b in rbac.list_cluster_role_binding().items},
            {r.metadata.name for r in rbac.list_cluster_role().items},
        )

    before = stored()
    try:
        lines = server_dry_run(source, files)
        assert len(lines) == len(docs) and all(line.endswith("(server dry run)") for line in lines), lines
        assert stored() == before  # nothing was stored
    finally:
        for ns in made:
            source.core.delete_namespace(ns)
