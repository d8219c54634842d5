"""The shipped WordPress example (include/hooks/wordpress/rewrite-url.yml) as a PostRestore hook:
rewrites siteurl/home in a real MariaDB and the Ingress host in the target cluster."""

from __future__ import annotations

import base64

from ys1000.config import Hook
from ys1000.hooks.custom import HookRunner
from ys1000.kube import Kube

OLD, NEW = "http://blog.example.com", "http://blog-new.example.com"


def _wordpress_db(db) -> str:
    import pymysql

    name = "wordpress_hooktest"
    with (
        pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(
            f"CREATE TABLE {name}.wp_options (option_id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "option_name VARCHAR(191) UNIQUE, option_value LONGTEXT, autoload VARCHAR(20))"
        )
        cur.executemany(
            f"INSERT INTO {name}.wp_options (option_name, option_value, autoload) VALUES (%s,%s,'yes')",
            [("siteurl", OLD), ("home", OLD + "/"), ("blogname", "My blog")],
        )
    return name


def _options(db, name: str) -> dict:
    import pymysql

    with (
        pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, database=name) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT option_name, option_value FROM wp_options")
        return dict(cur.fetchall())


def test_wordpress_rewrite_url_hook(target, make_namespace, mariadb):
    from kubernetes import client

    ns = make_namespace(target, "wp")
    dbname = _wordpress_db(mariadb)
    target.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "mysql-credentials"},
            "data": {
                "username": base64.b64encode(mariadb.user.encode()).decode(),
                "password": base64.b64encode(mariadb.password.encode()).decode(),
            },
        },
    )
    net = client.NetworkingV1Api(target.api())
    backend = {"service": {"name": "wordpress", "port": {"number": 80}}}
    net.create_namespaced_ingress(
        ns,
        {
            "metadata": {"name": "wordpress"},
            "spec": {
                "tls": [{"hosts": ["blog.example.com"], "secretName": "blog-tls"}],
                "rules": [
                    {
                        "host": "blog.example.com",
                        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                    },
                    {
                        "host": "www.blog.example.com",
                        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                    },
                ],
            },
        },
    )
    # the RBAC the README asks for
    target.core.create_namespaced_service_account(ns, {"metadata": {"name": "wordpress-hooks"}})
    rbac = client.RbacAuthorizationV1Api(target.api())
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "wordpress-hooks"},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mysql-credentials"], "verbs": ["get"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "patch"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "wordpress-hooks"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wordpress-hooks"},
            "subjects": [{"kind": "ServiceAccount", "name": "wordpress-hooks", "namespace": ns}],
        },
    )

    hook = Hook(
        name="wordpress-url",
        phase="PostRestore",
        type="ansible",
        namespace=ns,
        service_account="wordpress-hooks",
        playbook_file="wordpress/rewrite-url.yml",
        timeout="3m",
        env={
            "OLD_URL": OLD,
            "NEW_URL": NEW,
            "DB_HOST": mariadb.host,
            "DB_PORT": str(mariadb.port),
            "DB_NAME": dbname,
            "DB_SECRET": "mysql-credentials",
            "INGRESS": "wordpress",
        },
    )
    kube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    [result] = HookRunner({"target": kube}, "run-wp/post_restore_hooks").run_phase([hook], "PostRestore")
    assert result.ok, result.output
    assert mariadb.password not in result.output  # no_log on the Secret; credentials via environment
    opts = _options(mariadb, dbname)
    assert opts["siteurl"] == NEW and opts["home"] == NEW and opts["blogname"] == "My blog"
    ing = net.read_namespaced_ingress("wordpress", ns)
    assert [r.host for r in ing.spec.rules] == ["blog-new.example.com", "www.blog.example.com"]
    assert ing.spec.tls[0].hosts == ["blog-new.example.com"]
