"""Issue 16, least privilege: the RBAC manifests shipped in ``deploy/rbac/`` are enough, and a
missing rule is reported as what it is.

Against the sandbox's real API servers (RBAC authorization on), as ServiceAccounts that hold only
the shipped roles (bound as ``example-bindings.yaml`` binds them), with tokens from the
TokenRequest API: ``ys1000 backup`` of a namespace with a ConfigMap, a Secret, a Role and a bound
PVC with data (a restic mover Job runs in it), then ``ys1000 restore`` of it into a fresh
namespace of the other cluster, every byte back. Taking one verb off a shipped role turns the run
into an error that names the verb, the resource and the namespace (the API server's own 403
message), not a traceback.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, NAMESPACES, PVCS, core

from ys1000.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
RBAC_DIR = REPO / "deploy" / "rbac"
ROLE_FILES = ("backup.yaml", "restore.yaml", "movers-hooks.yaml")
YS1000 = str(Path(sys.executable).parent / "ys1000")

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = ResourceType(RBAC_GROUP, "v1", "roles", "Role", True, frozenset({"list", "get", "create"}))
ROLE_BINDINGS = ResourceType(
    RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True, frozenset({"list", "get", "create"})
)
CONFIGMAPS, SECRETS = core("configmaps", "ConfigMap"), core("secrets", "Secret")
SERVICE_ACCOUNTS = core("serviceaccounts", "ServiceAccount")
KINDS = {
    "ClusterRole": CLUSTER_ROLES,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
    "Role": ROLES,
    "RoleBinding": ROLE_BINDINGS,
    "ServiceAccount": SERVICE_ACCOUNTS,
}
# the example's placeholders, replaced by this module's namespaces
EXAMPLE_SA_NAMESPACE, EXAMPLE_APP_NAMESPACE = "ys1000-system", "shop"
DATA = os.urandom(256 << 10)  # the PVC's bytes, compared after the restore


# -- the shipped files ---------------------------------------------------------------------------
def shipped(name: str) -> list[dict]:
    """The documents of ``deploy/rbac/<name>``, as shipped."""
    return [d for d in yaml.safe_load_all((RBAC_DIR / name).read_text()) if d]


def shipped_role(name: str) -> dict:
    found = [d for f in ROLE_FILES for d in shipped(f) if d["metadata"]["name"] == name]
    assert len(found) == 1 and found[0]["kind"] == "ClusterRole", f"{name}: {found}"
    return copy.deepcopy(found[0])


def without(role: dict, group: str, resource: str, verb: str) -> dict:
    """The shipped ``role`` with ``verb`` taken off ``resource`` (everything else kept)."""
    rules, hit = [], False
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            hit = True
            if len(rule["resources"]) > 1:
                rules.append({**rule, "resources": [r for r in rule["resources"] if r != resource]})
            if len(rule["verbs"]) > 1:
                rules.append({**rule, "resources": [resource], "verbs": [v for v in rule["verbs"] if v != verb]})
        else:
            rules.append(rule)
    assert hit, f"{role['metadata']['name']} has no {verb} on {resource}"
    return {**role, "metadata": {"name": role["metadata"]["name"]}, "rules": rules}


def apply(kube: Kube, doc: dict) -> dict:
    """Create ``doc``, or replace the live object of its name."""
    rt, ns = KINDS[doc["kind"]], doc["metadata"].get("namespace")
    try:
        return kube.create(rt, doc, ns)
    except KubeError as exc:
        if exc.status != 409:
            raise
    live = kube.get(rt.path(ns, doc["metadata"]["name"]))
    md = {**doc["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}
    return kube.replace(rt, {**doc, "metadata": md}, ns)


# -- identities ----------------------------------------------------------------------------------
class Identity:
    """A ServiceAccount, a token for it from the TokenRequest API, and a kubeconfig holding only
    that token (the sandbox's server URL and CA, read from the admin kubeconfig)."""

    def __init__(self, cluster, admin: Kube, namespace: str, name: str, path: Path):
        self.namespace, self.name, self.admin = namespace, name, admin
        apply(admin, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})
        token = cluster.core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        server = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
        assert server["server"].startswith("https://") and server.get("certificate-authority-data")
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": cluster.name, "cluster": server}],
                    "users": [{"name": name, "user": {"token": token}}],
                    "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": name}}],
                    "current-context": cluster.name,
                }
            )
        )
        path.chmod(0o600)
        self.kubeconfig = str(path)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def can(self, verb: str, resource: str, namespace: str = "", group: str = "") -> bool:
        """What the API server's authorizer answers for this ServiceAccount (SubjectAccessReview)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": self.user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{self.namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace},
            },
        }
        out = self.admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        return bool(out["status"].get("allowed"))


def example_bindings(subject: str, ident: Identity, app_namespace: str) -> list[dict]:
    """The shipped example's bindings of ServiceAccount ``subject`` (ys1000-backup or
    ys1000-restore), given to ``ident`` instead: its name and namespace replace the example's,
    ``app_namespace`` replaces "shop", and the bindings' names get the identity's (unique)."""
    out = []
    for doc in shipped("example-bindings.yaml"):
        if doc["kind"] == "ServiceAccount" or not any(s["name"] == subject for s in doc["subjects"]):
            continue
        md = doc["metadata"]
        if doc["kind"] == "ClusterRoleBinding":
            md["name"] = f"{md['name']}-{ident.namespace}-{ident.name}"
        else:
            assert md["namespace"] == EXAMPLE_APP_NAMESPACE, doc
            md["namespace"], md["name"] = app_namespace, f"{md['name']}-{ident.name}"
        for s in doc["subjects"]:
            assert (s["namespace"], s["name"]) == (EXAMPLE_SA_NAMESPACE, subject), doc
            s["namespace"], s["name"] = ident.namespace, ident.name
        out.append(doc)
    return out


# -- the module's setting ------------------------------------------------------------------------
class World:
    """Both clusters with the shipped ClusterRoles applied as shipped, a namespace per cluster for
    the ServiceAccounts and the application namespace in ``source``; all made is removed after."""

    def __init__(self, clusters, tmp: Path):
        self.suffix = uuid.uuid4().hex[:6]
        self.clusters = {c.name: c for c in clusters}
        self.kubes = {c.name: Kube.from_kubeconfig(c.kubeconfig, name=c.name) for c in clusters}
        self.tmp = tmp
        self.made: list[tuple[Kube, ResourceType, str]] = []
        for kube in self.kubes.values():
            for f in ROLE_FILES:
                for doc in shipped(f):
                    apply(kube, doc)
                    self.made.append((kube, CLUSTER_ROLES, doc["metadata"]["name"]))
        self.sa_namespace = {name: self.namespace(name, f"ys1000-sa-{self.suffix}") for name in self.kubes}
        self.app = self.namespace("source", f"shop-{self.suffix}")

    def namespace(self, cluster: str, name: str) -> str:
        kube = self.kubes[cluster]
        kube.create(NAMESPACES, {"metadata": {"name": name, "labels": {"ys1000.io/test": "true"}}})
        self.made.append((kube, NAMESPACES, name))
        return name

    def identity(self, cluster: str, name: str) -> Identity:
        kubeconfig = self.tmp / f"{cluster}-{name}.kubeconfig"
        return Identity(self.clusters[cluster], self.kubes[cluster], self.sa_namespace[cluster], name, kubeconfig)

    def bind(
        self, cluster: str, ident: Identity, subject: str, app_namespace: str, variant: dict | None = None
    ) -> None:
        """Bind ``ident`` as the example binds ``subject``; ``variant`` (a shipped role a test
        edited) replaces the shipped role of its name, under a name of its own."""
        kube = self.kubes[cluster]
        replace = {}
        if variant is not None:
            original = variant["metadata"]["name"]
            variant["metadata"]["name"] = f"{original}-{self.suffix}-{ident.name}"
            apply(kube, variant)
            self.made.append((kube, CLUSTER_ROLES, variant["metadata"]["name"]))
            replace[original] = variant["metadata"]["name"]
        for doc in example_bindings(subject, ident, app_namespace):
            doc["roleRef"]["name"] = replace.get(doc["roleRef"]["name"], doc["roleRef"]["name"])
            apply(kube, doc)
            if doc["kind"] == "ClusterRoleBinding":
                self.made.append((kube, CLUSTER_ROLE_BINDINGS, doc["metadata"]["name"]))

    def cleanup(self) -> None:
        for kube, rt, name in reversed(self.made):
            try:
                kube.delete(rt, name)
            except KubeError:
                pass


def cli(*args, env: dict) -> subprocess.CompletedProcess:
    """The installed ``ys1000`` console script, as an operator runs it."""
    return subprocess.run([YS1000, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=180)


def forbidden(user: str, verb: str, resource: str, namespace: str, group: str = "") -> str:
    """The API server's 403 message for one missing permission."""
    return f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}" in the namespace "{namespace}"'


