"""The forked producer a backup lists in: items in order, its result, its errors, cancel, a
child that dies, and no child left behind whichever way it ends."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ys1000.backup.forked import ChildFailed, forked_items
from ys1000.kube import KubeError


def run(gen):
    """Every item and the return value of a forked_items generator."""
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as end:
            return items, end.value


def gone(pid: int) -> bool:
    """The child was reaped: no process, not even a zombie, has its pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_items_arrive_in_order_with_the_result_from_threads_of_the_child():
    def produce(emit):
        parent = os.getppid()
        for i in range(3000):
            emit((i, b"x" * (i % 700)))  # many messages, more than a pipe's buffer
        threads = [threading.Thread(target=emit, args=(("t", n),)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"pid": os.getpid(), "parent": parent}

    items, result = run(forked_items(produce))
    assert items[:3000] == [(i, b"x" * (i % 700)) for i in range(3000)]
    assert sorted(items[3000:]) == [("t", n) for n in range(4)]
    assert result["pid"] != os.getpid() and result["parent"] == os.getpid()
    assert gone(result["pid"])


def test_the_childs_exception_is_raised_in_the_parent_as_itself():
    def produce(emit):
        emit(os.getpid())
        raise KubeError(403, "Forbidden", "configmaps is forbidden", "GET", "/api/v1/configmaps")

    gen = forked_items(produce)
    pid = next(gen)
    with pytest.raises(KubeError, match="GET /api/v1/configmaps: 403 Forbidden") as caught:
        next(gen)
    assert (caught.value.status, caught.value.reason, caught.value.path) == (403, "Forbidden", "/api/v1/configmaps")
    assert gone(pid)


def test_an_exception_that_cannot_cross_the_pipe_arrives_as_text_with_its_traceback():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"odd {a} {b}")

    def produce(emit):
        emit(os.getpid())
        raise Odd(1, 2)

    gen = forked_items(produce)
    pid = next(gen)
    with pytest.raises(ChildFailed, match=r"(?s)Odd: odd 1 2.*in produce"):
        next(gen)
    assert gone(pid)


def test_a_child_that_dies_is_an_error_naming_how():
    def produce(emit):
        emit(os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)

    gen = forked_items(produce, what="listing")
    pid = next(gen)
    with pytest.raises(ChildFailed, match="listing process (exited \\(killed by signal 9\\)|closed its pipe)"):
        next(gen)
    assert gone(pid)


def test_cancel_and_early_close_kill_the_child():
    def produce(emit):
        emit(os.getpid())
        time.sleep(60)

    cancel = threading.Event()
    gen = forked_items(produce, cancel=cancel, what="listing")
    pid = next(gen)
    cancel.set()
    t0 = time.monotonic()
    with pytest.raises(InterruptedError, match="listing cancelled"):
        next(gen)
    assert time.monotonic() - t0 < 5
    assert gone(pid)

    gen = forked_items(produce)
    pid = next(gen)
    gen.close()  # the consumer failed: the child must not go on
    assert gone(pid)


def test_a_child_lists_even_when_another_parent_thread_held_the_connection_pool_at_the_fork():
    """The child replaces the inherited pool without touching it: a lock another thread of the
    parent held at the fork stays held forever in the child (a backup run from a thread pool)."""
    import http.server
    import json

    from kubernetes import client

    from ys1000.kube import Kube

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps({"kind": "NamespaceList", "items": [{"metadata": {"name": "a"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        kube = Kube(client.ApiClient(cfg), name="t")
        assert kube.get("/api/v1/namespaces")["items"][0]["metadata"]["name"] == "a"  # a pooled connection
        held, release = threading.Event(), threading.Event()

        def hold():
            with kube.api.rest_client.pool_manager.pools.lock:
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()

        def produce(emit):
            kube.after_fork()
            return [n["metadata"]["name"] for n in kube.get("/api/v1/namespaces")["items"]]

        cancel = threading.Event()
        timer = threading.Timer(20, cancel.set)  # a child stuck on the held lock: fail, not hang
        timer.start()
        try:
            assert run(forked_items(produce, cancel=cancel))[1] == ["a"]
        finally:
            timer.cancel()
            release.set()
            holder.join()
    finally:
        server.shutdown()


def test_a_child_that_answers_and_exits_between_the_poll_and_the_liveness_look(monkeypatch):
    """Found by the 1,000-plan bench: the liveness look reaped a child whose last message had
    just arrived; the generator then waited for it again (ECHILD) instead of returning."""
    real_waitpid = os.waitpid
    pids = []

    def waitpid(pid, options):
        if options == os.WNOHANG:
            pids.append(pid)
            return real_waitpid(pid, 0)  # as if it ended right between the poll and this look
        return real_waitpid(pid, options)

    monkeypatch.setattr(os, "waitpid", waitpid)

    def produce(emit):
        emit("first")
        time.sleep(0.5)  # longer than the parent's poll: it looks whether the child lives
        return 42

    assert run(forked_items(produce)) == (["first"], 42)
    assert pids and gone(pids[0])
