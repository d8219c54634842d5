"""``make demo``: the product on its embedded defaults (local clusters, local S3).

Today it brings the sandbox up and prints how to reach it; the backup → delete → restore run
through Airflow is added with the pipelines. With ``--no-wait`` it stops the sandbox and returns
(the test suite runs it that way); otherwise it keeps everything up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from kubernetes import client, config

from ys1000.sandbox import supervisor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ys1000.demo")
    p.add_argument("--dir", type=Path, default=Path(".sandbox"))
    p.add_argument("--no-wait", action="store_true", help="stop everything and return at the end")
    a = p.parse_args(argv)
    root = a.dir.resolve()
    t0 = time.monotonic()
    print(f"starting the sandbox in {root} (2 clusters + S3) ...", flush=True)
    info = supervisor.up(root)
    print(f"sandbox ready in {time.monotonic() - t0:.1f} s")
    for name, c in info["clusters"].items():
        api = config.new_client_from_config(config_file=c["kubeconfig"])
        nodes = [n.metadata.name for n in client.CoreV1Api(api).list_node().items]
        version = client.VersionApi(api).get_code().git_version
        print(f"  cluster {name}: {c['server']} (Kubernetes {version}), nodes {', '.join(nodes)}")
        print(f"    kubectl --kubeconfig {c['kubeconfig']} get pods -A")
    print(f"  S3: {info['s3']['endpoint_url']} bucket {info['s3']['bucket']}; credentials in {info['s3']['env_file']}")
    if a.no_wait:
        supervisor.down(root)
        print("demo finished; sandbox stopped")
        return 0
    print("Ctrl-C stops the sandbox.")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.down(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