def assert_readable(out: subprocess.CompletedProcess) -> None:
    """No traceback and no raw client dump (HTTP headers, JSON bodies) in what the operator sees."""
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "HTTP response headers" not in text and '"kind":"Status"' not in text, text


def pv_dir(kube: Kube, ns: str, pvc: str) -> Path:
    claim = kube.get(PVCS.path(ns, pvc))
    pv = kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])


@pytest.fixture(scope="module")
def env(sandbox_s3) -> dict:
    bucket = sandbox_s3.new_bucket(f"rbac-{uuid.uuid4().hex[:8]}")
    return {**sandbox_s3.env(), "YS1000_REPO_KEY": "rbac-test-key", "REPO": f"s3://{bucket}/rbac"}


@pytest.fixture(scope="module")
def world(source, target, tmp_path_factory):
    w = World([source, target], tmp_path_factory.mktemp("rbac"))
    try:
        yield w
    finally:
        w.cleanup()


@pytest.fixture(scope="module")
def backup_sa(world) -> Identity:
    ident = world.identity("source", "ys1000-backup")
    world.bind("source", ident, "ys1000-backup", world.app)
    return ident


@pytest.fixture(scope="module")
def restore_sa(world) -> Identity:
    ident = world.identity("target", "ys1000-restore")
    world.bind("target", ident, "ys1000-restore", "")
    return ident


