"""The kubelet's log endpoint, so ``kubectl logs`` works for pods the sandbox executed.

The API server proxies ``GET pods/{name}/log`` to ``https://<node InternalIP>:<kubeletEndpoint
port>/containerLogs/{namespace}/{pod}/{container}``. It does not verify kubelet certificates
unless told to, so a self-signed certificate is enough.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def log_path(root: Path, namespace: str, pod: str, container: str) -> Path:
    return root / namespace / pod / f"{container}.log"


def _self_signed(cert_dir: Path) -> tuple[Path, Path]:
    cert, key = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    if cert.exists() and key.exists():
        return cert, key
    cert_dir.mkdir(parents=True, exist_ok=True)
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ys1000-sandbox-kubelet")])
    now = dt.datetime.now(dt.timezone.utc)
    crt = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(pk, hashes.SHA256())
    )
    key.write_bytes(
        pk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    return cert, key


class LogServer:
    """HTTPS server answering ``/containerLogs/{ns}/{pod}/{container}`` from files under ``root``."""

    def __init__(self, root: Path, cert_dir: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        cert, key = _self_signed(cert_dir)
        server_root = root

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the supervisor log readable
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
                if (
                    len(parts) != 4
                    or parts[0] != "containerLogs"
                    or any(p in ("", ".", "..") or "/" in p for p in parts[1:])
                ):
                    self.send_error(404, "only /containerLogs/{namespace}/{pod}/{container}")
                    return
                path = log_path(server_root, *parts[1:])
                if not path.exists():
                    self.send_error(404, f"no log for container {parts[3]} of pod {parts[2]}")
                    return
                data = path.read_bytes()
                q = urllib.parse.parse_qs(url.query)
                if "tailLines" in q:
                    n = int(q["tailLines"][0])
                    data = b"".join(data.splitlines(keepends=True)[-n:]) if n > 0 else b""
                if "limitBytes" in q:
                    data = data[: int(q["limitBytes"][0])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self._httpd.serve_forever, name="logserver", daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
