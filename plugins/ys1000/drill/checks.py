"""The checks a restore drill runs on the restored application (a plan's ``drill.checks``).

- ``object``: a Kubernetes object is present in the scratch namespace (``kind``, ``name``;
  ``namespace`` is the source namespace, mapped to its scratch copy);
- ``hook``: a custom Job in the scratch namespace (``image``, ``command``, ``args``, ``env``),
  passing when it exits 0 — through the custom hook runner (``ys1000.hooks.custom``), so it has
  the same service-account mount, timeout and output capture as a plan's hooks;
- ``sql`` (MySQL/MariaDB/PostgreSQL: ``query`` returns at least ``min_rows`` rows) and ``http``
  (GET on a restored Service answers 2xx): a Job of the product's image in the scratch namespace
  runs ``ys1000.drill.probe``, reaching ``<service>.<scratch namespace>.svc`` like the
  application's clients (``host`` overrides it); credentials come from the restored Secret.

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


def run_check(
    kube: Kube, check: Check, mapping: dict[str, str], *, timeout: float, image: str | None = None
) -> dict[str, Any]:
    kind = _get(check, "type")
    name = _get(check, "name") or kind
    started = time.monotonic()
    source_ns = _get(check, "namespace") or next(iter(mapping), None)
    ns = mapping.get(source_ns, source_ns) if source_ns else None
    if kind == "object":
        ok, detail = _object_present(kube, ns, _get(check, "kind"), _get(check, "object"))
    elif kind == "hook":
        ok, detail = _hook(kube, check, name, ns, timeout)
    elif kind in ("sql", "http"):
        ok, detail = _probe(kube, check, name, ns, timeout, image)
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


def probe_args(check: Check, ns: str | None) -> list[str]:
    """The ``ys1000.drill.probe`` arguments of a sql/http check against scratch namespace ``ns``."""
    host = _get(check, "host") or f"{_get(check, 'service')}.{ns}.svc"
    if _get(check, "type") == "sql":
        engine = _get(check, "engine")
        port = _get(check, "port") or (5432 if engine == "postgresql" else 3306)
        args = ["sql", "--engine", engine, "--host", host, "--port", str(port), "--query", _get(check, "query")]
        args += ["--min-rows", str(_get(check, "min_rows", 1))]
        return args + (["--database", _get(check, "database")] if _get(check, "database") else [])
    port = _get(check, "port") or 80
    path = _get(check, "path") or "/"
    return ["http", "--url", f"http://{host}:{port}{path}", "--expect", str(_get(check, "expect_status") or "2xx")]


def _probe(kube: Kube, check: Check, name: str, ns: str | None, timeout: float, image: str | None) -> tuple[bool, str]:
    secret = _get(check, "secret")
    secret_env = []
    if secret is not None:
        sname = _get(secret, "name")
        secret_env = [
            {"name": "YS1000_DB_USER", "secret": sname, "key": _get(secret, "user_key", "username")},
            {"name": "YS1000_DB_PASSWORD", "secret": sname, "key": _get(secret, "password_key", "password")},
        ]
    from ys1000.volumes.movers import DEFAULT_IMAGE

    probe = {
        "image": image or DEFAULT_IMAGE,  # the mover image has the probe and the database drivers
        "command": ["python", "-m", "ys1000.drill.probe", "--retry-for", "60", *probe_args(check, ns)],
        "secret_env": secret_env,
        "timeout": _get(check, "timeout", 300),
    }
    return _hook(kube, probe, name, ns, timeout, probe_result=True)


def _hook(
    kube: Kube, check: Check, name: str, ns: str | None, timeout: float, probe_result: bool = False
) -> tuple[bool, str]:
    from ys1000.hooks.custom import HookRunner
    from ys1000.kube.jobs import last_line

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
        "secret_env": list(_get(check, "secret_env") or []),
        "service_account": _get(check, "service_account") or "default",
        "timeout": min(timeout, _seconds(_get(check, "timeout", 300))),
        "on_failure": "continue",
    }
    result = HookRunner({"target": kube}, f"drill-check/{ns}/{name}").run(hook)
    line = last_line(result.output, "result") if probe_result else None
    if line is not None:  # the probe says what it found
        return bool(line.get("ok")) and result.ok, str(line.get("detail"))
    tail = result.output.strip().splitlines()[-3:]
    detail = f"exit code {result.exit_code}" if result.ok else (result.error or "failed")
    return result.ok, detail + (f"; output: {' | '.join(tail)}" if tail else "")


def _seconds(value: Any) -> float:
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
