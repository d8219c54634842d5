"""Run a producer in a forked child process and receive what it emits, in the parent.

A backup's capture is CPU-bound in Python: decoding the API server's pages and preparing each
document, then tarring, compressing and encrypting it. In one process both share one interpreter
lock and one core, while the API server leaves the other mostly idle; forked, the listing runs
beside the writer. A fork (not spawn) because the child needs the parent's state as it is — the
cluster client with whatever authentication it was built with, the selection — and nothing
needs pickling but what crosses the pipe: batches of encoded documents, one result, or an error.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from typing import Any

POLL_SECONDS = 0.2  # how often the parent looks at its cancel event and the child's liveness

Emit = Callable[[Any], None]


class ChildFailed(RuntimeError):
    """The child exited without a result, or raised something that could not cross the pipe."""


def forked_items(
    produce: Callable[[Emit], Any],
    *,
    cancel: threading.Event | None = None,
    what: str = "producer",
) -> Generator[Any, None, Any]:
    """Run ``produce(emit)`` in a forked child; yield each item it emits, in order, and return
    its return value. An exception in the child is raised here (the same type, when it can be
    pickled); ``cancel`` set, or the generator closed early, kills the child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(produce, Connection(write_fd, readable=False))
    os.close(write_fd)
    conn = Connection(read_fd, writable=False)
    reaped = answered = False
    try:
        while True:
            while not conn.poll(POLL_SECONDS):
                if cancel is not None and cancel.is_set():
                    raise InterruptedError(f"{what} cancelled")
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    # reaped now, even when its last message arrived in the meantime (it sent it,
                    # then exited, between the poll above and this look): never waited for again
                    reaped = True
                    if not conn.poll(0):
                        raise ChildFailed(f"{what} process exited ({_status(status)}) before it finished")
            try:
                tag, payload = conn.recv()
            except EOFError:
                raise ChildFailed(f"{what} process closed its pipe before it finished") from None
            if tag == "item":
                yield payload
                continue
            answered = True  # its last message: the child is exiting
            if tag == "done":
                return payload
            raise payload
    finally:
        conn.close()
        if not reaped:
            if not answered:  # cancelled, failed here, or closed early: it has nothing more to do
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.waitpid(pid, 0)


def _child(produce: Callable[[Emit], Any], conn: Connection) -> None:
    # the parent's handlers (Airflow's, on SIGTERM) are not this process's to run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    lock = threading.Lock()  # emit may be called from the producer's threads

    def emit(item: Any) -> None:
        with lock:
            conn.send(("item", item))

    code = 0
    try:
        result = produce(emit)
        with lock:
            conn.send(("done", result))
    except BaseException as exc:  # everything goes to the parent, which decides
        code = 1
        try:
            with lock:
                conn.send(("error", _portable(exc)))
        except BaseException:
            pass  # the parent is gone (broken pipe): nobody to tell
    finally:
        try:
            conn.close()
        finally:
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _portable(exc: BaseException) -> BaseException:
    """``exc`` when it survives pickling as itself, else a ChildFailed carrying its traceback."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if type(back) is type(exc) and str(back) == str(exc):
            return exc
    except Exception:
        pass
    text = "".join(traceback.format_exception(exc)).strip()
    return ChildFailed(f"{type(exc).__name__}: {exc}\n{text}")


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"
