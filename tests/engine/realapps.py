"""A realistic operator-style monitoring stack, written here (not copied from a real operator).

``stack(ns)`` returns the objects of a prometheus-operator-like install in namespace ``ns``:

* an operator Deployment with its ServiceAccount and Service (the webhooks' backend);
* two CRDs whose schemas are large (a few hundred KB each, generated: many documented, nested
  properties, like real operators' CRDs) and two small ones; custom resources of all four
  (Prometheus/Alertmanager-like, ServiceMonitor-like, rules);
* NetworkPolicies, PodDisruptionBudgets, a ConfigMap and a Secret;
* a node-exporter DaemonSet mounting ``/``, ``/sys`` and ``/proc`` as inline hostPath volumes;
* RBAC at both scopes: a Role + RoleBinding, a RoleBinding to a ClusterRole, ClusterRoles +
  ClusterRoleBindings to the stack's ServiceAccounts, one aggregated ClusterRole (aggregationRule)
  with two components, and a ClusterRoleBinding to the bootstrap ClusterRole ``view``;
* an APIService ``v1beta1.custom.metrics.k8s.io`` served by a Service of the namespace that has
  no backend (so discovery of that group fails, as right after installing a metrics adapter);
* a ValidatingWebhookConfiguration (failurePolicy Ignore) and a MutatingWebhookConfiguration
  (failurePolicy Fail, with namespace and object selectors nothing matches) calling the operator.

Cluster-scoped objects carry the label ``realapps.ys1000.io/stack``; ``teardown`` removes them
(the APIService and the webhooks first: while an APIService is unavailable, no namespace of the
cluster can finish deleting).
"""

from __future__ import annotations

import json

from ys1000.kube import Discovery, Kube, KubeError
from ys1000.kube.discovery import (
    APISERVICES,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CRDS,
    MUTATING_WEBHOOKS,
    NAMESPACES,
    VALIDATING_WEBHOOKS,
)
from ys1000.waiting import wait_until

GROUP = "monitoring.realapps.ys1000.io"
STACK_LABEL = "realapps.ys1000.io/stack"
METRICS_GROUP = "custom.metrics.k8s.io"
APISERVICE_NAME = f"v1beta1.{METRICS_GROUP}"
AGGREGATE_LABEL = "rbac.realapps.ys1000.io/aggregate-to-monitoring-view"
HOST_PATHS = {"root": "/", "sys": "/sys", "proc": "/proc"}
LARGE_CRDS = {
    "prometheuses": 520_000,
    "alertmanagers": 300_000,
}  # plural -> schema bytes at least (the real Prometheus CRD is ~500 KB)

_WORDS = [
    "storage",
    "retention",
    "shards",
    "query",
    "remote",
    "write",
    "read",
    "alerting",
    "scrape",
    "tls",
    "authorization",
    "basicAuth",
    "oauth2",
    "relabel",
    "metric",
    "probe",
    "thanos",
    "web",
    "tracing",
    "exemplars",
    "tsdb",
    "walCompression",
    "enforced",
    "sample",
    "target",
    "label",
    "limit",
    "config",
    "container",
    "volume",
    "mount",
    "affinity",
    "toleration",
    "topology",
    "security",
    "resources",
]
_TEXT = (
    "{name} configures how the {section} component of the managed deployment behaves. When it is not "
    "set the operator applies its default, which follows the upstream recommendation for production "
    "clusters. Changing it triggers a rolling update of the managed pods; see the operator's "
    "documentation for the full semantics and the interaction with the other {section} settings."
)


def _leaf(name: str, section: str, i: int) -> dict:
    desc = _TEXT.format(name=name, section=section)
    kind = i % 6
    if kind == 0:
        return {"type": "string", "description": desc}
    if kind == 1:
        return {"type": "integer", "format": "int32", "minimum": 0, "description": desc}
    if kind == 2:
        return {"type": "boolean", "description": desc}
    if kind == 3:
        return {"type": "string", "enum": ["Disabled", "Enabled", "Auto"], "description": desc}
    if kind == 4:
        return {"type": "array", "items": {"type": "string"}, "description": desc}
    return {"type": "object", "additionalProperties": {"type": "string"}, "description": desc}


def _section(name: str, depth: int) -> dict:
    props = {}
    for i in range(10):
        field = f"{_WORDS[(i * 7 + len(name)) % len(_WORDS)]}{name[:1].upper()}{name[1:]}{i}"
        if depth > 0 and i % 4 == 3:
            props[field] = _section(field, depth - 1)
        else:
            props[field] = _leaf(field, name, i)
    return {"type": "object", "description": _TEXT.format(name=name, section=name), "properties": props}


