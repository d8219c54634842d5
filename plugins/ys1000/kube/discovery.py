"""API discovery: which resource types a cluster serves, at their preferred versions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ys1000.kube.client import Kube, KubeError, ResourceType


class Discovery:
    """The cluster's listable resource types, looked up by kind or by group-resource."""

    def __init__(self, types: list[ResourceType], unavailable: dict[str, str] | None = None):
        self.types = types
        # "group/version" -> why its resources could not be discovered (an aggregated API whose
        # backend is down): the caller reports it, since nothing of that group can be listed
        self.unavailable = dict(unavailable or {})
        self._by_gk = {(t.group, t.kind): t for t in types}
        self._by_gr = {t.group_resource: t for t in types}

    @classmethod
    def load(cls, kube: Kube) -> "Discovery":
        groups = kube.get("/apis").get("groups", [])
        paths = [("", "v1", "/api/v1")]
        for g in groups:
            pv = g.get("preferredVersion") or g["versions"][0]
            paths.append((g["name"], pv["version"], f"/apis/{g['name']}/{pv['version']}"))

        unavailable: dict[str, str] = {}

        def fetch(item):
            group, version, path = item
            try:
                return group, version, kube.get(path).get("resources", [])
            except KubeError as exc:
                if exc.status in (404, 503):  # an aggregated API that is down: skip, do not fail
                    unavailable[f"{group}/{version}"] = _why_unavailable(kube, group, version, exc)
                    return group, version, []
                raise

        types: list[ResourceType] = []
        with ThreadPoolExecutor(8) as pool:
            for group, version, resources in pool.map(fetch, paths):
                for r in resources:
                    if "/" in r["name"] or "list" not in r.get("verbs", []):
                        continue  # subresources (pods/log) and non-listable kinds (tokenreviews)
                    types.append(
                        ResourceType(
                            group, version, r["name"], r["kind"], r["namespaced"], frozenset(r.get("verbs", []))
                        )
                    )
        return cls(types, dict(sorted(unavailable.items())))

    def warnings(self) -> list[str]:
        """One line per API group that could not be discovered, naming the group and why."""
        return [
            f"API group {gv.split('/')[0]} ({gv}) is unavailable, its resources are not included: {why}"
            for gv, why in self.unavailable.items()
        ]

    def by_kind(self, kind: str, group: str | None = None) -> ResourceType | None:
        if group is not None:
            return self._by_gk.get((group, kind))
        matches = [t for t in self.types if t.kind == kind]
        core = [t for t in matches if t.group == ""]
        return next(iter(core or matches), None)

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return self._by_gk.get((group, kind))

    def by_group_resource(self, gr: str) -> ResourceType | None:
        return self._by_gr.get(gr)

    def namespaced(self) -> list[ResourceType]:
        return [t for t in self.types if t.namespaced]


def _why_unavailable(kube: Kube, group: str, version: str, exc: KubeError) -> str:
    """The APIService's own explanation when there is one (e.g. "MissingEndpoints: ..."), else the error."""
    why = f"{exc.status} {exc.reason}: {exc.message}".strip().rstrip(":")
    try:
        svc = kube.get_or_none(APISERVICES.path(name=f"{version}.{group}"))
    except KubeError:
        svc = None
    for cond in ((svc or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Available" and cond.get("status") != "True":
            ref = ((svc or {}).get("spec") or {}).get("service") or {}
            backend = f" (service {ref.get('namespace')}/{ref.get('name')})" if ref else ""
            return f"APIService {version}.{group}{backend} not available: {cond.get('reason')}: {cond.get('message')}"
    return why


def core(resource: str, kind: str, namespaced: bool = True) -> ResourceType:
    """A core/v1 type without a discovery round trip (pods, PVCs, namespaces ...)."""
    return ResourceType("", "v1", resource, kind, namespaced, frozenset({"list", "get", "create"}))


NAMESPACES = core("namespaces", "Namespace", namespaced=False)
PODS = core("pods", "Pod")
PVCS = core("persistentvolumeclaims", "PersistentVolumeClaim")
PVS = core("persistentvolumes", "PersistentVolume", namespaced=False)
SERVICES = core("services", "Service")
CRDS = ResourceType(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    False,
    frozenset({"list", "get", "create"}),
)
STORAGE_CLASSES = ResourceType(
    "storage.k8s.io", "v1", "storageclasses", "StorageClass", False, frozenset({"list", "get", "create"})
)
CLUSTER_ROLE_BINDINGS = ResourceType(
    "rbac.authorization.k8s.io",
    "v1",
    "clusterrolebindings",
    "ClusterRoleBinding",
    False,
    frozenset({"list", "get", "create"}),
)
CLUSTER_ROLES = ResourceType(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, frozenset({"list", "get", "create"})
)
APISERVICES = ResourceType(
    "apiregistration.k8s.io", "v1", "apiservices", "APIService", False, frozenset({"list", "get", "create"})
)
VALIDATING_WEBHOOKS = ResourceType(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
    frozenset({"list", "get", "create"}),
)
MUTATING_WEBHOOKS = ResourceType(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
    frozenset({"list", "get", "create"}),
)