@pytest.fixture(scope="module")
def application(world) -> dict:
    """In the application namespace: a ConfigMap, a Secret, a ServiceAccount, a Role with its
    RoleBinding, and a bound PVC holding some bytes."""
    kube, ns = world.kubes["source"], world.app
    kube.create(CONFIGMAPS, {"metadata": {"name": "settings"}, "data": {"mode": "shop"}}, ns)
    secret = {"password": base64.b64encode(b"hunter2").decode()}
    kube.create(SECRETS, {"metadata": {"name": "db"}, "data": secret}, ns)
    kube.create(SERVICE_ACCOUNTS, {"metadata": {"name": "worker"}}, ns)
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    kube.create(ROLES, {"metadata": {"name": "reader"}, "rules": [rule]}, ns)
    binding = {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }
    kube.create(ROLE_BINDINGS, binding, ns)
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    kube.create(PVCS, {"metadata": {"name": "data"}, "spec": claim}, ns)
    wait_until(
        lambda: (kube.get(PVCS.path(ns, "data")).get("status") or {}).get("phase") == "Bound",
        timeout=30,
        what=f"PVC {ns}/data bound",
    )
    (pv_dir(kube, ns, "data") / "blob.bin").write_bytes(DATA)
    return {"namespace": ns, "secret": secret}


@pytest.fixture(scope="module")
def backup(backup_sa, application, env) -> dict:
    """One backup, taken by the ServiceAccount that holds only the shipped backup roles."""
    ns = application["namespace"]
    out = cli(
        "backup",
        *("--kubeconfig", backup_sa.kubeconfig, "--repo", env["REPO"], "-n", ns),
        *("--plan", "rbac", "--cluster-name", "source", "-o", "json"),
        env=env,
    )
    assert out.returncode == 0, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return json.loads(out.stdout)


