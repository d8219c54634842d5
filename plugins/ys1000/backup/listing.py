"""How a backup lists the objects of its namespaces: per namespace, or once cluster-wide.

A selection of a few namespaces is listed namespace by namespace. From ``CLUSTER_WIDE_MIN``
selected namespaces on, when they are at least half of the cluster's, each type is listed once
cluster-wide (paginated) and the objects of other namespaces dropped: 1,000 namespaces × 30 types
would otherwise be 30,000 LISTs, mostly of a page with a few objects. Where the cluster-wide LIST
is forbidden (a backup identity bound namespace by namespace), it falls back to per namespace.
The preflight (pods, PVCs) and the capture (every type) list the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import NAMESPACES

PAGE_SIZE = 500
CLUSTER_WIDE_MIN = 8


def cluster_wide(kube: Kube, namespaces: list[str]) -> frozenset[str] | None:
    """The selected namespaces when listing cluster-wide is cheaper than listing each, else None."""
    if len(namespaces) < CLUSTER_WIDE_MIN:
        return None
    total = sum(1 for _ in kube.list(NAMESPACES, page_size=PAGE_SIZE))
    return frozenset(namespaces) if 2 * len(namespaces) >= total else None


def scopes(wide: frozenset[str] | None, namespaces: list[str]) -> list[str | None]:
    """What to list each type in: ``[None]`` (cluster-wide) or the namespaces one by one."""
    return [None] if wide is not None else list(namespaces)


def objects_in(
    kube: Kube,
    rt: ResourceType,
    ns: str | None,
    label_selector: str | None = None,
    only: AbstractSet[str] = frozenset(),
) -> Iterator[dict]:
    """One type's objects in namespace ``ns``, or (``ns`` None) cluster-wide keeping those of the
    namespaces ``only``; where the cluster-wide LIST is forbidden, namespace by namespace."""
    if ns is not None:
        yield from kube.list(rt, ns, label_selector=label_selector, page_size=PAGE_SIZE)
        return
    try:
        for obj in kube.list(rt, label_selector=label_selector, page_size=PAGE_SIZE):
            if obj["metadata"].get("namespace") in only:
                yield obj
        return
    except KubeError as exc:
        if exc.status != 403:
            raise
    for one in sorted(only):  # forbidden before the first page: nothing was yielded yet
        yield from kube.list(rt, one, label_selector=label_selector, page_size=PAGE_SIZE)
