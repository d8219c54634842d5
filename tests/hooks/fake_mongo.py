"""A FAKE MongoDB server: no MongoDB server package exists in Debian bookworm (and none can be
installed here), so the MongoDB quiesce is tested against this small stand-in instead.

It speaks just enough of the wire protocol (OP_QUERY handshake, OP_MSG commands) for pymongo to
connect and run the commands the quiesce hook sends, records every command, and models only the
fsyncLock counter: ``fsync {lock: true}`` increments it, ``fsyncUnlock`` decrements it (an error
when not locked, like the real server). It does not store data, authenticate, or block writes.
"""

from __future__ import annotations

import datetime as dt
import socketserver
import struct
import threading

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


class FakeMongo:
    """``with FakeMongo() as m: ... m.port, m.commands, m.lock_count``"""

    def __init__(self):
        self.commands: list[tuple[str, dict]] = []
        self.lock_count = 0
        self.max_lock_count = 0
        self._lock = threading.Lock()
        self._conn_ids = iter(range(1, 10**9))
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                conn_id = next(fake._conn_ids)
                while True:
                    header = _recv(self.request, 16)
                    if header is None:
                        return
                    length, request_id, _, opcode = struct.unpack("<iiii", header)
                    body = _recv(self.request, length - 16)
                    if body is None:
                        return
                    if opcode == OP_QUERY:
                        flags = struct.unpack_from("<i", body)[0]  # noqa: F841
                        end = body.index(b"\0", 4)
                        doc = bson.decode(body[end + 9 : end + 9 + struct.unpack_from("<i", body, end + 9)[0]])
                        reply = fake.command(doc, conn_id)
                        payload = bson.encode(reply)
                        msg = struct.pack("<iqii", 0, 0, 0, 1) + payload
                        self.request.sendall(struct.pack("<iiii", 16 + len(msg), 0, request_id, OP_REPLY) + msg)
                    elif opcode == OP_MSG:
                        flag_bits = struct.unpack_from("<I", body)[0]
                        pos, doc = 4, {}
                        end = len(body) - (4 if flag_bits & 1 else 0)
                        while pos < end:
                            kind = body[pos]
                            pos += 1
                            size = struct.unpack_from("<i", body, pos)[0]
                            if kind == 0:
                                doc = bson.decode(body[pos : pos + size])
                            pos += size
                        reply = fake.command(doc, conn_id)
                        msg = struct.pack("<I", 0) + b"\0" + bson.encode(reply)
                        if not (flag_bits & 2):  # moreToCome: no reply expected
                            self.request.sendall(struct.pack("<iiii", 16 + len(msg), 0, request_id, OP_MSG) + msg)
                    else:
                        return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def command(self, doc: dict, conn_id: int) -> dict:
        name = next(iter(doc)) if doc else ""
        key = name.lower()
        with self._lock:
            if key not in ("ismaster", "hello"):
                self.commands.append((name, dict(doc)))
            if key in ("ismaster", "hello"):
                return {
                    "ismaster": True,
                    "isWritablePrimary": True,
                    "helloOk": True,
                    "maxBsonObjectSize": 16 * 1024 * 1024,
                    "maxMessageSizeBytes": 48_000_000,
                    "maxWriteBatchSize": 100_000,
                    "localTime": dt.datetime.now(dt.timezone.utc),
                    "logicalSessionTimeoutMinutes": 30,
                    "connectionId": conn_id,
                    "minWireVersion": 0,
                    "maxWireVersion": 21,
                    "readOnly": False,
                    "ok": 1.0,
                }
            if key == "fsync":
                if doc.get("lock"):
                    self.lock_count += 1
                    self.max_lock_count = max(self.max_lock_count, self.lock_count)
                    return {
                        "info": "now locked against writes, use db.fsyncUnlock() to unlock",
                        "lockCount": self.lock_count,
                        "seeAlso": "",
                        "ok": 1.0,
                    }
                return {"numFiles": 1, "ok": 1.0}
            if key == "fsyncunlock":
                if self.lock_count == 0:
                    return {
                        "ok": 0.0,
                        "errmsg": "fsyncUnlock called when not locked",
                        "code": 125,
                        "codeName": "IllegalOperation",
                    }
                self.lock_count -= 1
                return {"info": "fsyncUnlock completed", "lockCount": self.lock_count, "ok": 1.0}
            if key in ("ping", "endsessions", "buildinfo"):
                return {"ok": 1.0}
            return {
                "ok": 0.0,
                "errmsg": f"no such command: '{name}' (fake server)",
                "code": 59,
                "codeName": "CommandNotFound",
            }

    def names(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self.commands]

    def __enter__(self) -> "FakeMongo":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _recv(sock, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
