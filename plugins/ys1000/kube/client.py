"""A thin JSON client over the kubernetes package's ApiClient.

The engine handles arbitrary kinds (built-in and custom) as plain dicts, so it talks REST paths
directly instead of the typed models: no per-object model (de)serialization on the hot path of a
backup or restore, and one code path for every kind. Authentication, TLS and connection pooling
stay the kubernetes client's.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
import builtins
from typing import Any, Iterator

from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.util.retry import Retry

Obj = dict[str, Any]

# Errors worth retrying: throttling, server-side trouble, timeouts.
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
# A 429 (API Priority and Fairness rejected the request before running it) is always safe to
# send again, whatever the verb: every call retries it here, with jittered exponential backoff
# capped by the server's Retry-After, for up to THROTTLE_BUDGET seconds. Other transient errors
# are left to the caller, who knows whether a repeat is safe (a POST may have been applied).
THROTTLE_BUDGET = 120.0
THROTTLE_FIRST_WAIT = 0.05


class _NoThrottleRetry(Retry):
    RETRY_AFTER_STATUS_CODES = frozenset({503})


class _Throttled(Exception):
    def __init__(self, error: "KubeError", retry_after: float | None):
        self.error, self.retry_after = error, retry_after


def _retry_after(exc: ApiException) -> float | None:
    try:
        return float((exc.headers or {}).get("Retry-After") or "")
    except ValueError:
        return None


class KubeError(Exception):
    """An API call failed; ``status`` and ``reason`` are the API's, ``message`` its explanation."""

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = ""):
        self.status, self.reason, self.message = status, reason, message
        self.method, self.path = method, path
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())

    def __reduce__(self):  # pickled whole: a backup's listing raises it in a forked child
        return type(self), (self.status, self.reason, self.message, self.method, self.path)

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS or self.status == 0

    @classmethod
    def from_api_exception(cls, exc: ApiException, method: str, path: str) -> "KubeError":
        reason, message = exc.reason or "", ""
        text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        try:
            body = json.loads(text or "{}")
            reason = body.get("reason") or reason
            message = body.get("message") or ""
        except (ValueError, TypeError, AttributeError):
            message = text[:300] if isinstance(text, str) else ""
        return cls(exc.status or 0, reason, message, method, path)


