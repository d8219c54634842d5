"""Each restore transform on its own (no cluster)."""

import pytest

from ys1000.restore.priorities import rank
from ys1000.restore.transforms import (
    RestoreOptions,
    job,
    map_namespace,
    node_constraints,
    older_api_servers,
    pvc,
    rewrite_image,
    service,
    strip_server_fields,
    token_secret,
    transform,
)


def deployment():
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u",
            "resourceVersion": "7",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{}],
            "ownerReferences": [{"kind": "Thing", "name": "x", "uid": "old"}],
            "annotations": {"deployment.kubernetes.io/revision": "4", "keep": "me"},
        },
        "spec": {
            "template": {
                "spec": {
                    "nodeName": "n1",
                    "nodeSelector": {"disk": "ssd"},
                    "affinity": {"nodeAffinity": {}},
                    "tolerations": [{"key": "k"}],
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.old.io:5000/team/web:1.2",
                            "volumeMounts": [
                                {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets"},
                                {"name": "data", "mountPath": "/data"},
                            ],
                        }
                    ],
                    "initContainers": [{"name": "i", "image": "busybox:1"}],
                    "volumes": [
                        {"name": "kube-api-access-abcde", "projected": {"sources": []}},
                        {"name": "data", "emptyDir": {}},
                    ],
                }
            }
        },
        "status": {"replicas": 1},
    }


def test_strip_server_fields_keeps_user_data():
    o = strip_server_fields(deployment(), RestoreOptions())
    assert set(o["metadata"]) == {"name", "namespace", "annotations"}
    assert o["metadata"]["annotations"] == {"keep": "me"}
    assert "status" not in o


def test_namespace_mapping_reaches_bindings_and_pv_claims():
    opt = RestoreOptions(namespace_mapping={"shop": "shop-dr"})
    ns = map_namespace({"kind": "Namespace", "metadata": {"name": "shop"}, "spec": {"finalizers": ["kubernetes"]}}, opt)
    assert ns["metadata"]["name"] == "shop-dr" and "spec" not in ns
    rb = map_namespace(
        {
            "kind": "RoleBinding",
            "metadata": {"name": "r", "namespace": "shop"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "sa", "namespace": "shop"},
                {"kind": "ServiceAccount", "name": "x", "namespace": "other"},
            ],
        },
        opt,
    )
    assert rb["metadata"]["namespace"] == "shop-dr"
    assert [s["namespace"] for s in rb["subjects"]] == ["shop-dr", "other"]
    pv = map_namespace(
        {
            "kind": "PersistentVolume",
            "metadata": {"name": "pv"},
            "spec": {"claimRef": {"namespace": "shop", "name": "c"}},
        },
        opt,
    )
    assert pv["spec"]["claimRef"]["namespace"] == "shop-dr"


def test_service_drops_cluster_ip_keeps_node_port_unless_asked():
    svc = {
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {
            "clusterIP": "10.96.0.7",
            "clusterIPs": ["10.96.0.7"],
            "type": "NodePort",
            "healthCheckNodePort": 31000,
            "ports": [{"port": 80, "nodePort": 30080}],
        },
    }
    kept = service(dict(svc, spec=dict(svc["spec"], ports=[dict(svc["spec"]["ports"][0])])), RestoreOptions())
    assert "clusterIP" not in kept["spec"] and kept["spec"]["ports"][0]["nodePort"] == 30080
    reset = service(svc, RestoreOptions(preserve_node_ports=False))
    assert "nodePort" not in reset["spec"]["ports"][0] and "healthCheckNodePort" not in reset["spec"]
    headless = service(
        {"kind": "Service", "metadata": {}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}, RestoreOptions()
    )
    assert headless["spec"]["clusterIP"] == "None"


def test_pvc_is_unbound_and_mapped_to_new_class():
    c = pvc(
        {
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "c",
                "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "volume.kubernetes.io/selected-node": "n1",
                    "team": "a",
                },
            },
            "spec": {"volumeName": "pvc-123", "storageClassName": "fast"},
        },
        RestoreOptions(storage_class_mapping={"fast": "slow"}),
    )
    assert c["spec"] == {"storageClassName": "slow"}
    assert c["metadata"]["annotations"] == {"team": "a"}


