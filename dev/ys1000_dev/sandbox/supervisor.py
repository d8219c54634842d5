"""The sandbox supervisor: one background process that owns a whole sandbox.

``ys1000-dev sandbox up --dir DIR`` starts this module detached; it starts S3 (MinIO) and one
``ys1000-controlplane`` per cluster, installs the storage pieces, runs the node agents and the
local driver as threads, and writes ``DIR/sandbox.json`` once every cluster has a Ready node and
a working controller-manager. SIGTERM (``sandbox down``) stops everything it started. If a child
dies, the supervisor takes the whole sandbox down rather than leave a half-working one.

Files in DIR: ``<name>.kubeconfig``, ``s3.env``, ``sandbox.json``, ``supervisor.pid``,
``supervisor.log``, and one folder per cluster (control plane data, volumes, snapshots, pod logs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kubernetes import client, config

from ys1000_dev.sandbox import s3 as s3mod
from ys1000_dev.sandbox.logserver import LogServer
from ys1000_dev.sandbox.node import NodeAgent
from ys1000_dev.sandbox.storage import LocalDriver, pv_dir_of

log = logging.getLogger("ys1000_dev.sandbox")

CLUSTER_NAMES = ["source", "target", "third", "fourth"]
START_TIMEOUT = 120.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def controlplane_binary() -> Path:
    env = os.environ.get("YS1000_CONTROLPLANE")
    return Path(env) if env else repo_root() / "bin" / "ys1000-controlplane"


def cluster_names(n: int) -> list[str]:
    if not 1 <= n <= len(CLUSTER_NAMES):
        raise ValueError(f"--clusters must be between 1 and {len(CLUSTER_NAMES)}, got {n}")
    return CLUSTER_NAMES[:n]


class Supervisor:
    def __init__(self, root: Path, names: list[str], nodes_per_cluster: int = 1):
        self.root = root
        self.names = names
        self.nodes_per_cluster = nodes_per_cluster
        self.stop = threading.Event()
        self.children: dict[str, subprocess.Popen] = {}
        self.agents: list[NodeAgent] = []
        self.log_servers: list[LogServer] = []

    def start_controlplanes(self) -> dict[str, dict]:
        binary = controlplane_binary()
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: build it with `make controlplane`")
        for name in self.names:
            data = self.root / name / "controlplane"
            data.mkdir(parents=True, exist_ok=True)
            (data / "ready.json").unlink(missing_ok=True)
            logf = open(self.root / name / "controlplane.log", "ab")
            self.children[name] = subprocess.Popen(
                [
                    str(binary),
                    "--data-dir",
                    str(data),
                    "--kubeconfig",
                    str(self.root / f"{name}.kubeconfig"),
                    "--name",
                    name,
                    "--unsafe-no-fsync",
                ],  # throw-away clusters: speed over crash durability
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        ready: dict[str, dict] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(ready) < len(self.names):
            for name in self.names:
                if name in ready:
                    continue
                proc = self.children[name]
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"control plane {name} exited with {proc.returncode}; see {self.root / name / 'controlplane.log'}"
                    )
                f = self.root / name / "controlplane" / "ready.json"
                if f.exists():
                    ready[name] = json.loads(f.read_text())
            if time.monotonic() > deadline:
                raise RuntimeError(f"control planes not ready within {START_TIMEOUT:.0f} s")
            time.sleep(0.2)
        return ready

    def start_node_side(self, name: str) -> None:
        api = config.new_client_from_config(config_file=str(self.root / f"{name}.kubeconfig"))
        croot = self.root / name
        logs = LogServer(croot / "logs", croot / "pki")
        logs.start()
        self.log_servers.append(logs)
        driver = LocalDriver(api, croot, self.stop)
        driver.install()
        driver.start()
        nodes = [f"{name}-node-{i + 1}" for i in range(self.nodes_per_cluster)]
        agent = NodeAgent(
            api,
            nodes,
            croot / "state",
            croot / "logs",
            logs.port,
            pv_dir_of,
            self.stop,
            pod_cidr=f"10.{244 + self.names.index(name)}.0.0/16",
        )
        agent.start()
        self.agents.append(agent)
        # Ready means the controller-manager works too: its serviceaccount controller creates
        # the `default` ServiceAccount, which every pod needs.
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_service_account("default", "default")
                return
            except client.exceptions.ApiException:
                time.sleep(0.2)
        raise RuntimeError(f"cluster {name}: controller-manager created no default ServiceAccount")

    def run(self) -> int:
        (self.root / "supervisor.pid").write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        try:
            t0 = time.monotonic()
            s3proc, url = s3mod.start_s3(self.root / "s3.log", self.root / "s3-data")
            self.children["s3"] = s3proc
            endpoint = s3mod.bootstrap(url)
            endpoint.write_env_file(self.root / "s3.env")
            planes = self.start_controlplanes()
            threads = [threading.Thread(target=self._guard, args=(self.start_node_side, n)) for n in self.names]
            self._errors: list[str] = []
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if self._errors:
                raise RuntimeError("; ".join(self._errors))
            info = {
                "supervisor_pid": os.getpid(),
                "started_in_seconds": round(time.monotonic() - t0, 1),
                "clusters": {
                    n: {
                        "kubeconfig": str(self.root / f"{n}.kubeconfig"),
                        "server": planes[n].get("server"),
                        "pid": self.children[n].pid,
                        "version": planes[n].get("version"),
                    }
                    for n in self.names
                },
                "s3": {
                    "endpoint_url": endpoint.endpoint_url,
                    "bucket": endpoint.bucket,
                    "env_file": str(self.root / "s3.env"),
                    "pid": s3proc.pid,
                },
            }
            tmp = self.root / "sandbox.json.tmp"
            tmp.write_text(json.dumps(info, indent=2))
            os.replace(tmp, self.root / "sandbox.json")
            log.info("sandbox ready in %.1f s", time.monotonic() - t0)
            while not self.stop.wait(1.0):
                dead = [n for n, p in self.children.items() if p.poll() is not None]
                if dead:
                    log.error("%s exited unexpectedly; taking the sandbox down", ", ".join(dead))
                    return 1
            return 0
        except Exception as exc:
            log.exception("sandbox failed: %s", exc)
            return 1
        finally:
            self.shutdown()

    def _guard(self, fn, name):
        try:
            fn(name)
        except Exception as exc:
            log.exception("cluster %s", name)
            self._errors.append(f"cluster {name}: {exc}")

    def shutdown(self) -> None:
        self.stop.set()
        (self.root / "sandbox.json").unlink(missing_ok=True)
        for agent in self.agents:
            agent.shutdown()
        for proc in self.children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for srv in self.log_servers:
            srv.stop()
        (self.root / "supervisor.pid").unlink(missing_ok=True)
        log.info("sandbox stopped")


# -- the client side: up / down / status ---------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child not yet reaped) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def status(root: Path) -> dict | None:
    """The running sandbox's ``sandbox.json``, or None when it is not up."""
    f = root / "sandbox.json"
    if not f.exists():
        return None
    info = json.loads(f.read_text())
    return info if _alive(info["supervisor_pid"]) else None


