"""Resources at scale (issue 17): 100,000 objects in 1,000 namespaces, against floors in the same run.

Each namespace holds 100 labelled objects: 35 ConfigMaps, 30 Secrets, 5 Services, 5 Deployments
(0 replicas), 5 Roles, 5 RoleBindings and 15 custom resources of a namespaced CRD; the cluster
adds its own (a ReplicaSet per Deployment, Endpoints/EndpointSlices per Service, the default
ServiceAccount, kube-root-ca.crt). ``YS1000_BENCH_SCALE`` (default 1) scales the namespace count
(0.05: 50 namespaces, 5,000 objects). Creating them is setup, not measured.

Figures, each a ratio to a floor measured in the same run:

* **backup** (one plan selecting every namespace by label, the CLI in its own process) against
  the paginated-list floor: ``GET`` of every namespaced kind the backup reads, cluster-wide,
  ``limit=500`` with ``continue``, through the same Python client (each page parsed) — in
  alternating rounds, best of each. Target ≤ 1.3×. The same selection as 1,000 one-namespace
  plans (``run_backup`` in process, 4 at a time), printed against the same floor.
* **peak memory** of the backup process (GNU time's max RSS). Target ≤ 1 GiB.
* **restore of every namespace** (the CLI, one run, each namespace mapped to a new name beside
  its source: deleting 1,000 namespaces first would take the namespace controller longer than
  the rest) against ``kubectl create -f`` of the same (already transformed) documents. kubectl
  is measured on a sample of 2 % of the namespaces and scaled to all of them (one object after
  the other: its cost per namespace is that of the cluster it meets). The full restore doubles
  the cluster, and a create costs the API server more in a bigger cluster, so the sample is
  measured before the full restore and again after it, and scaled from the mean of both ends;
  ys1000 restores the same sample too, alternating with kubectl, so like-for-like ratios at
  both ends and the full-run ratio are printed. Target ≥ 1.5× faster.
* **restore of one namespace** out of the whole backup against the same namespace restored from
  a backup of that namespace alone (made like the one-namespace plans'), alternating. "Proportional
  to the namespace" means a ratio near 1; the time to read through the whole archive is printed
  beside it. The restore reads only the gzip members holding that namespace (ranged GETs, see
  ``ys1000.repository.repository``); what still grows with the backup is reading its index.

Run it alone with ``python -m benchmarks scale``; ``YS1000_BENCH_REPEAT`` (default 2) sets the
alternating rounds.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ys1000.backup import BackupSpec
from ys1000.backup.capture import SKIPPED_TYPES
from ys1000.backup.pipeline import run_backup
from ys1000.kube import Discovery, Kube, ResourceType
from ys1000.kube.discovery import CRDS, NAMESPACES
from ys1000.repository import RepositoryConfig, open_repository
from ys1000.restore.transforms import RestoreOptions, transform
from ys1000.waiting import wait_until

from benchmarks.resources import YS1000, ControlPlaneIdle, _kubectl, measured, objects

PER_NAMESPACE: dict[str, int] = {
    "ConfigMap": 35,
    "Secret": 30,
    "Service": 5,
    "Deployment": 5,
    "Role": 5,
    "RoleBinding": 5,
    "Widget": 15,
}
GROUP = "scale.ys1000.io"
LABEL = "ys1000-scale=true"
RESTORED_KINDS = [*PER_NAMESPACE, "Namespace"]
KEY = "bench"


def _scale() -> float:
    return float(os.environ.get("YS1000_BENCH_SCALE", "1"))


def document(kind: str, i: int) -> dict:
    if kind in ("ConfigMap", "Secret", "Service", "Deployment"):
        return objects(kind, i)
    name = f"{kind.lower()}-{i:05d}"
    labels = {"bench": "true", "tier": f"t{i % 7}"}
    if kind == "Role":
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
            ],
        }
    if kind == "RoleBinding":
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"role-{i:05d}"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}],
        }
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": i, "color": ["red", "green", "blue"][i % 3], "items": [f"item-{j}" for j in range(10)]},
    }


CRD: dict = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def namespace_names(n: int) -> list[str]:
    return [f"scale-{i:04d}" for i in range(n)]


def populate(kube: Kube, names: list[str]) -> Discovery:
    """The CRD, the namespaces (labelled) and their objects, 32 requests in flight."""
    kube.create(CRDS, CRD)
    wait_until(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (kube.get(CRDS.path(name=CRD["metadata"]["name"])).get("status") or {}).get("conditions") or []
        ),
        timeout=60,
        what="the Widget CRD to be established",
    )
    found = wait_until(lambda: _with_widgets(kube), timeout=60, what="discovery to serve widgets")
    assert found is not None
    disc = found
    types = {k: _type(disc, k) for k in PER_NAMESPACE}
    t0 = time.perf_counter()
    done = 0
    lock = threading.Lock()

    def one_namespace(ns: str) -> None:
        nonlocal done
        kube.create(NAMESPACES, {"metadata": {"name": ns, "labels": {"ys1000-scale": "true"}}})
        for kind, n in PER_NAMESPACE.items():
            for i in range(n):
                kube.create(types[kind], document(kind, i), ns)
        with lock:
            done += 1
            if done % 100 == 0:
                print(f"  {done} namespaces created, {time.perf_counter() - t0:.0f} s", flush=True)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one_namespace, names))
    return disc


def _type(disc: Discovery, kind: str) -> ResourceType:
    rt = disc.by_kind(kind)
    assert rt is not None, kind
    return rt


def _with_widgets(kube: Kube) -> Discovery | None:
    disc = Discovery.load(kube)
    return disc if disc.by_kind("Widget") else None


def controllers_done(kube: Kube, disc: Discovery, names: list[str], timeout: float = 1800) -> float:
    """Wait until the deployment controller has made a ReplicaSet for every Deployment.

    It makes them at its own pace (≈ 10 min for 5,000 on 2 cores), in bursts the CPU-idle check
    can fall between: measured before it ends, the floor and the backup each see another number
    of objects and share the cores with it (a run listed 115,162 objects in its backup, 121,538
    in its floor)."""
    want = PER_NAMESPACE["Deployment"] * len(names)
    replicasets = _type(disc, "ReplicaSet")
    wanted = set(names)
    t0 = time.perf_counter()

    def made() -> bool:
        n = sum(1 for rs in kube.list(replicasets, page_size=500) if rs["metadata"]["namespace"] in wanted)
        print(f"  {n} of {want} ReplicaSets made, {time.perf_counter() - t0:.0f} s", flush=True)
        return n >= want

    wait_until(made, timeout=timeout, interval=15, what=f"{want} ReplicaSets")
    return time.perf_counter() - t0


def list_floor(kube: Kube, types: list[ResourceType]) -> tuple[float, int]:
    """Paginated LIST (limit 500 + continue) of every type, cluster-wide, one after the other."""
    t0 = time.perf_counter()
    n = sum(1 for rt in types for _ in kube.list(rt, page_size=500))
    return time.perf_counter() - t0, n


def backup_types(disc: Discovery) -> list[ResourceType]:
    """The namespaced types a backup lists (capture.py's selection with no kind filter)."""
    return [rt for rt in disc.namespaced() if (rt.group, rt.resource) not in SKIPPED_TYPES and "list" in rt.verbs]


def delete_namespaces(kube: Kube, names: list[str], timeout: float = 1800) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda ns: kube.delete(NAMESPACES, ns), names))
    wanted = set(names)
    wait_until(
        lambda: not wanted & {n["metadata"]["name"] for n in kube.list(NAMESPACES)},
        timeout=timeout,
        interval=2,
        what=f"{len(names)} namespaces to be deleted",
    )
    return time.perf_counter() - t0


