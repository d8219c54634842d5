"""Log collection (F31): one tar.gz for a support case (``ys1000 collect-logs``).

What goes in (each part listed in ``collected.json`` inside the archive and printed):

- ``airflow/tasks/``: task logs of ys1000 DAGs (``$AIRFLOW_HOME/logs/dag_id=ys1000_*``) changed
  within ``since``;
- ``airflow/services/``: scheduler, dag-processor, triggerer, api-server logs
  (``logs/scheduler``, ``logs/dag_processor``, ``logs/dag_processor_manager``, ``*.log`` in
  ``$AIRFLOW_HOME`` and ``logs/``) changed within ``since``;
- ``config/``: the product config, secrets redacted (values of keys that name a secret, and every
  known secret value);
- ``clusters/<name>/``: the mover/hook Jobs' pods (label ``ys1000.io/component``): status and
  container logs; the events of the protected namespaces (those the plans name, and those the
  ys1000 pods run in);
- ``errors.txt``: what could not be collected (an unreachable cluster does not stop the rest).

Every text is passed through a ``Redactor``: known secret values (repository keys, connection
passwords from ``AIRFLOW_CONN_*``/the metadata DB, ``AWS_SECRET_ACCESS_KEY``...) and
``password=...``-style assignments are replaced by ``***``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

import yaml

COMPONENT_LABEL = "ys1000.io/component"
MASK = "***"
MAX_FILE_BYTES = 20 * 1024 * 1024  # a single log larger than this keeps its tail

SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|"
    r"authorization|access[_-]?key|^key$)",
    re.I,
)
ASSIGNMENT = re.compile(
    r"(?P<k>\b[\w.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|authorization|access[_-]?key)"
    r"[\w.-]*[\"']?\s*[=:]\s*)(?P<q>[\"']?)(?P<v>(?:Bearer\s+)?[^\s\"',;}]+)",
    re.I,
)
URL_CREDENTIALS = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<v>[^@\s/]+)(?P<post>@)", re.I)
SENSITIVE_VAR = re.compile(r"(pass|secret|token|key|credential|private|auth)", re.I)


class Redactor:
    """Replaces known secret values and ``secret-ish-key = value`` assignments in text."""

    def __init__(self, values: Iterable[str] = ()):
        self.values = sorted({v for v in values if isinstance(v, str) and len(v) >= 4}, key=len, reverse=True)

    def add(self, *values: str | None) -> None:
        self.values = sorted(
            {*self.values, *(v for v in values if isinstance(v, str) and len(v) >= 4)}, key=len, reverse=True
        )

    def text(self, s: str) -> str:
        for v in self.values:
            if v in s:
                s = s.replace(v, MASK)
        s = ASSIGNMENT.sub(lambda m: m.group("k") + m.group("q") + MASK, s)
        s = URL_CREDENTIALS.sub(lambda m: m.group("pre") + MASK + m.group("post"), s)
        return s

    def data(self, obj: Any) -> Any:
        """Structured data (YAML/JSON): secret-named keys' scalar values masked, then the text rules."""
        if isinstance(obj, dict):
            return {
                k: (
                    MASK
                    if isinstance(k, str)
                    and SECRET_KEY.search(k)
                    and not isinstance(v, (dict, list))
                    and v not in (None, "")
                    else self.data(v)
                )
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [self.data(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj


def secrets_from_env(env: dict[str, str] | None = None) -> list[str]:
    """Secret values the environment defines: connection passwords/extras, sensitive Variables,
    repository keys, cloud credentials."""
    env = dict(os.environ if env is None else env)
    out: list[str] = []
    for name, value in env.items():
        if name.startswith("AIRFLOW_CONN_"):
            out += _connection_secrets(value)
        elif name.startswith("AIRFLOW_VAR_") and SENSITIVE_VAR.search(name[len("AIRFLOW_VAR_") :]):
            out.append(value)
        elif name in (
            "YS1000_REPO_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "RESTIC_PASSWORD",
            "PGPASSWORD",
            "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "AIRFLOW__WEBSERVER__SECRET_KEY",
        ):
            out.append(value)
        elif SENSITIVE_VAR.search(name) and re.search(r"(PASSWORD|SECRET|TOKEN)", name):
            out.append(value)
    return out


def _connection_secrets(value: str) -> list[str]:
    out: list[str] = []
    try:
        data = json.loads(value)
    except ValueError:
        parts = urlsplit(value)
        if parts.password:
            out.append(unquote(parts.password))
        return out
    if isinstance(data, dict):
        if data.get("password"):
            out.append(str(data["password"]))
        extra = data.get("extra")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = {}
        if isinstance(extra, dict):
            out += [str(v) for k, v in extra.items() if SECRET_KEY.search(k) and isinstance(v, (str, int))]
    return out


def secrets_from_airflow_db() -> list[str]:
    """Passwords/sensitive extras of DB-stored connections and sensitive Variables (best effort:
    needs the metadata DB; returns [] without it)."""
    try:
        from airflow.models import Connection, Variable
        from airflow.utils.session import create_session
    except Exception:
        return []
    out: list[str] = []
    try:
        with create_session() as session:
            for c in session.query(Connection).all():
                if c.password:
                    out.append(c.password)
                for k, v in (c.extra_dejson or {}).items():
                    if SECRET_KEY.search(k) and isinstance(v, str):
                        out.append(v)
            for v in session.query(Variable).all():
                if SENSITIVE_VAR.search(v.key or ""):
                    out.append(v.val)
    except Exception:
        return out
    return out


# -- the archive ---------------------------------------------------------------------------------


@dataclass
class Collected:
    parts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, category: str, name: str, size: int, source: str = "") -> None:
        self.parts.append({"category": category, "name": name, "bytes": size, "source": source})

    def summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for p in self.parts:
            s = out.setdefault(p["category"], {"files": 0, "bytes": 0})
            s["files"] += 1
            s["bytes"] += p["bytes"]
        return out


class _Writer:
    def __init__(self, tar: tarfile.TarFile, redactor: Redactor, collected: Collected):
        self.tar, self.redactor, self.collected = tar, redactor, collected

    def put(self, category: str, name: str, text: str, source: str = "") -> None:
        data = self.redactor.text(text).encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.collected.add(category, name, len(data), source)

    def put_file(self, category: str, name: str, path: Path) -> None:
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                if size > MAX_FILE_BYTES:
                    f.seek(size - MAX_FILE_BYTES)
                raw = f.read()
        except OSError as exc:
            self.collected.errors.append(f"{path}: {exc}")
            return
        self.put(category, name, raw.decode(errors="replace"), str(path))


def _recent(path: Path, cutoff: float) -> bool:
    try:
        return path.is_file() and path.stat().st_mtime >= cutoff
    except OSError:
        return False


def collect_airflow_logs(w: _Writer, airflow_home: Path, logs_dir: Path | None, cutoff: float) -> None:
    logs = logs_dir or airflow_home / "logs"
    if not logs.is_dir():
        w.collected.errors.append(f"no Airflow log folder at {logs}")
    else:
        for d in sorted(logs.glob("dag_id=ys1000_*")):
            for f in sorted(d.rglob("*")):
                if _recent(f, cutoff):
                    w.put_file("airflow task logs", f"airflow/tasks/{f.relative_to(logs)}", f)
        for sub in ("scheduler", "dag_processor", "dag_processor_manager", "triggerer", "api_server"):
            base = logs / sub
            if base.is_dir():
                for f in sorted(base.rglob("*")):
                    if _recent(f, cutoff):
                        w.put_file("airflow service logs", f"airflow/services/{f.relative_to(logs)}", f)
        for f in sorted(logs.glob("*.log")):
            if _recent(f, cutoff):
                w.put_file("airflow service logs", f"airflow/services/{f.name}", f)
    for f in (
        sorted(airflow_home.glob("airflow-*.log"))
        + sorted(airflow_home.glob("*.out"))
        + sorted(airflow_home.glob("*.err"))
    ):
        if _recent(f, cutoff):
            w.put_file("airflow service logs", f"airflow/services/{f.name}", f)


def collect_config(w: _Writer, config_dir: Path) -> None:
    if not config_dir.is_dir():
        w.collected.errors.append(f"config directory {config_dir} does not exist")
        return
    for f in sorted(config_dir.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts:
            continue
        rel = f.relative_to(config_dir)
        try:
            text = f.read_text(errors="replace")
        except OSError as exc:
            w.collected.errors.append(f"{f}: {exc}")
            continue
        if f.suffix in (".yaml", ".yml", ".json"):
            try:
                docs = [d for d in yaml.safe_load_all(text)]
                text = (
                    "# redacted copy (comments dropped) of "
                    + str(rel)
                    + "\n"
                    + yaml.safe_dump_all([w.redactor.data(d) for d in docs], sort_keys=False, allow_unicode=True)
                )
            except yaml.YAMLError:
                pass  # keep the text; line rules still apply
        w.put("config (redacted)", f"config/{rel}", text, str(f))


def protected_namespaces(config: Any, cluster: str) -> tuple[set[str], list[str], list[str]]:
    """(names, globs, label selectors) of the namespaces the plans protect on ``cluster``."""
    names: set[str] = set()
    globs: list[str] = []
    selectors: list[str] = []
    if config is None:
        return names, globs, selectors
    from ys1000.config import BackupPlan, MigrationPlan, RestorePlan

    for plan in config.plans.values():
        sel = None
        if isinstance(plan, BackupPlan) and plan.cluster == cluster:
            sel = plan.namespaces
        elif isinstance(plan, MigrationPlan) and cluster in (plan.source_cluster, plan.target_cluster):
            sel = getattr(plan, "namespaces", None)
        elif isinstance(plan, RestorePlan) and plan.target_cluster == cluster:
            names.update((getattr(plan, "namespace_mapping", None) or {}).values())
        if sel is not None:
            names.update(sel.names)
            globs += list(sel.globs)
            if sel.selector:
                selectors.append(sel.selector)
    return names, globs, selectors


def collect_cluster(w: _Writer, name: str, kube: Any, *, config: Any, since: dt.timedelta) -> None:
    from ys1000.kube import KubeError

    base = f"clusters/{name}"
    now = dt.datetime.now(dt.timezone.utc)
    cutoff = now - since
    try:
        pods = kube.get("/api/v1/pods", labelSelector=COMPONENT_LABEL).get("items", [])
    except KubeError as exc:
        w.collected.errors.append(f"cluster {name}: cannot list ys1000 pods: {exc}")
        return
    pod_namespaces: set[str] = set()
    for pod in pods:
        md = pod.get("metadata", {})
        ns, pname = md.get("namespace"), md.get("name")
        pod_namespaces.add(ns)
        started = md.get("creationTimestamp")
        status = pod.get("status", {})
        info = {
            "name": pname,
            "namespace": ns,
            "labels": md.get("labels"),
            "created": started,
            "phase": status.get("phase"),
            "node": pod.get("spec", {}).get("nodeName"),
            "conditions": status.get("conditions"),
            "containerStatuses": status.get("containerStatuses"),
            "ownerReferences": md.get("ownerReferences"),
        }
        w.put(
            f"cluster {name}: ys1000 pods",
            f"{base}/pods/{ns}/{pname}/pod.json",
            json.dumps(info, indent=2, default=str),
        )
        for c in pod.get("spec", {}).get("containers", []):
            try:
                text = kube.pod_log(ns, pname, c["name"])
            except KubeError as exc:
                text = f"(log not available: {exc})\n"
            w.put(f"cluster {name}: ys1000 pod logs", f"{base}/pods/{ns}/{pname}/{c['name']}.log", text)
    names, globs, selectors = protected_namespaces(config, name)
    try:
        if globs:
            for ns in kube.get("/api/v1/namespaces").get("items", []):
                n = ns["metadata"]["name"]
                if any(fnmatch.fnmatchcase(n, g) for g in globs):
                    names.add(n)
        for sel in selectors:
            for ns in kube.get("/api/v1/namespaces", labelSelector=sel).get("items", []):
                names.add(ns["metadata"]["name"])
    except KubeError as exc:
        w.collected.errors.append(f"cluster {name}: cannot list namespaces: {exc}")
    for ns in sorted(names | pod_namespaces):
        try:
            events = kube.get(f"/api/v1/namespaces/{ns}/events").get("items", [])
        except KubeError as exc:
            if exc.status != 404:
                w.collected.errors.append(f"cluster {name}: events of {ns}: {exc}")
            continue
        rows = []
        for e in events:
            when = e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
            try:
                if when and dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")) < cutoff:
                    continue
            except ValueError:
                pass
            obj = e.get("involvedObject") or {}
            rows.append(
                f"{when}\t{e.get('type')}\t{e.get('reason')}\t{obj.get('kind')}/{obj.get('name')}\t"
                f"x{e.get('count') or 1}\t{e.get('message', '')}"
            )
        w.put(
            f"cluster {name}: namespace events",
            f"{base}/events/{ns}.tsv",
            "time\ttype\treason\tobject\tcount\tmessage\n" + "\n".join(sorted(rows)) + "\n",
        )


def collect(
    output: Path,
    *,
    airflow_home: Path | None,
    config_dir: Path | None,
    clusters: dict[str, Any] | None = None,
    cluster_errors: dict[str, str] | None = None,
    since: dt.timedelta = dt.timedelta(hours=24),
    logs_dir: Path | None = None,
    config: Any = None,
    extra_secrets: Iterable[str] = (),
    use_airflow_db: bool = True,
) -> Collected:
    """Write the archive to ``output``; returns what went in."""
    redactor = Redactor([*secrets_from_env(), *extra_secrets])
    if use_airflow_db:
        redactor.add(*secrets_from_airflow_db())
    collected = Collected()
    cutoff = time.time() - since.total_seconds()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        w = _Writer(tar, redactor, collected)
        if airflow_home:
            collect_airflow_logs(w, Path(airflow_home), Path(logs_dir) if logs_dir else None, cutoff)
        if config_dir:
            collect_config(w, Path(config_dir))
        for name, kube in sorted((clusters or {}).items()):
            collect_cluster(w, name, kube, config=config, since=since)
        for name, err in sorted((cluster_errors or {}).items()):
            collected.errors.append(f"cluster {name}: {err}")
        meta = {
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "since": since.total_seconds(),
            "airflow_home": str(airflow_home) if airflow_home else None,
            "config_dir": str(config_dir) if config_dir else None,
            "clusters": sorted((clusters or {}).keys()),
            "parts": collected.parts,
            "errors": collected.errors,
        }
        if collected.errors:
            w.put("errors", "errors.txt", "\n".join(collected.errors) + "\n")
        data = redactor.text(json.dumps(meta, indent=2)).encode()
        info = tarfile.TarInfo("collected.json")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(data))
    tmp.replace(output)
    return collected