def generated_schema(kind: str, min_bytes: int, known: dict) -> dict:
    """A structural openAPIV3Schema of at least ``min_bytes`` bytes: ``known`` spec fields plus
    generated sections of documented, nested properties (3 levels), the way real operators' are."""
    spec_props = dict(known)
    schema = {
        "type": "object",
        "description": f"{kind} defines a managed deployment.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "description": f"Desired state of the {kind}.", "properties": spec_props},
            "status": {
                "type": "object",
                "properties": {
                    "availableReplicas": {"type": "integer", "format": "int32"},
                    "conditions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "status": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    }
    one = len(json.dumps(_section("sample", 2)))
    n = min_bytes // one + 1
    for i in range(n):
        name = f"{_WORDS[i % len(_WORDS)]}{i}"
        spec_props[name] = _section(name, 2)
    assert len(json.dumps(schema)) >= min_bytes
    return schema


def _crd(plural: str, kind: str, schema: dict, short: list[str]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {STACK_LABEL: "monitoring"},
            "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.1"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
                "shortNames": short,
                "categories": ["realapps"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
}


def crds() -> list[dict]:
    workload = {
        "replicas": {"type": "integer", "format": "int32", "minimum": 0},
        "version": {"type": "string"},
        "serviceAccountName": {"type": "string"},
        "serviceMonitorSelector": _SELECTOR,
        "ruleSelector": _SELECTOR,
        "retention": {"type": "string"},
        "externalLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    return [
        _crd(
            "prometheuses", "Prometheus", generated_schema("Prometheus", LARGE_CRDS["prometheuses"], workload), ["prom"]
        ),
        _crd(
            "alertmanagers",
            "Alertmanager",
            generated_schema("Alertmanager", LARGE_CRDS["alertmanagers"], workload),
            ["am"],
        ),
        _crd(
            "servicemonitors",
            "ServiceMonitor",
            {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            "selector": _SELECTOR,
                            "endpoints": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "port": {"type": "string"},
                                        "interval": {"type": "string"},
                                        "path": {"type": "string"},
                                    },
                                },
                            },
                        },
                    }
                },
            },
            ["smon"],
        ),
        _crd(
            "prometheusrules",
            "PrometheusRule",
            {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            "groups": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "rules": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "alert": {"type": "string"},
                                                    "record": {"type": "string"},
                                                    "expr": {"type": "string"},
                                                    "for": {"type": "string"},
                                                    "labels": {
                                                        "type": "object",
                                                        "additionalProperties": {"type": "string"},
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    }
                },
            },
            ["promrule"],
        ),
    ]


def _meta(name: str, ns: str | None = None, **labels) -> dict:
    md: dict = {"name": name, "labels": {"app.kubernetes.io/part-of": "realapps-monitoring", **labels}}
    if ns:
        md["namespace"] = ns
    return md


def _cluster_meta(name: str, **labels) -> dict:
    return _meta(name, None, **{STACK_LABEL: "monitoring", **labels})


