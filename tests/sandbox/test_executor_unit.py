"""The executor's path and variable mapping, without a cluster."""

from pathlib import Path

import pytest

from ys1000_dev.sandbox.executor import _expand, _field_value, is_executable, rewrite_paths

MOUNTS = [("/data", Path("/srv/pv-1")), ("/data/cache", Path("/srv/pv-2")), ("/etc/cfg", Path("/srv/cm"))]


def test_rewrites_whole_paths_only():
    assert rewrite_paths("echo hi > /data/f", MOUNTS) == "echo hi > /srv/pv-1/f"
    assert rewrite_paths("/data", MOUNTS) == "/srv/pv-1"
    assert rewrite_paths("cat /data/cache/x /etc/cfg", MOUNTS) == "cat /srv/pv-2/x /srv/cm"
    # not a mount: a longer name, a path that merely ends in /data, a relative path
    assert rewrite_paths("/database /mnt/data data/f", MOUNTS) == "/database /mnt/data data/f"
    assert rewrite_paths("--path=/data/sub", MOUNTS) == "--path=/srv/pv-1/sub"


def test_kubernetes_variable_expansion():
    env = {"A": "1", "DIR": "/data"}
    assert _expand("$(A)-$(B)-$$(A)", env) == "1-$(B)-$(A)"
    assert rewrite_paths(_expand("ls $(DIR)/x", env), MOUNTS) == "ls /srv/pv-1/x"


def test_downward_api_fields():
    pod = {"metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}}, "spec": {"nodeName": "node-1"}}
    assert _field_value(pod, "metadata.namespace") == "n"
    assert _field_value(pod, "spec.nodeName") == "node-1"
    assert _field_value(pod, "metadata.labels['app']") == "x"
    assert _field_value(pod, "metadata.labels") == 'app="x"'


@pytest.mark.parametrize(
    "labels, executed",
    [
        ({"ys1000.io/component": "mover", "ys1000.io/run": "r1"}, True),  # the product's own labels
        ({"ys1000.io/component": "hook", "ys1000.io/hook-kind": "custom"}, True),
        ({"ys1000.io/executable": "true"}, True),  # test-only pod templates
        ({"ys1000.io/component": "hook", "ys1000.io/executable": "true"}, True),
        ({"ys1000.io/component": "export"}, False),  # not a pod the product runs
        ({"ys1000.io/executable": "false"}, False),
        ({"app": "wordpress"}, False),
        (None, False),
    ],
)
def test_which_pods_run(labels, executed):
    """The product's mover and hook pods run by their component label (their manifests carry no
    sandbox label); test templates may still ask for it with ``ys1000.io/executable=true``."""
    assert is_executable({"metadata": {"name": "p", "labels": labels}}) is executed
