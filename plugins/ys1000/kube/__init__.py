"""Cluster access for the engine: a JSON REST client, discovery, paginated listing, apply."""

from ys1000.kube.client import Kube, KubeError, ResourceType
from ys1000.kube.discovery import Discovery

__all__ = ["Kube", "KubeError", "ResourceType", "Discovery"]