def namespaced(ns: str) -> list[dict]:
    """The stack's objects inside ``ns`` (custom resources last)."""
    op_labels = {"app.kubernetes.io/name": "prometheus-operator"}
    ne_labels = {"app.kubernetes.io/name": "node-exporter"}
    return [
        *(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(n, ns)}
            for n in ("prometheus-operator", "prometheus", "node-exporter")
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta("prometheus-operator-config", ns),
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch", "update"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("prometheus-operator-config", ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus-operator-config"},
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus-operator", "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("prometheus-scrape", ns),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "realapps-prometheus-scrape",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("prometheus-k8s-rulefiles", ns),
            "data": {
                "node.rules.yaml": "groups:\n- name: node\n  rules:\n  - record: node:cpu:rate5m\n    expr: rate(node_cpu_seconds_total[5m])\n"
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("alertmanager-main", ns),
            "type": "Opaque",
            "stringData": {"alertmanager.yaml": "route:\n  receiver: 'null'\nreceivers:\n- name: 'null'\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("prometheus-operator", ns, **op_labels),
            "spec": {"selector": op_labels, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("custom-metrics-apiserver", ns),
            # nothing runs behind it: the APIService it serves stays unavailable
            "spec": {
                "selector": {"app.kubernetes.io/name": "custom-metrics-apiserver"},
                "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("node-exporter", ns, **ne_labels),
            "spec": {"clusterIP": "None", "selector": ne_labels, "ports": [{"name": "metrics", "port": 9100}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("prometheus-operator", ns, **op_labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": op_labels},
                "template": {
                    "metadata": {"labels": op_labels},
                    "spec": {
                        "serviceAccountName": "prometheus-operator",
                        "containers": [
                            {
                                "name": "prometheus-operator",
                                "image": "quay.io/prometheus-operator/prometheus-operator:v0.76.0",
                                "args": ["--kubelet-service=kube-system/kubelet", "--web.listen-address=:8443"],
                                "ports": [{"name": "https", "containerPort": 8443}],
                                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("node-exporter", ns, **ne_labels),
            "spec": {
                "selector": {"matchLabels": ne_labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": ne_labels},
                    "spec": {
                        "serviceAccountName": "node-exporter",
                        "hostNetwork": True,
                        "hostPID": True,
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [
                            {
                                "name": "node-exporter",
                                "image": "quay.io/prometheus/node-exporter:v1.8.2",
                                "args": [
                                    "--path.procfs=/host/proc",
                                    "--path.sysfs=/host/sys",
                                    "--path.rootfs=/host/root",
                                ],
                                "ports": [{"name": "metrics", "containerPort": 9100}],
                                "volumeMounts": [
                                    {
                                        "name": v,
                                        "mountPath": f"/host/{v}",
                                        "readOnly": True,
                                        **({"mountPropagation": "HostToContainer"} if v == "root" else {}),
                                    }
                                    for v in HOST_PATHS
                                ],
                            }
                        ],
                        "volumes": [{"name": v, "hostPath": {"path": p}} for v, p in HOST_PATHS.items()],
                    },
                },
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("default-deny-ingress", ns),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("prometheus", ns),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}],
                        "ports": [{"protocol": "TCP", "port": 9090}],
                    }
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("prometheus-k8s", ns),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta("alertmanager-main", ns),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}},
        },
        # custom resources
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Prometheus",
            "metadata": _meta("k8s", ns),
            "spec": {
                "replicas": 2,
                "version": "v2.54.1",
                "serviceAccountName": "prometheus",
                "serviceMonitorSelector": {"matchLabels": {"team": "platform"}},
                "ruleSelector": {"matchLabels": {"role": "alert-rules"}},
                "retention": "15d",
                "externalLabels": {"cluster": "source"},
            },
        },
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Alertmanager",
            "metadata": _meta("main", ns),
            "spec": {"replicas": 3, "version": "v0.27.0", "serviceAccountName": "prometheus"},
        },
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta("node-exporter", ns, team="platform"),
            "spec": {"selector": {"matchLabels": ne_labels}, "endpoints": [{"port": "metrics", "interval": "15s"}]},
        },
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta("prometheus-operator", ns, team="platform"),
            "spec": {"selector": {"matchLabels": op_labels}, "endpoints": [{"port": "https", "path": "/metrics"}]},
        },
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "PrometheusRule",
            "metadata": _meta("node-rules", ns, role="alert-rules"),
            "spec": {
                "groups": [
                    {
                        "name": "node",
                        "rules": [
                            {
                                "alert": "NodeFilesystemAlmostFull",
                                "expr": "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05",
                                "for": "30m",
                                "labels": {"severity": "critical"},
                            },
                            {"record": "node:cpu:rate5m", "expr": "rate(node_cpu_seconds_total[5m])"},
                        ],
                    }
                ]
            },
        },
    ]


