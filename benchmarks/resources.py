"""Resource backup and restore against their floors, measured in the same run.

* backup floor: ``kubectl get <kind> -n NS -o json`` for every kind in the namespace, one after
  the other — the cost of just reading the objects out of the API server;
* restore floor: ``kubectl create -f`` of the same documents (already transformed, so kubectl does
  no less work than we do) into a fresh namespace.

Both restores must meet the same cluster: creating a Service costs the API server more the more
Services exist (its ClusterIP allocator counts the allocated addresses on every allocation; with
10k Services one create takes ~40 ms of server CPU), so each restore's namespace is deleted, and
the control plane left to go idle, before the next one starts. The two alternate for
``YS1000_BENCH_REPEAT`` rounds (default 3) after one warm-up round, and the best time of each is
compared.

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
from ys1000.waiting import wait_until

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
        proc = subprocess.run(
            ["/usr/bin/time", "-o", stats.name, "-f", "%M %U %S", *cmd],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        rss_kib, user, system = stats.read().split()[-3:]
        out.seek(0)
        print(
            f"  {Path(cmd[0]).name} {cmd[1]}: {wall:.2f} s wall, {float(user) + float(system):.2f} s CPU, "
            f"{int(rss_kib) / 1024:.0f} MiB peak",
            flush=True,
        )
        return wall, int(rss_kib) / 1024, out.read().decode()


def objects(kind: str, i: int) -> dict:
    name = f"{kind.lower()}-{i:05d}"
    labels = {"bench": "true", "tier": f"t{i % 7}"}
    if kind == "ConfigMap":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "data": {"app.properties": "\n".join(f"key{j}=value-{i}-{j}" for j in range(20))},
        }
    if kind == "Secret":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "type": "Opaque",
            "stringData": {"password": f"pw-{i:08d}", "token": "t" * 64},
        }
    if kind == "Service":
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/app:1.0",
                            "env": [{"name": f"E{j}", "value": str(j)} for j in range(10)],
                        }
                    ]
                },
            },
        },
    }


class ControlPlaneIdle:
    """Waits until the sandbox's control plane processes are (nearly) idle: controllers done."""

    def __init__(self, sandbox_dir: str, threshold: float = 0.1):
        out = subprocess.run(["pgrep", "-f", f"controlplane --data-dir {sandbox_dir}"], capture_output=True, text=True)
        self.pids = [int(p) for p in out.stdout.split()]
        self.threshold = threshold  # CPU seconds per second

    def _cpu(self) -> float:
        total = 0.0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self._cpu()
            time.sleep(1.0)
            if self._cpu() - before < self.threshold:
                return


