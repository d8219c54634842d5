"""Volumes at scale (issue 17): 50 PVCs × 20 MiB of mixed files in one namespace, one backup and
one restore through the engine, against raw restic over the same 50 directories in the same run.

Dataset: per PVC 20 MiB — 2 large files (6 MiB random, 4 MiB log-like text), 10 × 512 KiB (half
text, half random) and 1,280 × 4 KiB small files (half text, half random) in 20 directories; every
PVC its own content (no dedup across PVCs). ``YS1000_BENCH_SCALE`` scales the number of PVCs
(0.2 → 10), not their size.

ys1000: ``run_backup`` / ``run_restore`` (the CLI's and the DAG's engine, waiting in place), with
the mover settings of a cluster from config (``ClusterSpec.max_concurrent_movers``, default 4
here, ``YS1000_BENCH_MOVERS`` to change it). The restore goes into a new namespace (PVCs created,
bound, filled by movers).

Floors: ``restic backup`` of the same 50 directories one after the other, and 4 at a time
(``YS1000_BENCH_MOVERS``), each round into a fresh repository in the same MinIO; ``restic
restore`` of those snapshots likewise. ``restic init`` is left out on every side (ys1000's
repository is initialised before its timed backup, as ``benchmarks/volumes.py`` does). Each side
runs ``YS1000_BENCH_REPEAT`` rounds (default 2), in rotating order; best times are compared.
Target: ys1000 ≤ 1.2× the 4-at-a-time floor, backup and restore.

Per-mover fixed cost, as measured here: from the engine starting a mover (its ``jobs.start`` call:
leftover check, Secret and Job created) to the mover pod reported Running (the node agent spawns
the mover process right after that patch; restic starts ~0.2 s later, after Python's start), and
from the pod's end (Succeeded seen by a watch) to the engine done with that PVC (Job deleted);
both from client-side clocks of one process (a pod watch in a thread).

Verification: a SHA-256 of every file of every PVC, source against the ys1000 restore, and against
one raw restore.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ys1000.backup import BackupSpec, run_backup
from ys1000.config.clusters import ClusterSpec
from ys1000.config.specs import cluster_volume_options, restore_volume_options_for
from ys1000.kube import Kube, jobs
from ys1000.kube.discovery import NAMESPACES, PODS, PVCS
from ys1000.repository import open_repository
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore
from ys1000.volumes import restic
from ys1000.volumes.backup import ensure_restic_repository
from ys1000.waiting import wait_until
from ys1000_dev.sandbox.s3 import S3Endpoint

MIB = 1 << 20
WORDS = (
    "the a request response status ok error warn info debug user order item payment cache miss hit "
    "latency ms GET POST PUT /api/v1/orders /api/v1/users /healthz node pod volume backup restore "
    "started finished retry timeout connection reset 200 201 404 500 id session token trace span"
).split()


def _corpus(rnd: random.Random, size: int) -> bytes:
    """Log-like text, compressible about 3× (zstd)."""
    out, n = [], 0
    while n < size:
        line = f"2026-12-01T10:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}Z " + " ".join(rnd.choices(WORDS, k=12))
        line += f" id={rnd.getrandbits(32):08x}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def _text(rnd: random.Random, corpus: bytes, size: int) -> bytes:
    """``size`` bytes of text: slices of the corpus at random offsets (unique chunks, still text)."""
    parts, n = [], 0
    while n < size:
        k = min(size - n, rnd.randrange(2048, 65536))
        off = rnd.randrange(len(corpus) - k)
        parts.append(corpus[off : off + k])
        n += k
    return b"".join(parts)


def make_pvc_data(root: Path, seed: int, corpus: bytes) -> int:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "large-random.bin").write_bytes(rnd.randbytes(6 * MIB))
    (root / "large-app.log").write_bytes(_text(rnd, corpus, 4 * MIB))
    (root / "mid").mkdir(exist_ok=True)
    for i in range(10):
        data = _text(rnd, corpus, MIB // 2) if i % 2 else rnd.randbytes(MIB // 2)
        (root / "mid" / f"m{i:02d}").write_bytes(data)
    for i in range(1280):
        d = root / "small" / f"d{i // 64:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"s{i:04d}").write_bytes(_text(rnd, corpus, 4096) if i % 2 else rnd.randbytes(4096))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def pv_dir(kube: Kube, ns: str, pvc: str) -> Path:
    obj = kube.get(PVCS.path(ns, pvc))
    pv = kube.get(f"/api/v1/persistentvolumes/{obj['spec']['volumeName']}")
    return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])


class MoverClock:
    """Client-side times of each mover: Job create call, pod Running, pod ended, Job deleted."""

    def __init__(self, kube: Kube, namespaces: list[str], concurrency: int):
        self.kube, self.namespaces, self.concurrency = kube, namespaces, concurrency
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.cleaned: dict[str, float] = {}
        self.stop = threading.Event()
        self._orig_start, self._orig_delete = jobs.start, jobs.delete
        self._threads: list[threading.Thread] = []

    def __enter__(self):
        self.t0 = time.monotonic()

        def start(kube, run, **kw):
            self.created.setdefault(run.name, time.monotonic())
            return self._orig_start(kube, run, **kw)

        def delete(kube, ns, name, *a, **kw):
            out = self._orig_delete(kube, ns, name, *a, **kw)
            self.cleaned.setdefault(name, time.monotonic())
            return out

        jobs.start, jobs.delete = start, delete  # the engine calls them as jobs.start / jobs.delete
        for ns in self.namespaces:
            t = threading.Thread(target=self._watch, args=(ns,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc):
        self.t1 = time.monotonic()
        jobs.start, jobs.delete = self._orig_start, self._orig_delete
        self.stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _watch(self, ns: str) -> None:
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    _, rv = self.kube.list_version(PODS, ns, label_selector="ys1000.io/component=mover")
                for ev in self.kube.watch(
                    PODS, ns, label_selector="ys1000.io/component=mover", resource_version=rv, timeout_seconds=1
                ):
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") == "ERROR":
                        rv = None
                        break
                    job = ((obj.get("metadata") or {}).get("labels") or {}).get("job-name")
                    phase = (obj.get("status") or {}).get("phase")
                    now = time.monotonic()
                    if job and phase == "Running":
                        self.running.setdefault(job, now)
                    if job and phase in ("Succeeded", "Failed"):
                        self.ended.setdefault(job, now)
            except Exception:
                rv = None
                time.sleep(0.1)

    def summary(self) -> dict:
        start = [self.running[j] - self.created[j] for j in self.created if j in self.running]
        tail = [self.cleaned[j] - self.ended[j] for j in self.ended if j in self.cleaned]
        body = [self.ended[j] - self.running[j] for j in self.running if j in self.ended]

        def stats(xs: list[float]) -> dict:
            if not xs:
                return {}
            xs = sorted(xs)
            return {
                "median_s": round(statistics.median(xs), 3),
                "p90_s": round(xs[int(0.9 * (len(xs) - 1))], 3),
                "max_s": round(xs[-1], 3),
            }

        busy = sum(self.cleaned[j] - self.created[j] for j in self.created if j in self.cleaned)
        first = min(self.created.values(), default=self.t0)
        last = max(self.cleaned.values(), default=self.t1)
        return {
            "movers": len(self.created),
            # where the engine's time goes: before the first mover, while movers run, after the last
            "before_first_mover_s": round(first - self.t0, 2),
            "movers_span_s": round(last - first, 2),
            "after_last_mover_s": round(self.t1 - last, 2),
            # mover slots empty while movers run: concurrency × span − Σ(create → cleaned)
            "idle_slot_seconds": round(self.concurrency * (last - first) - busy, 2),
            "create_to_running": stats(start),
            "running_to_end": stats(body),
            "end_to_cleaned": stats(tail),
        }


def run(sandbox: dict, workdir: Path) -> dict:
    scale = float(os.environ.get("YS1000_BENCH_SCALE", "1"))
    rounds = max(1, int(os.environ.get("YS1000_BENCH_REPEAT", "2")))
    conc = max(1, int(os.environ.get("YS1000_BENCH_MOVERS", "4")))
    n = max(2, round(50 * scale))
    s3 = S3Endpoint.from_env_file(Path(sandbox["s3"]["env_file"]))
    bucket = s3.new_bucket("bench-volscale")
    kube = Kube.from_kubeconfig(sandbox["clusters"]["source"]["kubeconfig"], name="source")
    # the cluster's mover settings come from config, as for a plan's run
    cluster = ClusterSpec.model_validate({"connection_id": "k8s_source", "max_concurrent_movers": conc})
    ns = "bench-volscale"
    names = [f"data-{i:02d}" for i in range(n)]
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    for name in names:
        kube.create(
            PVCS,
            {
                "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
            ns,
        )
    wait_until(
        lambda: all(kube.get(PVCS.path(ns, x))["status"].get("phase") == "Bound" for x in names),
        timeout=120,
        what="PVCs bound",
    )
    dirs = [pv_dir(kube, ns, x) for x in names]
    corpus = _corpus(random.Random(17), 8 * MIB)
    t0 = time.perf_counter()
    total = sum(make_pvc_data(d, 1000 + i, corpus) for i, d in enumerate(dirs))
    mib = total / MIB
    digests = {name: tree_digest(d) for name, d in zip(names, dirs, strict=True)}
    print(
        f"dataset: {n} PVCs, {mib:.0f} MiB ({time.perf_counter() - t0:.1f} s to make); "
        f"{rounds} rounds, concurrency {conc}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def env(repo: str) -> dict:
        return {
            **os.environ,
            "RESTIC_REPOSITORY": f"s3:{s3.endpoint_url}/{bucket}/{repo}",
            "RESTIC_PASSWORD": "bench",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "RESTIC_PROGRESS_FPS": "0.5",  # as the mover sets it
        }

    def restic_run(args: list[str], e: dict, cwd=None) -> str:
        return subprocess.run(
            [restic.binary(), *args], cwd=cwd, env=e, check=True, capture_output=True, text=True
        ).stdout

    def raw_backup(repo: str, workers: int) -> dict[str, str]:
        e = env(repo)

        def one(item):
            name, d = item
            out = restic_run(["backup", ".", "--json", "--host", f"bench:{name}"], e, d)
            summary = next(json.loads(x) for x in reversed(out.splitlines()) if '"summary"' in x)
            return name, summary["snapshot_id"]

        with ThreadPoolExecutor(workers) as pool:
            return dict(pool.map(one, zip(names, dirs, strict=True)))

    def raw_restore(repo: str, snaps: dict[str, str], workers: int, into: Path) -> None:
        e = env(repo)

        def one(name):
            restic_run(["restore", f"{snaps[name]}:.", "--target", str(into / name)], e)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, names))

    def ys_repo(i: int):
        cfg = s3.repository_config(bucket, f"ys1000-{i}")
        return cfg, open_repository(cfg, "bench", create=True)

    def timed(fn):
        os.sync()
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    samples: dict[str, list[float]] = {
        k: []
        for k in ("raw_seq_backup", "raw_par_backup", "ys_backup", "raw_seq_restore", "raw_par_restore", "ys_restore")
    }
    clocks: dict[str, list[dict]] = {"backup": [], "restore": []}
    raw_snaps: dict[str, dict[str, str]] = {}
    repos = []
    for i in range(rounds):
        cfg, repo = ys_repo(i)
        repos.append(repo)
        for r in (f"seq-{i}", f"par-{i}"):
            restic_run(["init"], env(r))
        ensure_restic_repository(cfg, repo.restic_password(), "source", ns)

        def seq(i=i):
            t, raw_snaps[f"seq-{i}"] = timed(lambda: raw_backup(f"seq-{i}", 1))
            samples["raw_seq_backup"].append(t)

        def par(i=i):
            t, raw_snaps[f"par-{i}"] = timed(lambda: raw_backup(f"par-{i}", conc))
            samples["raw_par_backup"].append(t)

        def ys(i=i, repo=repo):
            opts = cluster_volume_options(cluster, "source", run_id=f"b{i}")
            spec = BackupSpec(backup_id=f"b{i}", plan="bench", namespaces=[ns], cluster_name="source")
            with MoverClock(kube, [ns], conc) as clock:
                t, result = timed(lambda: run_backup(kube, repo, spec, volume_opts=opts))
            errors = [v for v in result.manifest.volumes if v.get("error") or not v.get("restic")]
            assert not errors and len(result.manifest.volumes) == n, errors
            samples["ys_backup"].append(t)
            clocks["backup"].append(clock.summary())

        steps = [seq, par, ys]
        for step in steps[i % 3 :] + steps[: i % 3]:
            step()
        print(
            f"  backup round {i}: raw sequential {samples['raw_seq_backup'][-1]:.1f} s, raw {conc} at a time "
            f"{samples['raw_par_backup'][-1]:.1f} s, ys1000 {samples['ys_backup'][-1]:.1f} s; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )

    verified: dict[str, object] = {}
    for i, repo in enumerate(repos):
        target_ns = f"{ns}-r{i}"

        def rseq(i=i):
            into = workdir / f"raw-seq-{i}"
            samples["raw_seq_restore"].append(timed(lambda: raw_restore(f"seq-{i}", raw_snaps[f"seq-{i}"], 1, into))[0])
            if i == 0:
                bad = [x for x in names if tree_digest(into / x) != digests[x]]
                verified["raw_sequential_restore_identical"] = f"{n - len(bad)}/{n}"
            shutil.rmtree(into)

        def rpar(i=i):
            into = workdir / f"raw-par-{i}"
            samples["raw_par_restore"].append(
                timed(lambda: raw_restore(f"par-{i}", raw_snaps[f"par-{i}"], conc, into))[0]
            )
            shutil.rmtree(into)

        def rys(i=i, repo=repo, target_ns=target_ns):
            opts = restore_volume_options_for(cluster, run_id=f"r{i}")
            spec = RestoreSpec(backup_id=f"b{i}", options=RestoreOptions(namespace_mapping={ns: target_ns}))
            with MoverClock(kube, [target_ns], conc) as clock:
                t, report = timed(lambda: run_restore(kube, repo, spec, same_cluster=True, volume_opts=opts))
            assert report.status == "Completed", report.failed
            samples["ys_restore"].append(t)
            clocks["restore"].append(clock.summary())

        steps = [rseq, rpar, rys]
        for step in steps[i % 3 :] + steps[: i % 3]:
            step()
        print(
            f"  restore round {i}: raw sequential {samples['raw_seq_restore'][-1]:.1f} s, raw {conc} at a time "
            f"{samples['raw_par_restore'][-1]:.1f} s, ys1000 {samples['ys_restore'][-1]:.1f} s; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )

    # every file of every PVC of the last ys1000 restore, against the source
    last_ns = f"{ns}-r{len(repos) - 1}"
    bad = [x for x in names if tree_digest(pv_dir(kube, last_ns, x)) != digests[x]]
    verified["ys1000_restore_identical"] = f"{n - len(bad)}/{n}"
    assert not bad, f"restored data differs: {bad}"

    best = {k: min(v) for k, v in samples.items()}

    def fixed(kind: str) -> dict:
        last = clocks[kind][-1] if clocks[kind] else {}
        return last

    return {
        "pvcs": n,
        "dataset_mib": round(mib),
        "mover_concurrency": conc,
        "rounds": rounds,
        "raw_sequential_backup_s": round(best["raw_seq_backup"], 1),
        f"raw_{conc}_at_a_time_backup_s": round(best["raw_par_backup"], 1),
        "ys1000_backup_s": round(best["ys_backup"], 1),
        "backup_ratio_to_parallel_floor": round(best["ys_backup"] / best["raw_par_backup"], 2),
        "raw_sequential_restore_s": round(best["raw_seq_restore"], 1),
        f"raw_{conc}_at_a_time_restore_s": round(best["raw_par_restore"], 1),
        "ys1000_restore_s": round(best["ys_restore"], 1),
        "restore_ratio_to_parallel_floor": round(best["ys_restore"] / best["raw_par_restore"], 2),
        "target_ratio": 1.2,
        "per_mover_backup": fixed("backup"),
        "per_mover_restore": fixed("restore"),
        "verified": verified,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "samples_seconds": {k: [round(x, 2) for x in v] for k, v in samples.items()},
    }