@dataclass(frozen=True)
class ResourceType:
    """One listable API resource, as discovery describes it."""

    group: str
    version: str
    resource: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """Velero's naming: ``deployments.apps``, ``configmaps`` for the core group."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.resource}"
        return f"{base}/{name}" if name else base


class Kube:
    """JSON-over-REST access to one cluster; thread-safe (the ApiClient pools connections)."""

    def __init__(self, api_client: client.ApiClient, name: str = "", throttle_budget: float = THROTTLE_BUDGET):
        self.api = api_client
        self.name = name
        self.throttle_budget = throttle_budget
        self.retries = 0  # requests sent again after a 429 (or by a caller, see count_retry)
        self._configure_pool()
        self._lock = threading.Lock()
        self._version: Obj | None = None

    def _configure_pool(self) -> None:
        # enough pooled connections for the engine's worker threads
        pool_kw = self.api.rest_client.pool_manager.connection_pool_kw
        pool_kw["maxsize"] = 32
        # urllib3 would resend a throttled GET itself (429 + Retry-After), unseen and uncounted:
        # the throttling retries are ours (below); urllib3 keeps retrying failed connections and
        # a 503 that says Retry-After
        pool_kw["retries"] = _NoThrottleRetry(3)

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None, name: str = "") -> "Kube":
        return cls(config.new_client_from_config(config_file=path, context=context), name or (context or ""))

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 60,
    ) -> Obj:
        data = self._raw(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        return json.loads(data) if data else {}

    def pod_log(self, namespace: str, pod: str, container: str | None = None, tail_lines: int | None = None) -> str:
        """A container's log as text (what ``kubectl logs`` shows), through the API server."""
        query: dict[str, Any] = {}
        if container:
            query["container"] = container
        if tail_lines is not None:
            query["tailLines"] = tail_lines
        return self._raw("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query=query, accept="*/*").decode(
            errors="replace"
        )

    def _raw(
        self,
        method: str,
        path: str,
        *,
        query: dict | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 60,
        accept: str = "application/json",
    ) -> bytes:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        deadline = time.monotonic() + self.throttle_budget
        attempt = 0
        while True:
            try:
                return self._send(method, path, query, headers, body, timeout)
            except _Throttled as exc:
                wait = min(THROTTLE_FIRST_WAIT * 2**attempt, exc.retry_after or 5.0) * random.uniform(0.5, 1.0)
                if time.monotonic() + wait > deadline:
                    raise exc.error from None
                attempt += 1
                self.count_retry()
                time.sleep(wait)

    def count_retry(self, n: int = 1) -> None:
        """Count requests sent again (the restore and backup reports show the total)."""
        with self._lock:
            self.retries += n

    def after_fork(self) -> None:
        """In a forked child: its own connection pool and lock. The inherited pool's connections
        are the parent's, mid-use, and another thread of the parent may have held the pool's or
        this lock at the fork: both are replaced, never touched (closing the old pool could wait
        forever on such a lock)."""
        self.api.rest_client = rest.RESTClientObject(self.api.configuration)
        self._configure_pool()
        self._lock = threading.Lock()

    def _send(self, method: str, path: str, query: dict | None, headers: dict, body: Any, timeout: float) -> bytes:
        try:
            resp = self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            error = KubeError.from_api_exception(exc, method, path)
            if error.status == 429:
                raise _Throttled(error, _retry_after(exc)) from None
            raise error from None
        except Exception as exc:  # connection refused, TLS, timeouts: worth a retry
            raise KubeError(0, "Unreachable", str(exc), method, path) from exc
        return resp[0].data if isinstance(resp, tuple) else resp.data

    def get(self, path: str, **query) -> Obj:
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def version(self) -> Obj:
        with self._lock:
            if self._version is None:
                self._version = self.get("/version")
            return self._version

    def minor_version(self) -> int:
        v = self.version()
        digits = "".join(ch for ch in str(v.get("minor", "0")) if ch.isdigit())
        return int(digits or 0)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[Obj]:
        """Every object of one type (in one namespace), page by page; items get kind/apiVersion."""
        query: dict[str, Any] = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = self.request("GET", rt.path(namespace), query=query)
            for item in page.get("items", []):
                item.setdefault("apiVersion", rt.api_version)
                item.setdefault("kind", rt.kind)
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 5,
    ) -> Iterator[Obj]:
        """Change events (``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}``) after
        ``resource_version``, until the server closes the watch after ``timeout_seconds``.

        One long request instead of polling: nothing is spent while nothing changes, and a change
        is seen as soon as the API server has it. The caller loops, resuming from the last object's
        resourceVersion; an ``ERROR`` event with code 410 means "list again".
        """
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("timeoutSeconds", timeout_seconds),
            ("allowWatchBookmarks", "true"),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        try:
            resp = self.api.call_api(
                rt.path(namespace),
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
            )
        except ApiException as exc:
            raise KubeError.from_api_exception(exc, "WATCH", rt.path(namespace)) from None
        except Exception as exc:
            raise KubeError(0, "Unreachable", str(exc), "WATCH", rt.path(namespace)) from exc
        resp = resp[0] if isinstance(resp, tuple) else resp
        try:
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        except Exception as exc:  # the connection dropped mid-stream: the caller lists again
            raise KubeError(0, "Unreachable", f"watch interrupted: {exc}", "WATCH", rt.path(namespace)) from exc
        finally:
            resp.release_conn()

    def list_version(
        self, rt: ResourceType, namespace: str | None = None, *, label_selector: str | None = None
    ) -> tuple[builtins.list[Obj], str]:
        """One unpaged list and its resourceVersion, the point a following ``watch`` starts from."""
        query: dict[str, Any] = {"labelSelector": label_selector} if label_selector else {}
        page = self.request("GET", rt.path(namespace), query=query or None)
        return page.get("items", []), (page.get("metadata") or {}).get("resourceVersion", "")

    def create(self, rt: ResourceType, obj: Obj, namespace: str | None = None, dry_run: bool = False) -> Obj:
        return self.request("POST", rt.path(namespace), body=obj, query={"dryRun": "All"} if dry_run else None)

    def replace(self, rt: ResourceType, obj: Obj, namespace: str | None = None) -> Obj:
        return self.request("PUT", rt.path(namespace, obj["metadata"]["name"]), body=obj)

    def patch(self, rt: ResourceType, name: str, patch: Obj, namespace: str | None = None, kind: str = "merge") -> Obj:
        ctype = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", rt.path(namespace, name), body=patch, content_type=ctype)

    def delete(
        self, rt: ResourceType, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> Obj | None:
        try:
            return self.request(
                "DELETE",
                rt.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
