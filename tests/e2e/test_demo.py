"""``make demo``'s non-interactive mode (``make demo-ci``): the whole story — sandbox, sample app,
Airflow, backup through the REST API, namespace deleted, restores, objects and volume content
back — run as a subprocess exactly as the Makefile runs it, in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_demo_no_wait(tmp_path):
    from ys1000_dev.sandbox import supervisor

    if not supervisor.controlplane_binary().exists():
        if os.environ.get("YS1000_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"{supervisor.controlplane_binary()} missing: run `make controlplane`")
        pytest.skip("control plane not built (make controlplane)")
    root = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([str(REPO / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    t0 = time.monotonic()
    try:
        # no --port: the demo's own choice (8080 when free, else a free port; another free one if
        # the port is taken before the api-server binds it), read back from what it prints
        proc = subprocess.run(
            [sys.executable, "-m", "ys1000_dev.demo", "--dir", str(root), "--no-wait"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        supervisor.down(root)  # no-op when the demo stopped it (it should have)
    out = proc.stdout + proc.stderr
    print(out)
    print(f"demo took {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, out[-5000:]
    ui = re.search(r"^Airflow UI: http://127\.0\.0\.1:(\d+)  \(user: admin, password: ", out, re.MULTILINE)
    assert ui, "the demo printed no Airflow UI address"
    port = int(ui.group(1))
    assert f"at http://127.0.0.1:{port}; config " in out  # the address it started on is the one printed
    for line in [
        "sandbox: 2 local Kubernetes clusters + S3",
        "sample application (WordPress + MySQL) in namespace wordpress of cluster source",
        "triggered ys1000_backup__wordpress-backup (POST /api/v2/dags/ys1000_backup__wordpress-backup/dagRuns)",
        "ys1000_backup__wordpress-backup: success",
        "by drill drill-",
        "checks site-config, database, posts passed; the scratch namespace removed)",
        "namespace wordpress is gone",
        "ys1000_restore: success",
        "ys1000_restore__wordpress-restore: success",
        "cluster source, namespace wordpress:",
        "cluster target, namespace wordpress-restored:",
        "ys1000_migrate__wordpress-migrate: success",
        "Ingress host blog.migrated.example.com; WordPress siteurl http://blog.migrated.example.com "
        "(rewritten by the PostRestore hook)",
        "DEMO OK: backup wordpress-backup-",
        f"Airflow UI: http://127.0.0.1:{port}  (user: admin, password: ",
        "Airflow stopped",
        "sandbox stopped",
        "demo finished",
    ]:
        assert line in out, f"missing in the demo's output: {line!r}"
    # both restores and the migration brought every object and byte-identical volume content
    assert out.count("volume content: 5/5 files byte-identical") == 3
    for kind in ("Deployment", "StatefulSet", "Secret", "PersistentVolumeClaim", "Ingress", "Site"):
        assert sum(1 for ln in out.splitlines() if ln.strip().startswith(kind + " ")) == 3, kind
    assert "DEMO FAILED" not in out
    # nothing left running: the sandbox is down and the Airflow password file is where it said
    assert supervisor.status(root) is None
    assert (root / "airflow" / "simple_auth_manager_passwords.json.generated").exists()
