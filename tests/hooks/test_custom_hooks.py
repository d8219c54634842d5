"""Custom hooks as Jobs through the sandbox: an Ansible PostRestore hook that talks to the target's
API server with its ServiceAccount token, and image hooks' failure policies."""

from __future__ import annotations

import textwrap

import pytest

from ys1000.config import Hook
from ys1000.hooks.custom import HookFailed, HookRunner, job_manifests
from ys1000.hooks.jobs import CONFIGMAPS, JOBS
from ys1000.kube import Kube

EDIT_CONFIGMAP = textwrap.dedent("""
    - hosts: localhost
      gather_facts: false
      vars:
        sa_dir: "{{ lookup('env', 'YS1000_SERVICEACCOUNT_DIR') | default('/var/run/secrets/kubernetes.io/serviceaccount', true) }}"
        api: "https://{{ lookup('env', 'KUBERNETES_SERVICE_HOST') }}:{{ lookup('env', 'KUBERNETES_SERVICE_PORT') }}"
        namespace: "{{ lookup('file', sa_dir + '/namespace') }}"
      tasks:
        - name: mark the restored app's settings
          ansible.builtin.uri:
            url: "{{ api }}/api/v1/namespaces/{{ namespace }}/configmaps/app-settings"
            method: PATCH
            headers:
              Authorization: "Bearer {{ lookup('file', sa_dir + '/token') }}"
              Content-Type: application/merge-patch+json
            body_format: json
            body: {data: {restored_by: "{{ lookup('env', 'YS1000_HOOK_NAME') }}", site: "{{ lookup('env', 'SITE') }}"}}
            ca_path: "{{ sa_dir }}/ca.crt"
          register: patched
        - ansible.builtin.debug:
            msg: "patched {{ patched.json.metadata.name }} to {{ patched.json.data.site }}"
""")


def grant_configmaps(cluster, ns: str, sa: str) -> None:
    """What the hook's service account needs (the user sets this up in a real cluster)."""
    from kubernetes import client

    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    rbac = client.RbacAuthorizationV1Api(cluster.api())
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "hook-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "hook-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hook-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
    )


def leftovers(kube: Kube, ns: str) -> list[str]:
    sel = "ys1000.io/component=hook"
    return [o["metadata"]["name"] for rt in (JOBS, CONFIGMAPS) for o in kube.list(rt, ns, label_selector=sel)]


def test_ansible_post_restore_hook_edits_configmap_in_target(target, make_namespace):
    ns = make_namespace(target, "hk")
    target.core.create_namespaced_config_map(ns, {"metadata": {"name": "app-settings"}, "data": {"site": "old"}})
    grant_configmaps(target, ns, "hook-runner")
    hook = Hook(
        name="mark-restored",
        phase="PostRestore",
        type="ansible",
        namespace=ns,
        service_account="hook-runner",
        playbook=EDIT_CONFIGMAP,
        env={"SITE": "https://new.example"},
        timeout="2m",
    )
    assert hook.cluster == "target"
    kube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    lines: list[str] = []
    runner = HookRunner({"target": kube}, "run-a/post_restore_hooks", log_fn=lines.append)
    [result] = runner.run_phase([hook], "PostRestore")
    assert result.ok, result.output
    assert "patched app-settings to https://new.example" in result.output  # the hook's output is returned
    data = target.core.read_namespaced_config_map("app-settings", ns).data
    assert data == {"site": "https://new.example", "restored_by": "mark-restored"}
    assert leftovers(kube, ns) == []


def test_ansible_hook_without_rbac_fails_with_its_output(target, make_namespace):
    ns = make_namespace(target, "hk")
    target.core.create_namespaced_config_map(ns, {"metadata": {"name": "app-settings"}, "data": {"site": "old"}})
    hook = Hook(
        name="no-rbac", phase="PostRestore", type="ansible", namespace=ns, playbook=EDIT_CONFIGMAP, timeout="2m"
    )
    kube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    with pytest.raises(HookFailed) as err:
        HookRunner({"target": kube}, "run-b/post_restore_hooks").run(hook)
    assert "403" in err.value.result.output and "forbidden" in err.value.result.output.lower()
    assert target.core.read_namespaced_config_map("app-settings", ns).data == {"site": "old"}
    assert leftovers(kube, ns) == []


def _image_hook(ns: str, policy: str, code: int, name: str) -> Hook:
    return Hook(
        name=name,
        phase="PreBackup",
        type="image",
        namespace=ns,
        image="busybox:1.36",
        command=["python", "-c"],
        args=[f"import os, sys; print('hook says', os.environ['GREETING']); sys.exit({code})"],
        env={"GREETING": "hello"},
        on_failure=policy,
        timeout="1m",
    )


def test_image_hook_failure_policies(source, namespace):
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    runner = HookRunner({"source": kube}, "run-c/pre_backup_hooks")
    ok = runner.run(_image_hook(namespace, "fail", 0, "ok-hook"))
    assert ok.ok and ok.exit_code == 0 and "hook says hello" in ok.output
    with pytest.raises(HookFailed, match="exit code 3") as err:
        runner.run(_image_hook(namespace, "fail", 3, "failing-hook"))
    assert err.value.result.exit_code == 3 and "hook says hello" in err.value.result.output
    cont = runner.run(_image_hook(namespace, "continue", 4, "tolerated-hook"))
    assert cont.ok is False and cont.exit_code == 4 and "exit code 4" in cont.error
    # a failing 'fail' hook stops the phase: later hooks do not run
    hooks = [_image_hook(namespace, "fail", 5, "first"), _image_hook(namespace, "fail", 0, "second")]
    seen: list[str] = []
    with pytest.raises(HookFailed):
        HookRunner({"source": kube}, "run-d/pre_backup_hooks", log_fn=seen.append).run_phase(hooks, "PreBackup")
    assert not any("hook second" in s for s in seen)
    assert leftovers(kube, namespace) == []


def test_hook_timeout(source, namespace):
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    hook = Hook(
        name="slow",
        phase="PreBackup",
        type="image",
        namespace=namespace,
        image="busybox:1.36",
        command=["python", "-c", "import time; print('started', flush=True); time.sleep(60)"],
        timeout="2s",
        on_failure="continue",
    )
    result = HookRunner({"source": kube}, "run-e/pre_backup_hooks").run(hook)
    assert result.ok is False and "timed out" in result.error and result.seconds < 40
    assert leftovers(kube, namespace) == []


def test_manifest_shape(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "site.yml").write_text("- hosts: localhost\n  tasks: []\n")
    (tmp_path / "app" / "vars.yml").write_text("x: 1\n")
    hook = Hook(
        name="h",
        phase="PreRestore",
        type="ansible",
        namespace="shop",
        service_account="ops",
        playbook_file="app/site.yml",
        timeout="5m",
    )
    job, cm = job_manifests(hook, "run/x", tmp_path)
    assert set(cm["data"]) == {"playbook.yml", "vars.yml"}
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops" and job["spec"]["activeDeadlineSeconds"] == 300
    c = pod["containers"][0]
    assert c["command"][:5] == ["ansible-playbook", "-i", "localhost,", "-c", "local"]
    assert c["args"] == ["/hooks/playbook.yml"] and c["image"] == "ys1000/ansible-runner:0.1.0"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert (
        "ys1000.io/executable" not in labels and labels["ys1000.io/component"] == "hook"
    )  # no sandbox label in production
    bad = Hook(name="b", phase="PreRestore", type="ansible", namespace="shop", playbook_file="app/none.yml")
    with pytest.raises(Exception, match="not a file"):
        job_manifests(bad, "run/x", tmp_path)