def up(root: Path, clusters: int = 2, nodes: int = 1, timeout: float = 180.0) -> dict:
    """Start a sandbox in the background (or return the one already running in ``root``)."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    running = status(root)
    if running:
        return running
    names = cluster_names(clusters)
    if not controlplane_binary().exists():
        raise RuntimeError(f"{controlplane_binary()} is missing: build it with `make controlplane`")
    logf = open(root / "supervisor.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ys1000_dev.sandbox.supervisor",
            "--dir",
            str(root),
            "--clusters",
            str(len(names)),
            "--nodes",
            str(nodes),
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the caller; `down` stops it
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = status(root)
        if info:
            return info
        if proc.poll() is not None:
            tail = (root / "supervisor.log").read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError("sandbox failed to start:\n" + "\n".join(tail))
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"sandbox not ready within {timeout:.0f} s; see {root / 'supervisor.log'}")


def down(root: Path, timeout: float = 40.0) -> list[int]:
    """Stop the sandbox in ``root``; return the pids that were stopped. Idempotent."""
    root = root.resolve()
    pid_file = root / "supervisor.pid"
    info_file = root / "sandbox.json"
    pids: list[int] = []
    if info_file.exists():
        info = json.loads(info_file.read_text())
        pids += [c["pid"] for c in info["clusters"].values()] + [info["s3"]["pid"]]
    if not pid_file.exists():
        return []
    sup = int(pid_file.read_text())
    pids.insert(0, sup)
    if _alive(sup):
        os.kill(sup, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for p in pids:  # last resort: nothing of ours may outlive `down`
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        os.killpg(sup, signal.SIGKILL)  # stragglers of the supervisor's own session
    except (ProcessLookupError, PermissionError):
        pass
    pid_file.unlink(missing_ok=True)
    info_file.unlink(missing_ok=True)
    return pids


def destroy(root: Path) -> None:
    down(root)
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ys1000_dev.sandbox.supervisor")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--clusters", type=int, default=2)
    p.add_argument("--nodes", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return Supervisor(a.dir.resolve(), cluster_names(a.clusters), a.nodes).run()


if __name__ == "__main__":
    sys.exit(main())
