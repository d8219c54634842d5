"""Helpers the engine's cluster tests share: an S3 repository per test, and comparing objects
across a round trip."""

from __future__ import annotations

import copy

from ys1000.repository import open_repository
from ys1000.restore.transforms import PVC_BINDING_ANNOTATIONS

KEY = "correct horse battery staple"


def repo_for(s3, bucket: str, prefix: str = "t"):
    cfg = s3.repository_config(bucket, prefix)
    return open_repository(cfg, KEY, create=True)


def normalize(obj: dict) -> dict:
    """The object minus what the API server sets or a restore must change."""
    o = copy.deepcopy(obj)
    md = o.get("metadata", {})
    for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences"):
        md.pop(k, None)
    for k in ("ys1000.io/backup", "ys1000.io/restore"):
        (md.get("labels") or {}).pop(k, None)
    ann = md.get("annotations") or {}
    for k in ("deployment.kubernetes.io/revision", *PVC_BINDING_ANNOTATIONS):
        ann.pop(k, None)
    if not ann:
        md.pop("annotations", None)
    if not md.get("labels"):
        md.pop("labels", None)
    o.pop("status", None)
    spec = o.get("spec") or {}
    if o.get("kind") == "Service" and spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    if o.get("kind") == "PersistentVolumeClaim":
        spec.pop("volumeName", None)
    if o.get("kind") == "Namespace":
        o.pop("spec", None)
    return o
