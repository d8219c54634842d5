"""Backup selection (names, globs, label selector, kinds, object labels, scope) and restore selection."""

from __future__ import annotations

import uuid

import pytest

from ys1000.backup import BackupSpec, SelectionError, run_backup
from ys1000.kube import Kube
from ys1000.repository import RepositoryConfig, open_repository
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore


@pytest.fixture(scope="module")
def world(source, tmp_path_factory):
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tag = uuid.uuid4().hex[:6]
    names = [f"shop-{tag}-a", f"shop-{tag}-b", f"blog-{tag}"]
    for n in names:
        source.core.create_namespace(
            {"metadata": {"name": n, "labels": {"team": "shop" if "shop" in n else "blog", "sel": tag}}}
        )
        source.core.create_namespaced_config_map(n, {"metadata": {"name": "keep", "labels": {"tier": "gold"}}})
        source.core.create_namespaced_config_map(n, {"metadata": {"name": "other", "labels": {"tier": "bronze"}}})
        source.core.create_namespaced_secret(n, {"metadata": {"name": "s", "labels": {"tier": "gold"}}})
        source.core.create_namespaced_persistent_volume_claim(
            n,
            {
                "metadata": {"name": "data", "labels": {"tier": "gold"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path_factory.mktemp("repo"))), "k", create=True)
    yield {"kube": kube, "tag": tag, "names": names, "repo": repo}
    for n in names:
        source.core.delete_namespace(n)


def _objects(repo, backup_id):
    return {(e.kind, e.namespace or "", e.name) for e in repo.read_index(backup_id)}


def test_namespaces_by_glob_and_selector(world):
    kube, tag, repo = world["kube"], world["tag"], world["repo"]
    m = run_backup(kube, repo, BackupSpec(backup_id="g", plan="sel", namespace_globs=[f"shop-{tag}-*"])).manifest
    assert m.namespaces == [f"shop-{tag}-a", f"shop-{tag}-b"]
    m = run_backup(
        kube, repo, BackupSpec(backup_id="l", plan="sel", namespace_selector=f"team=blog,sel={tag}")
    ).manifest
    assert m.namespaces == [f"blog-{tag}"]
    with pytest.raises(SelectionError, match="not found in cluster source: no-such-namespace$"):
        run_backup(kube, repo, BackupSpec(backup_id="x", plan="sel", namespaces=["no-such-namespace"]))
    ns = world["names"][0]  # a GET of "<ns>/configmaps" answers with the namespace's ConfigMap list
    with pytest.raises(SelectionError, match=rf"not found in cluster source: {ns}/configmaps$"):
        run_backup(kube, repo, BackupSpec(backup_id="x", plan="sel", namespaces=[f"{ns}/configmaps"]))
    many = [*world["names"], "no-such-1", "no-such-2"]  # more than a few names: checked against one LIST
    with pytest.raises(SelectionError, match="not found in cluster source: no-such-1, no-such-2$"):
        run_backup(kube, repo, BackupSpec(backup_id="x", plan="sel", namespaces=many))
    with pytest.raises(SelectionError, match="match no namespace"):
        run_backup(kube, repo, BackupSpec(backup_id="y", plan="sel", namespace_globs=["nothing-like-this-*"]))


def test_kinds_labels_and_scope(world):
    kube, tag, repo = world["kube"], world["tag"], world["repo"]
    ns = f"blog-{tag}"
    m = run_backup(
        kube,
        repo,
        BackupSpec(
            backup_id="k",
            plan="sel",
            namespaces=[ns],
            include_kinds=["ConfigMap", "secrets"],
            label_selector="tier=gold",
        ),
    ).manifest
    got = {o for o in _objects(repo, "k") if o[0] != "Namespace"}
    assert got == {("ConfigMap", ns, "keep"), ("Secret", ns, "s")}
    m = run_backup(kube, repo, BackupSpec(backup_id="e", plan="sel", namespaces=[ns], exclude_kinds=["Secret"]))
    assert not [o for o in _objects(repo, "e") if o[0] == "Secret"]
    m = run_backup(kube, repo, BackupSpec(backup_id="v", plan="sel", namespaces=[ns], scope="volumes")).manifest
    assert set(m.counts) == {"PersistentVolumeClaim", "PersistentVolume", "Namespace"}


def test_restore_only_selected_kinds_and_named_resources(world, target):
    kube, tag, repo = world["kube"], world["tag"], world["repo"]
    src = f"shop-{tag}-a"
    run_backup(kube, repo, BackupSpec(backup_id="r", plan="sel", namespaces=[src]))
    tkube = Kube.from_kubeconfig(target.kubeconfig)
    report = run_restore(
        tkube,
        repo,
        RestoreSpec(
            backup_id="r",
            resources=[f"ConfigMap/{src}/keep"],
            options=RestoreOptions(namespace_mapping={src: src + "-one"}),
        ),
    )
    created = {(i.kind, i.name) for i in report.items if i.action == "created"}
    assert created == {("Namespace", src + "-one"), ("ConfigMap", "keep")}
    report = run_restore(
        tkube,
        repo,
        RestoreSpec(
            backup_id="r",
            include_kinds=["Secret", "Namespace"],
            options=RestoreOptions(namespace_mapping={src: src + "-sec"}),
        ),
    )
    assert {i.kind for i in report.items} == {"Namespace", "Secret"}
    assert {c.metadata.name for c in target.core.list_namespaced_config_map(src + "-one").items} >= {"keep"}
    assert "other" not in {c.metadata.name for c in target.core.list_namespaced_config_map(src + "-one").items}
    for n in (src + "-one", src + "-sec"):
        target.core.delete_namespace(n)


def test_own_mover_objects_are_never_captured_and_are_named(world, source):
    """A mover of another backup (or one left behind) in the namespace: its Job and its per-run
    Secret (the repository's credentials) stay out of the backup — restored, that Job would start
    a backup's mover in the target — and the warnings name each one."""
    kube, tag, repo = world["kube"], world["tag"], world["repo"]
    ns = f"shop-{tag}-b"
    own = {"ys1000.io/component": "mover"}
    source.core.create_namespaced_secret(
        ns, {"metadata": {"name": "ys1000-mover-x", "labels": own}, "stringData": {"AWS_SECRET_ACCESS_KEY": "k"}}
    )
    source.batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "ys1000-mover-x", "labels": own},
            "spec": {
                "suspend": True,
                "template": {
                    "metadata": {"labels": own},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "ys1000/mover:0.1.0"}]},
                },
            },
        },
    )
    m = run_backup(kube, repo, BackupSpec(backup_id="own", plan="sel", namespaces=[ns])).manifest
    got = _objects(repo, "own")
    assert ("Secret", ns, "s") in got and ("ConfigMap", ns, "keep") in got  # the application's
    assert not [o for o in got if o[2] == "ys1000-mover-x"], sorted(got)
    assert (
        f"skipped 2 object(s) of ys1000's own movers and hooks: Job {ns}/ys1000-mover-x (mover), "
        f"Secret {ns}/ys1000-mover-x (mover)"
    ) in m.warnings


def test_a_namespaced_kind_called_namespace_follows_its_own_namespace():
    """A restore of namespace "app" takes the core Namespace "app", not a custom resource of kind
    Namespace named "app" in another namespace (its reads skip that namespace's index members)."""
    from ys1000.repository.manifest import IndexEntry
    from ys1000.restore.apply import _selected

    spec = RestoreSpec(backup_id="b", namespaces=["app"])
    assert _selected(IndexEntry("", "v1", "Namespace", "namespaces", None, "app", 2, "a"), spec)
    assert not _selected(IndexEntry("example.com", "v1", "Namespace", "namespaces", "other", "app", 2, "b"), spec)
    assert _selected(IndexEntry("example.com", "v1", "Namespace", "namespaces", "app", "x", 2, "c"), spec)
