"""Issue 16, fault matrix: a corrupted restic pack in the repository.

``ys1000 verify --data`` reads the volume data back (``restic check --read-data``) and names the
backups and PVCs that need the damaged pack — every backup sharing it through restic's dedup —
and not the PVCs that do not; restoring the backup then fails that PVC loudly while the other
comes back byte-identical. Run as a person runs it: the ``ys1000`` console script against the
sandbox cluster, the sandbox S3 (MinIO) and real restic movers; the damage is done to the bucket.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ys1000.cli import main
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import open_repository
from ys1000.volumes import restic

from volume_helpers import bound_pvc, pv_dir, tree_digest

YS1000 = str(Path(sys.executable).parent / "ys1000")
KEY = "verify-data-key"


def run(*args, env, check_rc=None):
    out = subprocess.run([YS1000, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    if check_rc is not None:
        assert out.returncode == check_rc, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return out


def verify(capsys, *args) -> tuple[int, str, str]:
    """``ys1000 verify …`` in this process (the console script's ``main``; saves an interpreter
    start per call): exit code, stdout, stderr."""
    capsys.readouterr()
    rc = main(["verify", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def fill(root: Path, seed: int, mib: int) -> None:
    """Incompressible content of its own (no blob shared with another seed's), a few files."""
    rnd = random.Random(seed)
    (root / "big.bin").write_bytes(rnd.randbytes(mib << 20))
    (root / "sub").mkdir()
    for i in range(5):
        (root / "sub" / f"f{i}").write_bytes(rnd.randbytes(8 << 10))


@pytest.fixture
def repo_env(sandbox_s3, monkeypatch):
    bucket = sandbox_s3.new_bucket(f"vdata-{uuid.uuid4().hex[:8]}")
    cfg = sandbox_s3.repository_config(bucket, "r")
    env = {**sandbox_s3.env(), "YS1000_REPO_KEY": KEY}
    for name, value in env.items():  # for the in-process verify
        monkeypatch.setenv(name, value)
    return env, ["--repo", f"s3://{bucket}/r"], cfg


def test_corrupted_pack_is_named_by_verify_data_and_fails_only_its_pvc_on_restore(
    source, target, make_namespace, sandbox_s3, repo_env, capsys
):
    env, repo, cfg = repo_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    fill(bound_pvc(kube, ns, "alpha"), seed=1, mib=2)
    fill(bound_pvc(kube, ns, "beta"), seed=2, mib=1)
    beta_digest = tree_digest(pv_dir(kube, ns, "beta"))

    # two backups of the plan: the second's snapshots reuse the first's packs (restic dedup)
    ids = []
    for _ in range(2):
        b = run("backup", "--kubeconfig", source.kubeconfig, *repo, "-n", ns, "--plan", "vd", "-o", "json", env=env)
        assert b.returncode == 0, b.stdout + b.stderr
        assert json.loads(b.stdout)["status"] == "Completed"
        ids.append(json.loads(b.stdout)["backup_id"])
    first, second = ids
    repository = open_repository(cfg, KEY)
    volumes = repository.manifest(second).volumes
    snap = {v["pvc"]: v["restic"]["snapshot_id"] for v in volumes}
    rel = {v["restic"]["repository"] for v in volumes}.pop()

    # clean: every pack read back, exit 0, each PVC ok
    rc, clean, _ = verify(capsys, *repo, second, "--data")
    assert rc == 0, clean
    assert "volume data: OK (2 PVC(s) in 1 restic repository(ies); all data read)" in clean, clean
    assert f"PVC {ns}/alpha: ok" in clean and f"PVC {ns}/beta: ok" in clean

    # the damage: bytes flipped in a data pack that alpha's snapshots alone reference (asked of
    # restic directly, `find --pack`, not of the code under test)
    password = repository.restic_password()
    renv = restic.target_at(cfg, password, rel).environment()
    s3 = sandbox_s3.client()
    packs = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=cfg.bucket, Prefix=f"r/{rel}data/")["Contents"]
        if o["Size"] > 1 << 20  # alpha's or beta's big file: a data pack
    ]
    alpha_snaps = _snapshots_of(renv, "alpha", ns)
    assert snap["alpha"] in alpha_snaps and len(alpha_snaps) == 2, alpha_snaps
    users = {}
    for key in packs:
        found = subprocess.run(
            [restic.binary(), "--json", "find", "--pack", key.rsplit("/", 1)[1]],
            env={**os.environ, **renv},
            capture_output=True,
            text=True,
            check=True,
        )
        users[key] = {hit["snapshot"] for hit in json.loads(found.stdout)}
    # a pack both of alpha's snapshots need (dedup) and no snapshot of beta does
    alpha_only = [k for k, used_by in users.items() if used_by == alpha_snaps]
    assert alpha_only, users
    key = alpha_only[0]
    data = bytearray(s3.get_object(Bucket=cfg.bucket, Key=key)["Body"].read())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    s3.put_object(Bucket=cfg.bucket, Key=key, Body=bytes(data))

    rc, out, err = verify(capsys, *repo, second, "--data")
    assert rc == 3, out + err
    assert "volume data: DAMAGED" in out, out
    assert f"PVC {ns}/alpha: DAMAGED (restic snapshot {snap['alpha'][:8]} needs damaged pack(s)" in out, out
    assert f"PVC {ns}/beta: ok" in out, out
    # each backup that shares the pack is named, the verified one first; beta in none
    lines = out.splitlines()
    named = [i for i, ln in enumerate(lines) if ln.startswith(f"  damaged: backup {second} PVC {ns}/alpha (")]
    also = [i for i, ln in enumerate(lines) if ln.startswith(f"  damaged: backup {first} PVC {ns}/alpha (")]
    assert named and also and named[0] < also[0], out
    assert lines[named[0]].endswith("restoring this PVC fails"), out
    assert not [ln for ln in lines if "damaged:" in ln and "beta" in ln], out
    rc, out, err = verify(capsys, *repo, first, "--data-subset", "100%", "-o", "json")
    assert rc == 3, out + err
    report = json.loads(out)
    assert report["ok"] is False and report["data"]["read"] == "100%"
    assert sorted((d["backup_id"], d["namespace"], d["pvc"]) for d in report["data"]["damaged"]) == sorted(
        [(first, ns, "alpha"), (second, ns, "alpha")]
    )
    assert {v["pvc"]: v["status"] for v in report["data"]["volumes"]} == {"alpha": "damaged", "beta": "ok"}
    assert all(d["packs"] == [key.rsplit("/", 1)[1]] for d in report["data"]["damaged"])

    # restore elsewhere: PartiallyFailed naming alpha (exit 3); beta byte-identical
    new_ns = ns + "-r"
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    try:
        r = run(
            "restore",
            "--kubeconfig",
            target.kubeconfig,
            *repo,
            second,
            "--namespace-mapping",
            f"{ns}={new_ns}",
            "-o",
            "json",
            env=env,
            check_rc=3,
        )
        restored = json.loads(r.stdout)
        assert restored["status"] == "PartiallyFailed"
        by_pvc = {v["pvc"]: v for v in restored["volumes"]}
        assert by_pvc["alpha"]["status"] == "failed", by_pvc
        assert "restic" in by_pvc["alpha"]["reason"] and "alpha" in by_pvc["alpha"]["reason"], by_pvc["alpha"]
        assert by_pvc["beta"]["status"] == "data", by_pvc
        assert tree_digest(pv_dir(tkube, new_ns, "beta")) == beta_digest
    finally:
        if tkube.get_or_none(NAMESPACES.path(name=new_ns)) is not None:
            tkube.delete(NAMESPACES, new_ns)


