"""Helpers shared by the DAG-structure tests of several test directories (``pythonpath = tests``)."""

from __future__ import annotations


def chain_order(dag) -> list[str]:
    """Task ids in a topological order, asserting it is the only one: each task follows the one
    before it (a chain, plus shortcuts such as preflight → the mapped volumes task it feeds)."""
    order: list[str] = []
    left = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    while left:
        ready = [t for t, up in left.items() if up <= set(order)]
        assert len(ready) == 1, f"not a chain at {order}: {ready} are all ready"
        order.append(ready[0])
        del left[ready[0]]
    return order