def test_job_loses_controller_uid():
    j = job(
        {
            "kind": "Job",
            "metadata": {"name": "j", "labels": {"controller-uid": "u", "app": "x"}},
            "spec": {
                "selector": {"matchLabels": {"controller-uid": "u"}},
                "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u", "app": "x"}}},
            },
        },
        RestoreOptions(),
    )
    assert "selector" not in j["spec"]
    assert j["spec"]["template"]["metadata"]["labels"] == {"app": "x"}
    assert j["metadata"]["labels"] == {"app": "x"}


def test_node_constraints_only_when_asked():
    kept = node_constraints(deployment(), RestoreOptions())["spec"]["template"]["spec"]
    assert "nodeSelector" in kept and "affinity" in kept and "tolerations" in kept
    gone = node_constraints(deployment(), RestoreOptions(remove_node_constraints=True, remove_tolerations=True))
    ps = gone["spec"]["template"]["spec"]
    assert not {"nodeName", "nodeSelector", "affinity", "tolerations"} & set(ps)
    pod = node_constraints({"kind": "Pod", "metadata": {}, "spec": {"nodeName": "n1"}}, RestoreOptions())
    assert "nodeName" not in pod["spec"]


@pytest.mark.parametrize(
    "image,expected",
    [
        ("registry.old.io:5000/team/web:1.2", "mirror.new.io/team/web:1.2"),
        ("docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"),
        ("nginx:1.27", "nginx:1.27"),
        ("library/nginx", "library/nginx"),
        ("localhost/app@sha256:abc", "mirror.local:5000/app@sha256:abc"),
    ],
)
def test_image_registry_rewrite_replaces_host_only(image, expected):
    mapping = {"registry.old.io:5000": "mirror.new.io", "localhost": "mirror.local:5000"}
    assert rewrite_image(image, mapping) == expected


def test_full_transform_for_an_older_cluster():
    opt = RestoreOptions(
        image_registry_mapping={"registry.old.io:5000": "mirror.new.io"},
        target_minor=20,
        labels={"ys1000.io/restore": "r1"},
    )
    o = transform(deployment(), opt)
    ps = o["spec"]["template"]["spec"]
    assert [v["name"] for v in ps["volumes"]] == ["data"]
    assert [m["name"] for m in ps["containers"][0]["volumeMounts"]] == ["data"]
    assert ps["containers"][0]["image"] == "mirror.new.io/team/web:1.2"
    assert o["metadata"]["labels"] == {"ys1000.io/restore": "r1"}
    svc = older_api_servers(
        {
            "kind": "Service",
            "metadata": {},
            "spec": {
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
                "ports": [],
            },
        },
        opt,
    )
    assert svc["spec"] == {"ports": []}
    newer = older_api_servers(
        {"kind": "Service", "metadata": {}, "spec": {"ipFamilies": ["IPv4"]}}, RestoreOptions(target_minor=30)
    )
    assert newer["spec"] == {"ipFamilies": ["IPv4"]}


def test_legacy_token_secret_is_refilled_by_target():
    s = token_secret(
        {
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": "t",
                "annotations": {"kubernetes.io/service-account.name": "sa", "kubernetes.io/service-account.uid": "old"},
            },
            "data": {"token": "x"},
        },
        RestoreOptions(),
    )
    assert "data" not in s and s["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "sa"}


def test_priorities_order_dependencies_first():
    order = sorted(
        [
            "deployments.apps",
            "widgets.example.com",
            "configmaps",
            "namespaces",
            "persistentvolumeclaims",
            "customresourcedefinitions.apiextensions.k8s.io",
            "leases.coordination.k8s.io",
            "serviceaccounts",
        ],
        key=lambda gr: rank(gr, gr == "widgets.example.com"),
    )
    assert order == [
        "customresourcedefinitions.apiextensions.k8s.io",
        "namespaces",
        "serviceaccounts",
        "configmaps",
        "persistentvolumeclaims",
        "deployments.apps",
        "leases.coordination.k8s.io",
        "widgets.example.com",
    ]
