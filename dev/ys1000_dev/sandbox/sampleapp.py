"""A sample application to protect: a WordPress + MySQL style namespace using most kinds.

Used by the demo and the integration tests. ``manifests(ns)`` returns the objects in creation
order; ``deploy(kube, ns)`` creates them (and the test CRD) in a cluster.
"""

from __future__ import annotations

import base64

from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import CRDS
from ys1000.waiting import wait_until

SECRET_VALUE = "s3cr3t-wordpress-db-password-7f1c"  # tests grep the bucket for it
DB_USER = "wordpress"
SITE_URL = "http://blog.example.com"
# the app's database content the WordPress hook rewrites and the backup plan's drill queries (the
# demo loads it into a real MariaDB)
WP_OPTIONS_SQL = (
    "CREATE DATABASE IF NOT EXISTS wordpress;\n"
    "CREATE TABLE IF NOT EXISTS wordpress.wp_options (option_id INT AUTO_INCREMENT PRIMARY KEY, "
    "option_name VARCHAR(191) UNIQUE, option_value LONGTEXT, autoload VARCHAR(20) DEFAULT 'yes');\n"
    f"INSERT IGNORE INTO wordpress.wp_options (option_name, option_value) VALUES "
    f"('siteurl', '{SITE_URL}'), ('home', '{SITE_URL}'), ('blogname', 'Demo blog');\n"
    "CREATE TABLE IF NOT EXISTS wordpress.wp_posts (ID INT PRIMARY KEY, post_title TEXT);\n"
    "INSERT IGNORE INTO wordpress.wp_posts VALUES (1, 'Hello world!'), (2, 'Sample Page');\n"
)

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "sites.demo.ys1000.io"},
    "spec": {
        "group": "demo.ys1000.io",
        "scope": "Namespaced",
        "names": {"plural": "sites", "singular": "site", "kind": "Site", "listKind": "SiteList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"url": {"type": "string"}, "replicas": {"type": "integer"}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def manifests(ns: str, storage_class: str = "ys1000-local") -> list[dict]:
    labels = {"app.kubernetes.io/part-of": "wordpress"}
    pod_spec_wp = {
        "serviceAccountName": "wordpress",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
                        },
                    }
                ]
            }
        },
        "containers": [
            {
                "name": "wordpress",
                "image": "registry.example.com/library/wordpress:6.6",
                "env": [
                    {"name": "WORDPRESS_DB_HOST", "value": "mysql"},
                    {
                        "name": "WORDPRESS_DB_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "mysql-pass", "key": "password"}},
                    },
                ],
                "ports": [{"containerPort": 80}],
                "volumeMounts": [
                    {"name": "content", "mountPath": "/var/www/html"},
                    {"name": "config", "mountPath": "/etc/wordpress"},
                ],
            }
        ],
        "volumes": [
            {"name": "content", "persistentVolumeClaim": {"claimName": "wp-content"}},
            {"name": "config", "configMap": {"name": "wp-config"}},
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "wordpress", "labels": labels}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "wp-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "wp-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wp-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "wordpress", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mysql-pass", "labels": labels},
            "type": "Opaque",
            "data": {"username": _b64(DB_USER), "password": _b64(SECRET_VALUE)},
        },
        # what the WordPress URL-rewrite hook (include/hooks/wordpress) runs as, migrated with the app
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "wordpress-hooks", "labels": labels}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "wordpress-hooks"},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mysql-pass"], "verbs": ["get"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "wordpress-hooks"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wordpress-hooks"},
            "subjects": [{"kind": "ServiceAccount", "name": "wordpress-hooks", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "wp-config", "labels": labels},
            "data": {"site-url": "http://blog.example.com", "wp-config.php": "<?php define('WP_DEBUG', false);"},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "wp-content", "labels": labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "mysql", "labels": labels},
            "spec": {"clusterIP": "None", "selector": {"app": "mysql"}, "ports": [{"port": 3306}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wordpress", "labels": labels},
            "spec": {"selector": {"app": "wordpress"}, "ports": [{"port": 80, "targetPort": 80}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "wordpress-nodeport", "labels": labels},
            "spec": {"type": "NodePort", "selector": {"app": "wordpress"}, "ports": [{"port": 80, "targetPort": 80}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "wordpress"},
            "spec": {
                "rules": [
                    {
                        "host": "blog.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "wordpress", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "mysql-from-wordpress"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "mysql"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "wordpress"}}}]}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "wordpress"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "wordpress"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "mysql", "labels": labels},
            "spec": {
                "serviceName": "mysql",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "mysql"}},
                "template": {
                    "metadata": {"labels": {"app": "mysql"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "mysql",
                                "image": "docker.io/library/mariadb:11",
                                "env": [
                                    {
                                        "name": "MARIADB_ROOT_PASSWORD",
                                        "valueFrom": {"secretKeyRef": {"name": "mysql-pass", "key": "password"}},
                                    }
                                ],
                                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": storage_class,
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "wordpress", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "wordpress"}},
                "template": {"metadata": {"labels": {"app": "wordpress"}}, "spec": pod_spec_wp},
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "wp-cron"},
            "spec": {
                "schedule": "*/30 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "OnFailure",
                                "containers": [
                                    {
                                        "name": "cron",
                                        "image": "registry.example.com/library/wordpress:6.6",
                                        "command": ["php", "wp-cron.php"],
                                    }
                                ],
                            }
                        }
                    }
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "wordpress"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "wordpress"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
        {
            "apiVersion": "demo.ys1000.io/v1",
            "kind": "Site",
            "metadata": {"name": "blog"},
            "spec": {"url": "http://blog.example.com", "replicas": 2},
        },
    ]


def ensure_crd(kube: Kube) -> None:
    if kube.get_or_none(CRDS.path(name=CRD["metadata"]["name"])) is None:
        kube.create(CRDS, CRD)

    def established():
        crd = kube.get(CRDS.path(name=CRD["metadata"]["name"]))
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )

    wait_until(established, timeout=30, what="the sample CRD to be Established")


def deploy(kube: Kube, ns: str, storage_class: str = "ys1000-local", wait: bool = True) -> list[dict]:
    """Create the namespace's objects (the namespace itself must exist); wait until pods run."""
    ensure_crd(kube)
    disc = Discovery.load(kube)
    created = []
    for obj in manifests(ns, storage_class):
        rt = disc.by_api_version(obj["apiVersion"], obj["kind"])
        created.append(kube.create(rt, obj, ns))
    if wait:
        pods = disc.by_kind("Pod")
        wait_until(
            lambda: len([p for p in kube.list(pods, ns) if p.get("status", {}).get("phase") == "Running"]) >= 3,
            timeout=90,
            what=f"the sample app's pods in {ns} to run",
        )
    return created