def cluster_scoped(ns: str) -> list[dict]:
    """ClusterRoles, ClusterRoleBindings, APIService and webhook configurations (CRDs apart)."""
    rbac = "rbac.authorization.k8s.io/v1"
    crb = lambda name, role, sa: {  # noqa: E731
        "apiVersion": rbac,
        "kind": "ClusterRoleBinding",
        "metadata": _cluster_meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }
    webhook_client = {
        "service": {
            "namespace": ns,
            "name": "prometheus-operator",
            "path": "/admission-prometheusrules/validate",
            "port": 443,
        }
    }
    never = {"matchLabels": {"realapps.ys1000.io/webhook": "enforce"}}  # nothing carries this label
    return [
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_meta("realapps-prometheus-operator"),
            "rules": [
                {"apiGroups": [GROUP], "resources": ["*"], "verbs": ["*"]},
                {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["nodes", "namespaces"], "verbs": ["get", "list", "watch"]},
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_meta("realapps-prometheus-scrape"),
            "rules": [
                {"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_meta("realapps-monitoring-view"),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_LABEL: "true"}}]},
            "rules": [],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_meta("realapps-monitoring-view-crs", **{AGGREGATE_LABEL: "true"}),
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["prometheuses", "alertmanagers", "servicemonitors"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _cluster_meta("realapps-monitoring-view-metrics", **{AGGREGATE_LABEL: "true"}),
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        },
        crb("realapps-prometheus-operator", "realapps-prometheus-operator", "prometheus-operator"),
        crb("realapps-prometheus-view", "realapps-monitoring-view", "prometheus"),
        crb("realapps-node-exporter-view", "view", "node-exporter"),
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": _cluster_meta(APISERVICE_NAME),
            "spec": {
                "group": METRICS_GROUP,
                "version": "v1beta1",
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"namespace": ns, "name": "custom-metrics-apiserver", "port": 443},
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _cluster_meta("realapps-prometheusrule-validate"),
            "webhooks": [
                {
                    "name": f"prometheusrulevalidate.{GROUP}",
                    "clientConfig": webhook_client,
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": ["*"],
                            "resources": ["prometheusrules"],
                            "operations": ["CREATE", "UPDATE"],
                            "scope": "Namespaced",
                        }
                    ],
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": _cluster_meta("realapps-prometheus-defaults"),
            "webhooks": [
                {
                    "name": f"prometheusdefaults.{GROUP}",
                    "clientConfig": {"service": {**webhook_client["service"], "path": "/admission-prometheus/mutate"}},
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": ["*"],
                            "resources": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "scope": "Namespaced",
                        }
                    ],
                    "failurePolicy": "Fail",
                    "namespaceSelector": never,
                    "objectSelector": never,
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        },
    ]


def cluster_names(ns: str) -> dict[str, list[str]]:
    """Kind -> names of the stack's cluster-scoped objects (CRDs included, the Namespace not)."""
    out: dict[str, list[str]] = {"CustomResourceDefinition": [c["metadata"]["name"] for c in crds()]}
    for obj in cluster_scoped(ns):
        out.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    return out


def crd_established(kube: Kube, name: str) -> bool:
    crd = kube.get_or_none(CRDS.path(name=name)) or {}
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )


def deploy(kube: Kube, ns: str) -> None:
    """Create the whole stack in ``kube`` and wait until it is in the shape a user would back up:
    CRDs Established, the operator and one node-exporter pod per node Running, the aggregated
    ClusterRole's rules filled in by the controller."""
    for crd in crds():
        kube.create(CRDS, crd)
    for crd in crds():
        wait_until(
            lambda crd=crd: crd_established(kube, crd["metadata"]["name"]),
            timeout=60,
            what=f"CRD {crd['metadata']['name']} to be Established",
        )
    kube.create(NAMESPACES, {"metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "realapps-monitoring"}}})
    wait_until(
        lambda: Discovery.load(kube).by_kind("Prometheus", GROUP), timeout=30, what="the stack's CRDs to be served"
    )
    disc = Discovery.load(kube)
    webhooks_and_apis = {"APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    cluster = cluster_scoped(ns)
    for obj in [o for o in cluster if o["kind"] not in webhooks_and_apis] + namespaced(ns):
        rt = disc.by_api_version(obj["apiVersion"], obj["kind"])
        kube.create(rt, obj, ns if rt.namespaced else None)
    for obj in [o for o in cluster if o["kind"] in webhooks_and_apis]:
        kube.create(disc.by_api_version(obj["apiVersion"], obj["kind"]), obj)
    pods = disc.by_kind("Pod")
    daemonsets = disc.by_kind("DaemonSet", "apps")

    def exporters_running():
        ds = kube.get(daemonsets.path(ns, "node-exporter")).get("status") or {}
        running = [
            p
            for p in kube.list(pods, ns, label_selector="app.kubernetes.io/name=node-exporter")
            if (p.get("status") or {}).get("phase") == "Running"
        ]
        return ds.get("desiredNumberScheduled", 0) > 0 and len(running) == ds["desiredNumberScheduled"]

    wait_until(exporters_running, timeout=90, what=f"node-exporter pods in {ns} to run on every node")
    wait_until(
        lambda: [
            p
            for p in kube.list(pods, ns, label_selector="app.kubernetes.io/name=prometheus-operator")
            if (p.get("status") or {}).get("phase") == "Running"
        ],
        timeout=90,
        what="the operator pod to run",
    )
    wait_until(
        lambda: len(kube.get(CLUSTER_ROLES.path(name="realapps-monitoring-view")).get("rules") or []) == 2,
        timeout=60,
        what="the aggregated ClusterRole's rules",
    )


def teardown(kube: Kube, namespaces: list[str]) -> None:
    """Remove the stack (any copies under other namespace names too), APIService and webhooks first."""
    selector = f"{STACK_LABEL}=monitoring"
    for rt in (APISERVICES, VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS, CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES):
        for obj in kube.list(rt, label_selector=selector):
            kube.delete(rt, obj["metadata"]["name"])
    for ns in namespaces:
        kube.delete(NAMESPACES, ns)
    for crd in crds():
        try:
            kube.delete(CRDS, crd["metadata"]["name"])
        except KubeError:
            pass
