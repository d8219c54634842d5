"""A small list-watch controller loop, the Python shape of client-go's informer + workqueue.

The sandbox's node agent, provisioner and snapshot controller are level-triggered: a handler
looks at the latest state of one object and makes the world match it. Handlers may raise
``Retry`` to be called again shortly (e.g. a PVC whose snapshot is not ready yet); any other
exception is logged and retried with backoff, so one bad object never stops the loop.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Retry(Exception):
    """Raised by a handler to be called again for the same object after ``delay`` seconds."""

    def __init__(self, reason: str = "", delay: float = 0.5):
        super().__init__(reason)
        self.delay = delay


def obj_key(obj: Obj) -> str:
    md = obj.get("metadata", {})
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


class Informer:
    """List+watch one resource and feed the newest version of each object to ``handler``.

    ``list_fn`` is a kubernetes-client list function (typed or custom-object) with its fixed
    arguments bound; objects reach the handler as plain dicts (the API's JSON), with the event
    type ("ADDED", "MODIFIED", "DELETED" or "SYNC" for a periodic resync).
    """

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        handler: Callable[[str, Obj], None],
        stop: threading.Event,
        *,
        resync: float = 20.0,
    ):
        self.name = name
        self._list_fn = list_fn
        self._handler = handler
        self._stop = stop
        self._resync = resync
        self._latest: dict[str, tuple[str, Obj]] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}

    def start(self) -> None:
        threading.Thread(target=self._watch_loop, name=f"{self.name}-watch", daemon=True).start()
        threading.Thread(target=self._work_loop, name=f"{self.name}-work", daemon=True).start()

    # -- producer ---------------------------------------------------------------------------
    def _offer(self, event: str, obj: Obj) -> None:
        key = obj_key(obj)
        with self._lock:
            fresh = key not in self._latest
            self._latest[key] = (event, obj)
        if fresh:
            self._queue.put(key)

    def _list(self) -> str:
        resp = self._list_fn(_preload_content=False)
        body = json.loads(resp.data)
        for item in body.get("items", []):
            self._offer("SYNC", item)
        return body["metadata"]["resourceVersion"]

    def _watch_loop(self) -> None:
        rv = None
        last_list = 0.0
        while not self._stop.is_set():
            try:
                if rv is None or time.monotonic() - last_list > self._resync:
                    rv = self._list()
                    last_list = time.monotonic()
                w = watch.Watch()
                for ev in w.stream(self._list_fn, resource_version=rv, timeout_seconds=max(1, int(self._resync))):
                    if self._stop.is_set():
                        w.stop()
                        break
                    raw = ev["raw_object"]
                    if ev["type"] == "ERROR":
                        rv = None  # usually 410 Gone: start again from a fresh list
                        break
                    if ev["type"] == "BOOKMARK":
                        continue
                    rv = raw["metadata"]["resourceVersion"]
                    self._offer(ev["type"], raw)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("%s: watch failed: %s", self.name, exc.reason)
                    self._stop.wait(1)
                rv = None
            except Exception as exc:  # connection reset, API server restarting, ...
                if self._stop.is_set():
                    return
                log.warning("%s: watch error: %s", self.name, exc)
                self._stop.wait(1)
                rv = None

    # -- consumer ---------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                key = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                event, obj = self._latest.pop(key, (None, None))
            if obj is None:
                continue
            try:
                self._handler(event, obj)
                self._failures.pop(key, None)
            except Retry as r:
                self._requeue(key, event, obj, r.delay)
            except Exception:
                n = self._failures[key] = self._failures.get(key, 0) + 1
                log.exception("%s: handler failed for %s (attempt %d)", self.name, key, n)
                self._requeue(key, event, obj, min(30.0, 0.5 * 2**n))

    def _requeue(self, key: str, event: str, obj: Obj, delay: float) -> None:
        def again():
            with self._lock:
                newer = key in self._latest
            if event != "DELETED" and not newer:  # a newer version already waits: use that
                self._offer("SYNC", obj)

        t = threading.Timer(delay, again)
        t.daemon = True
        t.start()