# -- the tests -----------------------------------------------------------------------------------
def test_shipped_manifests_parse_and_are_what_the_servers_enforce(world, backup_sa, restore_sa):
    roles = {}
    for f in sorted(RBAC_DIR.glob("*.yaml")):
        for doc in shipped(f.name):
            assert doc["kind"] in KINDS, f"{f.name}: {doc['kind']}"
            assert doc["apiVersion"] == ("v1" if doc["kind"] == "ServiceAccount" else f"{RBAC_GROUP}/v1"), doc
            if doc["kind"] == "ClusterRole":
                roles[doc["metadata"]["name"]] = doc
                for rule in doc["rules"]:
                    assert rule["apiGroups"] and rule["resources"] and rule["verbs"], f"{f.name}: {rule}"
    assert set(roles) == {
        "ys1000-backup-cluster",
        "ys1000-backup-namespace",
        "ys1000-movers-hooks",
        "ys1000-restore",
        "ys1000-restore-rbac",
    }
    assert {d["metadata"]["name"] for f in ROLE_FILES for d in shipped(f)} == set(roles)
    for doc in shipped("example-bindings.yaml"):  # every example binding refers to a shipped role
        if doc["kind"] != "ServiceAccount":
            assert doc["roleRef"]["kind"] == "ClusterRole" and doc["roleRef"]["name"] in roles, doc
    # the module applied them as shipped: the API servers hold exactly these rules
    for kube in world.kubes.values():
        for name, doc in roles.items():
            assert kube.get(CLUSTER_ROLES.path(name=name))["rules"] == doc["rules"], name
    # the backup identity reads the protected namespace and runs Jobs there, changes none of the
    # application's objects and reads nothing elsewhere; the restore identity creates, deletes
    # nothing but its movers' leftovers, and has no exec, token minting or namespace deletion
    app = world.app
    assert backup_sa.can("list", "secrets", app) and backup_sa.can("create", "jobs", app, "batch")
    assert not backup_sa.can("update", "configmaps", app) and not backup_sa.can("create", "deployments", app, "apps")
    assert not backup_sa.can("list", "secrets", "kube-system")
    assert not backup_sa.can("create", "jobs", "default", "batch")
    assert not backup_sa.can("create", "pods/exec", app) and not backup_sa.can("get", "pods/exec", app)
    assert restore_sa.can("create", "deployments", "any-namespace", "apps")
    assert not restore_sa.can("delete", "deployments", app, "apps") and not restore_sa.can("delete", "namespaces")
    assert not restore_sa.can("create", "pods/exec", app) and not restore_sa.can("patch", "configmaps", app)
    assert not restore_sa.can("create", "serviceaccounts/token", "kube-system")


def test_backup_with_only_the_backup_roles(backup, application):
    ns = application["namespace"]
    assert backup["status"] == "Completed" and backup["namespaces"] == [ns], backup
    assert backup["counts"].get("ConfigMap", 0) >= 1 and backup["counts"].get("Secret", 0) >= 1, backup["counts"]
    (vol,) = backup["volumes"]
    assert (vol["namespace"], vol["pvc"], vol["method"]) == (ns, "data", "filecopy"), vol
    assert vol["restic"]["snapshot_id"] and vol["restic"]["total_bytes"] == len(DATA), vol


def test_restore_with_only_the_restore_roles(world, restore_sa, backup, application, env, target):
    ns = application["namespace"]
    new_ns = f"{ns}-r"
    world.made.append((world.kubes["target"], NAMESPACES, new_ns))
    out = cli(
        "restore",
        backup["backup_id"],
        *("--kubeconfig", restore_sa.kubeconfig, "--repo", env["REPO"]),
        *("--namespace-mapping", f"{ns}={new_ns}", "-o", "json"),
        env=env,
    )
    assert out.returncode == 0, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    report = json.loads(out.stdout)
    assert report["status"] == "Completed", report
    actions = {(i["kind"], i["name"]): i["action"] for i in report["items"]}
    for item in [
        ("Namespace", new_ns),
        ("ConfigMap", "settings"),
        ("Secret", "db"),
        ("ServiceAccount", "worker"),
        ("PersistentVolumeClaim", "data"),
        ("Role", "reader"),
        ("RoleBinding", "reader"),
    ]:
        assert actions.get(item) == "created", (item, actions)
    assert target.core.read_namespaced_config_map("settings", new_ns).data == {"mode": "shop"}
    assert target.core.read_namespaced_secret("db", new_ns).data == application["secret"]
    assert [(v["pvc"], v["status"]) for v in report["volumes"]] == [("data", "data")], report["volumes"]
    assert (pv_dir(world.kubes["target"], new_ns, "data") / "blob.bin").read_bytes() == DATA