def _snapshots_of(renv: dict, pvc: str, ns: str) -> set[str]:
    """Every restic snapshot of one PVC (both backups'): tagged with its identity by the mover."""
    return {s["id"] for s in restic.snapshots(renv, [f"namespace={ns},pvc={pvc}"])}


def test_verify_data_refuses_a_malformed_subset(repo_env, capsys):
    _, repo, _ = repo_env
    for bad in ("7/5", "0%", "150%", "half"):
        rc, _, err = verify(capsys, *repo, "whatever", "--data-subset", bad)
        assert rc == 2 and f"--data-subset {bad!r}: expected N% (0 < N <= 100) or n/t (1 <= n <= t)" in err, err


def _restic_repo(tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """A local restic repository with one snapshot per directory (host = its name)."""
    renv = {
        "RESTIC_REPOSITORY": str(tmp_path / "repo"),
        "RESTIC_PASSWORD": "pw",
        "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
    }
    restic.ensure_repository(renv)
    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        fill(tmp_path / name, seed=seed, mib=1)
        restic.run_json(["backup", ".", "--host", name], renv, cwd=str(tmp_path / name))
    return renv, {s["hostname"]: s["id"] for s in restic.snapshots(renv)}


def _packs_of_only(renv: dict, snapshot: str) -> dict[str, str]:
    """kind ("data"/"tree") → a pack holding only blobs of that kind that ``snapshot`` alone needs
    (from the index and ``restic find``, all packs at once)."""
    every = subprocess.run(
        [restic.binary(), "list", "packs"], env={**os.environ, **renv}, capture_output=True, text=True, check=True
    ).stdout.split()
    blobs = restic.pack_blobs(renv, set(every))
    pack_of = {b: pack for pack, contents in blobs.items() for _, b in contents}
    users: dict[str, set[str]] = {pack: set() for pack in blobs}
    for kind, flag in (("data", "blob"), ("tree", "tree")):
        ids = [b for contents in blobs.values() for k, b in contents if k == kind]
        for hit in restic.find_blobs(renv, ids, flag):
            users[pack_of[hit["id"]]].add(hit["snapshot"])
    for sn in restic.snapshots(renv):
        users[pack_of[sn["tree"]]].add(sn["id"])
    out = {}
    for pack, contents in blobs.items():
        kinds = {k for k, _ in contents}
        if len(kinds) == 1 and users[pack] == {snapshot}:
            out[kinds.pop()] = pack
    return out


def test_a_missing_pack_and_a_damaged_tree_pack_are_mapped_to_their_snapshot(tmp_path):
    """The cases the sandbox test does not make: a pack deleted from the bucket (restic reports it
    as not existing, outside its broken_packs) and a damaged pack of directory trees."""
    from ys1000.volumes.verify import _damaged_snapshots

    renv, snaps = _restic_repo(tmp_path)
    assert restic.check(renv, "all").ok
    only_a = _packs_of_only(renv, snaps["a"])
    tree_pack, data_pack = only_a["tree"], only_a["data"]
    (tmp_path / "repo" / "data" / data_pack[:2] / data_pack).unlink()
    tree_file = tmp_path / "repo" / "data" / tree_pack[:2] / tree_pack
    tree_file.chmod(0o600)
    raw = bytearray(tree_file.read_bytes())
    raw[20:40] = bytes(b ^ 0xFF for b in raw[20:40])
    tree_file.write_bytes(bytes(raw))

    found = restic.check(renv, "1/1")
    assert not found.ok and sorted(found.damaged_packs) == sorted([data_pack, tree_pack]), found
    named, unindexed = _damaged_snapshots(renv, "r/", found.damaged_packs)
    assert unindexed == []
    assert [(d.snapshot_id, sorted(d.packs)) for d in named] == [(snaps["a"], sorted([data_pack, tree_pack]))]
    assert "/big.bin" in named[0].files