def run(sandbox: dict, workdir: Path) -> dict:
    kubeconfig = sandbox["clusters"]["source"]["kubeconfig"]
    kube = Kube.from_kubeconfig(kubeconfig, name="source")
    kubectl = _kubectl()
    scale = _scale()
    names = namespace_names(max(2, round(1000 * scale)))
    rounds = max(1, int(os.environ.get("YS1000_BENCH_REPEAT", "2")))
    out: dict = {"scale": scale, "namespaces": len(names)}
    print(f"scale {scale}: {len(names)} namespaces × {sum(PER_NAMESPACE.values())} objects", flush=True)
    t0 = time.perf_counter()
    disc = populate(kube, names)
    out["setup_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"created in {out['setup_seconds']} s", flush=True)
    # a control plane holding 100k objects never drops below ~0.2 CPU s/s (its controllers'
    # periodic resyncs): "idle" is below 0.3 here, or every wait would run to its timeout
    idle = ControlPlaneIdle(sandbox["dir"], threshold=0.3 if len(names) > 200 else 0.1)
    out["controllers_seconds"] = round(controllers_done(kube, disc, names), 1)
    idle.wait(timeout=600)
    env = {"YS1000_REPO_KEY": KEY, "KUBECONFIG": kubeconfig}
    repo_dir = workdir / "repo"
    repo_args = ["--repo", f"local://{repo_dir}"]
    types = backup_types(disc)

    # -- backup of every namespace, one plan selecting them by label, vs the list floor ----------
    floor_runs, backup_runs, backup_rss, backup_id, backup_objects, listed = [], [], 0.0, "", 0, 0
    for i in range(rounds):
        for step in ("floor", "backup") if i % 2 == 0 else ("backup", "floor"):
            idle.wait()
            if step == "floor":
                wall, listed = list_floor(kube, types)
                floor_runs.append(wall)
                print(f"  list floor: {wall:.2f} s, {listed} objects of {len(types)} types", flush=True)
                continue
            wall, rss, text = measured(
                [
                    YS1000,
                    "backup",
                    "--namespace-selector",
                    LABEL,
                    *repo_args,
                    "--plan",
                    "scale-all",
                    "--id",
                    f"scale-all-{i}",
                    "--scope",
                    "resources",
                    "--max-namespaces",
                    "100000",
                    "-o",
                    "json",
                    "--no-progress",
                ],
                env,
            )
            backup_runs.append(wall)
            backup_rss = max(backup_rss, rss)
            backup_id, backup_objects = json.loads(text)["backup_id"], json.loads(text)["objects"]
    floor, best = min(floor_runs), min(backup_runs)
    out |= {
        "objects_in_backup": backup_objects,
        "objects_listed_by_floor": listed,
        "backup_seconds": round(best, 2),
        "list_floor_seconds": round(floor, 2),
        "backup_ratio": round(best / floor, 2),
        "backup_samples_seconds": [round(x, 2) for x in backup_runs],
        "list_floor_samples_seconds": [round(x, 2) for x in floor_runs],
        "backup_peak_mib": round(backup_rss),
    }
    print(json.dumps(out), flush=True)
    repo = open_repository(RepositoryConfig(type="local", path=str(repo_dir)), KEY)

    def one_plan(ns: str, tag: str = "") -> str:
        spec = BackupSpec(
            backup_id=f"ns-{ns}{tag}", plan=f"plan-{ns}", namespaces=[ns], scope="resources", cluster_name="source"
        )
        return run_backup(kube, repo, spec).manifest.backup_id

    def restore_cmd(bid: str, only: list[str], mapping: dict[str, str]) -> list[str]:
        cmd = [YS1000, "restore", bid, *repo_args, "-o", "json", "--no-progress"]
        for ns in only:
            cmd += ["-n", ns]
        for old, new in mapping.items():
            cmd += ["--namespace-mapping", f"{old}={new}"]
        for kind in RESTORED_KINDS:
            cmd += ["--include-kind", kind]
        return cmd

    def ys1000_restore(cmd: list[str]) -> tuple[float, float, int]:
        wall, rss, text = measured(cmd, env)
        report = json.loads(text)
        failed = report["counts"].get("failed", 0)
        if failed:
            raise RuntimeError(f"restore failed for {failed} objects: {text[:2000]}")
        return wall, rss, report["counts"].get("created", 0)

    # -- one namespace: out of the whole backup vs out of a backup of that namespace alone --------
    # (restored under a new name, so the source namespaces stay; each target deleted after)
    sample = sorted(random.Random(17).sample(names, min(len(names), max(2, len(names) // 50))))
    one = sample[len(sample) // 2]
    own = one_plan(one, "-own")
    idle.wait()
    t0 = time.perf_counter()
    read = sum(1 for _ in repo.iter_documents(backup_id))
    read_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_small = sum(1 for _ in repo.iter_documents(own))
    read_one = time.perf_counter() - t0
    big_runs: list[float] = []
    small_runs: list[float] = []
    for i in range(rounds + 1):
        for step in ("big", "small") if i % 2 == 0 else ("small", "big"):
            target = f"one-{step}-{i}"
            idle.wait()
            wall, _, _ = ys1000_restore(restore_cmd(backup_id if step == "big" else own, [one], {one: target}))
            (big_runs if step == "big" else small_runs).append(wall)
            delete_namespaces(kube, [target])
        if i == 0:
            print(
                f"  warm-up round: from all {big_runs.pop():.2f} s, from its own {small_runs.pop():.2f} s", flush=True
            )
    big, small = min(big_runs), min(small_runs)
    out |= {
        "one_namespace_from_all_seconds": round(big, 2),
        "one_namespace_from_own_backup_seconds": round(small, 2),
        "one_namespace_ratio": round(big / small, 2),
        "read_whole_archive_seconds": round(read_all, 2),
        "read_whole_archive_objects": read,
        "read_one_namespace_archive_seconds": round(read_one, 3),
        "read_one_namespace_archive_objects": read_small,
    }
    print(json.dumps(out), flush=True)

    # -- the same as one plan per namespace, through the engine (run_backup), 4 at a time ---------
    idle.wait()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one_plan, names))
    plans_wall = time.perf_counter() - t0
    out |= {
        "plans": len(names),
        "plans_backup_seconds": round(plans_wall, 2),
        "plans_backup_ratio": round(plans_wall / floor, 2),
    }
    print(f"  {len(names)} one-namespace plans: {plans_wall:.2f} s", flush=True)

    # -- restore of a sample, kubectl vs ys1000, alternating; then of every namespace ----------
    # Into new namespaces (``<tag>-<ns>``) beside the sources: deleting 1,000 namespaces first
    # would take the namespace controller longer than the rest of the benchmark.
    docs: dict[str, list[dict]] = {}
    for ns in sample:
        docs[ns] = [
            transform(obj, RestoreOptions(namespace_mapping={ns: "NAMESPACE"}))
            for kind in PER_NAMESPACE
            for obj in kube.list(_type(disc, kind), ns, label_selector="bench=true")
        ]

    def kubectl_sample(tag: str) -> float:
        for ns in sample:
            kube.create(NAMESPACES, {"metadata": {"name": f"{tag}-{ns}"}})
        listfile = workdir / f"{tag}.json"
        items = [
            json.loads(json.dumps(d).replace('"NAMESPACE"', json.dumps(f"{tag}-{ns}")))
            for ns in sample
            for d in docs[ns]
        ]
        listfile.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        wall, _, _ = measured([kubectl, "--kubeconfig", kubeconfig, "create", "-f", str(listfile)])
        return wall

    def sample_rounds(when: str) -> tuple[float, float]:
        """Best of the alternating rounds: kubectl's and ys1000's restore of the sample."""
        k_runs, y_runs = [], []
        for i in range(rounds + 1):
            for step in ("kubectl", "ys1000") if i % 2 == 0 else ("ys1000", "kubectl"):
                tag = f"{step[0]}{when[0]}{i}"
                idle.wait()
                if step == "kubectl":
                    k_runs.append(kubectl_sample(tag))
                else:
                    wall, _, _ = ys1000_restore(restore_cmd(backup_id, sample, {ns: f"{tag}-{ns}" for ns in sample}))
                    y_runs.append(wall)
                delete_namespaces(kube, [f"{tag}-{ns}" for ns in sample])
            if i == 0:
                print(f"  warm-up round: kubectl {k_runs.pop():.2f} s, ys1000 {y_runs.pop():.2f} s", flush=True)
        return min(k_runs), min(y_runs)

    k_before, y_before = sample_rounds("before")
    out |= {
        "restore_sample_namespaces": len(sample),
        "restore_sample_seconds": round(y_before, 2),
        "kubectl_create_sample_seconds": round(k_before, 2),
        "restore_sample_speedup": round(k_before / y_before, 2),
    }
    print(json.dumps(out), flush=True)
    idle.wait(timeout=600)
    r_wall, r_rss, restored = ys1000_restore(restore_cmd(backup_id, [], {ns: f"r-{ns}" for ns in names}))
    # The full restore takes the cluster from the sources' objects to twice as many, and each
    # create costs the API server more in a bigger cluster (Services most). kubectl's sample is
    # measured again at that end, and its cost per namespace taken as the mean of both ends (the
    # cluster grows steadily through the restore): a sample measured at the start only would
    # price every kubectl create at the small cluster's cost. The end is measured once the
    # deployment controller has made the restored Deployments' ReplicaSets (≈ 10 min at its own
    # pace): measured during that backlog, both sides' rounds scattered from 6 to 14 s.
    after_controllers = controllers_done(kube, disc, [f"r-{ns}" for ns in names])
    idle.wait(timeout=600)
    k_after, y_after = sample_rounds("after")
    kubectl_all = (k_before + k_after) / 2 * len(names) / len(sample)
    out |= {
        "restore_all_controllers_seconds": round(after_controllers, 1),
        "restore_sample_after_seconds": round(y_after, 2),
        "kubectl_create_sample_after_seconds": round(k_after, 2),
        "restore_sample_after_speedup": round(k_after / y_after, 2),
        "kubectl_create_all_seconds_scaled": round(kubectl_all, 2),
        "restore_all_objects": restored,
        "restore_all_seconds": round(r_wall, 2),
        "restore_all_speedup": round(kubectl_all / r_wall, 2),
        "restore_all_peak_mib": round(r_rss),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return out
