"""The checks a restore drill runs on the restored application (a plan's ``drill.checks``).

- ``object``: a Kubernetes object is present in the scratch namespace (``kind``, ``name``;
  ``namespace`` is the source namespace, mapped to its scratch copy);
- ``hook``: a custom Job in the scratch namespace (``image``, ``command``, ``args``, ``env``),
  passing when it exits 0 — through the custom hook runner (``ys1000.hooks.custom``), so it has
  the same service-account mount, timeout and output capture as a plan's hooks.

Each result is ``{"name", "type", "ok", "detail", "seconds"}``; a check never raises for a
failing application, only for a broken drill (e.g. the API server unreachable).
"""

from __future__ import annotations

import time
from typing import Any

from ys1000.kube import Kube

Check = Any  # ys1000.config.plans.DrillCheck, or a dict with the same fields


def _get(check: Check, name: str, default: Any = None) -> Any:
    return check.get(name, default) if isinstance(check, dict) else getattr(check, name, default)


def run_check(kube: Kube, check: Check, mapping: dict[str, str], *, timeout: float) -> dict[str, Any]:
    kind = _get(check, "type")
    name = _get(check, "name") or kind
    started = time.monotonic()
    source_ns = _get(check, "namespace") or next(iter(mapping), None)
    ns = mapping.get(source_ns, source_ns) if source_ns else None
    if kind == "object":
        ok, detail = _object_present(kube, ns, _get(check, "kind"), _get(check, "object"))
    elif kind == "hook":
        ok, detail = _hook(kube, check, name, ns, timeout)
    else:
        raise ValueError(f"check {name}: unknown type {kind!r}")
    return {"name": name, "type": kind, "ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 2)}


def _object_present(kube: Kube, ns: str | None, kind: str, obj_name: str) -> tuple[bool, str]:
    from ys1000.kube import Discovery

    group = None
    if "." in kind:  # "Ingress.networking.k8s.io"
        kind, group = kind.split(".", 1)
    rt = Discovery.load(kube).by_kind(kind, group)
    if rt is None:
        return False, f"the cluster has no kind {kind!r}"
    where = f"{kind} {ns + '/' if rt.namespaced and ns else ''}{obj_name}"
    found = kube.get_or_none(rt.path(ns if rt.namespaced else None, obj_name))
    return (True, f"{where} is present") if found is not None else (False, f"{where} is missing")


def _hook(kube: Kube, check: Check, name: str, ns: str | None, timeout: float) -> tuple[bool, str]:
    from ys1000.hooks.custom import HookRunner

    hook = {
        "name": name,
        "phase": "PostRestore",
        "type": "image",
        "cluster": "target",
        "namespace": ns,
        "image": _get(check, "image"),
        "command": list(_get(check, "command") or []),
        "args": list(_get(check, "args") or []),
        "env": dict(_get(check, "env") or {}),
        "service_account": _get(check, "service_account") or "default",
        "timeout": min(timeout, _seconds(_get(check, "timeout", 300))),
        "on_failure": "continue",
    }
    result = HookRunner({"target": kube}, f"drill-check/{ns}/{name}").run(hook)
    tail = result.output.strip().splitlines()[-3:]
    detail = f"exit code {result.exit_code}" if result.ok else (result.error or "failed")
    return result.ok, detail + (f"; output: {' | '.join(tail)}" if tail else "")


def _seconds(value: Any) -> float:
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