@pytest.fixture(scope="module")
def backup_without_create_jobs(world, application, backup, env) -> tuple[Identity, subprocess.CompletedProcess]:
    """A backup by an identity bound like the example, but whose movers' role lacks ``create`` on
    jobs (after the module's backup, so the namespace's restic repository exists)."""
    ns = application["namespace"]
    ident = world.identity("source", "no-create-jobs")
    variant = without(shipped_role("ys1000-movers-hooks"), "batch", "jobs", "create")
    world.bind("source", ident, "ys1000-backup", ns, variant)
    out = cli("backup", "--kubeconfig", ident.kubeconfig, "--repo", env["REPO"], "-n", ns, "--plan", "nojobs", env=env)
    return ident, out


def test_backup_without_create_on_jobs_names_verb_resource_and_namespace(backup_without_create_jobs, application):
    """The PVC's data cannot be taken: the backup says so for that PVC with the API server's
    reason, and the resources are backed up all the same (PartiallyFailed, exit code 3)."""
    ident, out = backup_without_create_jobs
    ns = application["namespace"]
    assert_readable(out)
    assert out.returncode == 3, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    assert " PartiallyFailed: " in out.stdout.splitlines()[0], out.stdout
    line = next(x for x in out.stdout.splitlines() if f"PVC {ns}/data: " in x)
    assert "FAILED: " in line and forbidden(ident.user, "create", "jobs", ns, "batch") in line, line


def test_a_refused_mover_leaves_no_credentials_behind(backup_without_create_jobs, world, application):
    ident, out = backup_without_create_jobs
    assert out.returncode == 3, out.stdout + out.stderr
    kube, ns = world.kubes["source"], application["namespace"]
    left = [s["metadata"]["name"] for s in kube.list(SECRETS, ns, label_selector="ys1000.io/component=mover")]
    assert left == [], f"mover Secrets left in {ns}: {left}"


def test_backup_of_a_namespace_not_granted_names_verb_resource_and_namespace(world, backup_sa, env):
    """The namespaced backup role is bound per namespace: a namespace without that RoleBinding
    cannot be backed up, and the one-line error says which permission is missing where."""
    other = world.namespace("source", f"other-{world.suffix}")
    out = cli("backup", "--kubeconfig", backup_sa.kubeconfig, "--repo", env["REPO"], "-n", other, env=env)
    assert_readable(out)
    assert out.returncode == 1, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("ys1000: error: permission denied: "), line
    assert forbidden(backup_sa.user, "list", "pods", other) in line and "deploy/rbac/" in line, line


def test_restore_without_create_on_serviceaccounts_names_verb_resource_and_namespace(world, backup, application, env):
    """The restore role without ``create`` on serviceaccounts: those objects fail, each named with
    the API server's reason, the rest is restored, and the exit code says it is incomplete."""
    ns = application["namespace"]
    new_ns = f"{ns}-nosa"
    world.made.append((world.kubes["target"], NAMESPACES, new_ns))
    ident = world.identity("target", "no-create-serviceaccounts")
    variant = without(shipped_role("ys1000-restore"), "", "serviceaccounts", "create")
    world.bind("target", ident, "ys1000-restore", "", variant)
    out = cli(
        "restore",
        backup["backup_id"],
        *("--kubeconfig", ident.kubeconfig, "--repo", env["REPO"], "--namespace-mapping", f"{ns}={new_ns}"),
        *("--include-kind", "Namespace", "--include-kind", "ConfigMap", "--include-kind", "ServiceAccount"),
        env=env,
    )
    assert_readable(out)
    assert out.returncode == 3, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    assert f"created       Namespace {new_ns}" in out.stdout, out.stdout
    assert f"created       ConfigMap {new_ns}/settings" in out.stdout, out.stdout
    line = next(x for x in out.stdout.splitlines() if f"ServiceAccount {new_ns}/worker" in x)
    assert line.split()[0] == "failed" and forbidden(ident.user, "create", "serviceaccounts", new_ns) in line, line