def delete_namespace(kube: Kube, name: str, timeout: float = 300) -> None:
    kube.delete(NAMESPACES, name)
    wait_until(
        lambda: kube.get_or_none(NAMESPACES.path(name=name)) is None,
        timeout=timeout,
        what=f"namespace {name} to be deleted",
    )


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
    idle = ControlPlaneIdle(sandbox["dir"])
    idle.wait()  # let the controllers settle (ReplicaSets, EndpointSlices)
    env = {"YS1000_REPO_KEY": "bench", "KUBECONFIG": kubeconfig}
    repo = ["--repo", f"local://{workdir / 'repo'}"]

    # backup vs its floor: reading every kind the namespace has, as JSON
    disc = Discovery.load(kube)
    kinds = sorted(
        {
            rt.resource if not rt.group else f"{rt.resource}.{rt.group}"
            for rt in disc.namespaced()
            if "list" in rt.verbs and rt.resource != "events"
        }
    )
    floor_wall, floor_rss = 0.0, 0.0
    print(f"  floor: kubectl get of {len(kinds)} kinds")
    for k in kinds:
        w, rss, _ = measured([kubectl, "--kubeconfig", kubeconfig, "get", k, "-n", ns, "-o", "json"])
        floor_wall += w
        floor_rss = max(floor_rss, rss)
    b_wall, b_rss, out = measured(
        [
            YS1000,
            "backup",
            "-n",
            ns,
            *repo,
            "--plan",
            "bench",
            "-o",
            "json",
            "--max-pods",
            "100000",
            "--max-pvcs",
            "100000",
        ],
        env,
    )
    backup_id = json.loads(out)["backup_id"]
    total = json.loads(out)["objects"]
    # the same process doing no per-object work: imports, clients, one catalog read
    _, base_rss, _ = measured([YS1000, "backups", "list", *repo, "-o", "json"], env)

    # restore vs kubectl create -f of the same (transformed) documents, alternating, each into a
    # cluster in the same state (see the module docstring)
    docs = []
    for k in KINDS:
        rt = disc.by_kind(k)
        for obj in kube.list(rt, ns, label_selector="bench=true"):
            docs.append(transform(obj, RestoreOptions(namespace_mapping={ns: "NAMESPACE"})))
    template = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    rounds = max(1, int(os.environ.get("YS1000_BENCH_REPEAT", "3")))
    k_runs, r_runs, k_rss, r_rss, restored = [], [], 0.0, 0.0, 0

    def with_kubectl(target: str) -> None:
        nonlocal k_rss
        kube.create(NAMESPACES, {"metadata": {"name": target}})
        listfile = workdir / f"{target}.json"
        listfile.write_text(template.replace('"NAMESPACE"', json.dumps(target)))
        wall, rss, _ = measured([kubectl, "--kubeconfig", kubeconfig, "create", "-f", str(listfile)])
        k_runs.append(wall)
        k_rss = max(k_rss, rss)

    def with_ys1000(target: str) -> None:
        nonlocal r_rss, restored
        wall, rss, out = measured(
            [
                YS1000,
                "restore",
                backup_id,
                *repo,
                "--namespace-mapping",
                f"{ns}={target}",
                "--include-kind",
                "ConfigMap",
                "--include-kind",
                "Secret",
                "--include-kind",
                "Service",
                "--include-kind",
                "Deployment",
                "--include-kind",
                "Namespace",
                "-o",
                "json",
            ],
            env,
        )
        r_runs.append(wall)
        r_rss = max(r_rss, rss)
        restored = json.loads(out)["counts"].get("created", 0)

    # round 0 is a warm-up, not counted: a control plane that has just started gets faster over its
    # first few bursts of writes (ys1000's restores measured 13.5, 10.4, 9.2 s in a row)
    for i in range(rounds + 1):
        for name, step in (
            (("kubectl", with_kubectl), ("ys1000", with_ys1000))
            if i % 2 == 0
            else (("ys1000", with_ys1000), ("kubectl", with_kubectl))
        ):
            target = f"bench-{name}-{i}"
            idle.wait()
            step(target)
            delete_namespace(kube, target)
        if i == 0:
            print(f"  warm-up round: kubectl {k_runs.pop():.2f} s, ys1000 {r_runs.pop():.2f} s", flush=True)
    k_wall, r_wall = min(k_runs), min(r_runs)
    return {
        "objects_in_backup": total,
        "backup_seconds": round(b_wall, 2),
        "backup_floor_seconds": round(floor_wall, 2),
        "backup_ratio": round(b_wall / floor_wall, 2),
        "restore_objects": restored,
        "restore_seconds": round(r_wall, 2),
        "kubectl_create_seconds": round(k_wall, 2),
        "restore_speedup": round(k_wall / r_wall, 2),
        "restore_samples_seconds": [round(x, 2) for x in r_runs],
        "kubectl_create_samples_seconds": [round(x, 2) for x in k_runs],
        "backup_peak_mib": round(b_rss),
        "restore_peak_mib": round(r_rss),
        "kubectl_get_peak_mib": round(floor_rss),
        "kubectl_create_peak_mib": round(k_rss),
        "baseline_process_mib": round(base_rss),
        # memory that grows with the objects, scaled to 100k, on top of the fixed baseline
        "backup_mib_per_100k_objects": round(base_rss + max(0.0, b_rss - base_rss) * 100_000 / total),
    }
