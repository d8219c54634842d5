"""Resource backup and restore against their floors, measured in the same run.

* backup floor: ``kubectl get <kind> -n NS -o json`` for every kind in the namespace, one after
  the other — the cost of just reading the objects out of the API server;
* restore floor: ``kubectl create -f`` of the same documents (already transformed, so kubectl does
  no less work than we do) into a fresh namespace.

Targets (issue 3): backup ≤ 1.3× its floor, restore ≥ 1.5× faster than kubectl, peak memory
≤ 1 GB per 100k objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.restore.transforms import RestoreOptions, transform

KINDS = {"ConfigMap": 2000, "Secret": 1500, "Service": 1000, "Deployment": 500}
YS1000 = str(Path(sys.executable).parent / "ys1000")


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        raise SystemExit("kubectl is needed for the floors (apt-get install kubectl, or put one on PATH)")
    return found


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one command.

    GNU time reports the peak RSS of the command itself; the rusage of a child of this Python
    process would also count the pre-exec copy of this (large) process.
    """
    with tempfile.NamedTemporaryFile("r") as stats, tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-o", stats.name, "-f", "%M %U %S", *cmd], stdout=out,
                              stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        rss_kib, user, system = stats.read().split()[-3:]
        out.seek(0)
        print(f"  {Path(cmd[0]).name} {cmd[1]}: {wall:.2f} s wall, {float(user) + float(system):.2f} s CPU, "
              f"{int(rss_kib) / 1024:.0f} MiB peak", flush=True)
        return wall, int(rss_kib) / 1024, out.read().decode()


def objects(kind: str, i: int) -> dict:
    name = f"{kind.lower()}-{i:05d}"
    labels = {"bench": "true", "tier": f"t{i % 7}"}
    if kind == "ConfigMap":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "labels": labels},
                "data": {"app.properties": "\n".join(f"key{j}=value-{i}-{j}" for j in range(20))}}
    if kind == "Secret":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "labels": labels},
                "type": "Opaque", "stringData": {"password": f"pw-{i:08d}", "token": "t" * 64}}
    if kind == "Service":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "labels": labels},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": "app", "image": "registry.example.com/app:1.0",
                          "env": [{"name": f"E{j}", "value": str(j)} for j in range(10)]}]}}}}


def populate(kube: Kube, ns: str) -> int:
    disc = Discovery.load(kube)
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    work = [(disc.by_kind(k), objects(k, i)) for k, n in KINDS.items() for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda rt_obj: kube.create(rt_obj[0], rt_obj[1], ns), work))
    return len(work)


def run(sandbox: dict, workdir: Path) -> dict:
    kubeconfig = sandbox["clusters"]["source"]["kubeconfig"]
    kube = Kube.from_kubeconfig(kubeconfig)
    kubectl = _kubectl()
    ns = "bench-src"
    t0 = time.perf_counter()
    n = populate(kube, ns)
    print(f"created {n} objects in {ns} in {time.perf_counter() - t0:.1f} s")
    time.sleep(3)  # let the controllers settle (ReplicaSets, EndpointSlices)
    env = {"YS1000_REPO_KEY": "bench", "KUBECONFIG": kubeconfig}
    repo = ["--repo", f"local://{workdir / 'repo'}"]

    # backup vs its floor: reading every kind the namespace has, as JSON
    disc = Discovery.load(kube)
    kinds = sorted({rt.resource if not rt.group else f"{rt.resource}.{rt.group}"
                    for rt in disc.namespaced() if "list" in rt.verbs and rt.resource != "events"})
    floor_wall, floor_rss = 0.0, 0.0
    print(f"  floor: kubectl get of {len(kinds)} kinds")
    for k in kinds:
        w, rss, _ = measured([kubectl, "--kubeconfig", kubeconfig, "get", k, "-n", ns, "-o", "json"])
        floor_wall += w
        floor_rss = max(floor_rss, rss)
    b_wall, b_rss, out = measured([YS1000, "backup", "-n", ns, *repo, "--plan", "bench", "-o", "json",
                                   "--max-pods", "100000", "--max-pvcs", "100000"], env)
    backup_id = json.loads(out)["backup_id"]
    total = json.loads(out)["objects"]
    # the same process doing no per-object work: imports, clients, one catalog read
    _, base_rss, _ = measured([YS1000, "backups", "list", *repo, "-o", "json"], env)

    # restore vs kubectl create -f of the same (transformed) documents
    docs = []
    for k in KINDS:
        rt = disc.by_kind(k)
        for obj in kube.list(rt, ns, label_selector="bench=true"):
            docs.append(transform(obj, RestoreOptions(namespace_mapping={ns: "bench-kubectl"})))
    kube.create(NAMESPACES, {"metadata": {"name": "bench-kubectl"}})
    listfile = workdir / "docs.json"
    listfile.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    k_wall, k_rss, _ = measured([kubectl, "--kubeconfig", kubeconfig, "create", "-f", str(listfile)])
    r_wall, r_rss, out = measured([YS1000, "restore", backup_id, *repo, "--namespace-mapping",
                                   f"{ns}=bench-restored", "--include-kind", "ConfigMap", "--include-kind", "Secret",
                                   "--include-kind", "Service", "--include-kind", "Deployment",
                                   "--include-kind", "Namespace", "-o", "json"], env)
    restored = json.loads(out)["counts"].get("created", 0)
    return {
        "objects_in_backup": total,
        "backup_seconds": round(b_wall, 2), "backup_floor_seconds": round(floor_wall, 2),
        "backup_ratio": round(b_wall / floor_wall, 2),
        "restore_objects": restored, "restore_seconds": round(r_wall, 2),
        "kubectl_create_seconds": round(k_wall, 2), "restore_speedup": round(k_wall / r_wall, 2),
        "backup_peak_mib": round(b_rss), "restore_peak_mib": round(r_rss),
        "kubectl_get_peak_mib": round(floor_rss), "kubectl_create_peak_mib": round(k_rss),
        "baseline_process_mib": round(base_rss),
        # memory that grows with the objects, scaled to 100k, on top of the fixed baseline
        "backup_mib_per_100k_objects": round(base_rss + max(0.0, b_rss - base_rss) * 100_000 / total),
    }
