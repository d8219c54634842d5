"""Loopback receivers for the report tests: an SMTP server (aiosmtpd) and a Work WeChat webhook."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ys1000_dev.ports import retry_on_port_conflict


class Mailbox:
    """aiosmtpd on 127.0.0.1; ``messages`` holds (envelope recipients, parsed message)."""

    def __init__(self):
        self.messages: list[tuple[list[str], object]] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append(
                    (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default))
                )
                return "250 OK"

        self._handler = Handler()
        self.port: int | None = None

    def __enter__(self):
        from aiosmtpd.controller import Controller

        def start(port: int):
            controller = Controller(self._handler, hostname="127.0.0.1", port=port)
            controller.start()  # OSError EADDRINUSE when the port was taken meanwhile: a new port
            return port, controller

        self.port, self.controller = retry_on_port_conflict(start, "SMTP receiver")
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @staticmethod
    def body(msg) -> str:
        import html

        part = msg.get_body(preferencelist=("html", "plain"))
        return html.unescape(part.get_content())


class WebhookReceiver:
    """A loopback HTTP server answering like the Work WeChat robot API."""

    def __init__(self):
        self.requests: list[dict] = []
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recv.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                out = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
