"""A real TCP fault proxy (toxiproxy) for the fault tests: put it in front of S3 and break the
network between the engine (or a mover's restic) and the store.

``Toxiproxy.start(log)`` runs ``toxiproxy-server`` (``make toxiproxy`` builds it into ``bin/``) on
a loopback port owned the way every server of the project owns its port
(``ys1000_dev.ports.start_on_port``: a port taken before the server binds it is retried on a
fresh one). ``proxy(name, upstream)`` creates a proxy listening on ``127.0.0.1:0``: toxiproxy
binds it and reports the real port, so there is no pick-then-bind race at all. A ``Proxy`` adds
and removes toxics through toxiproxy's HTTP API (``latency``, ``bandwidth``, ``timeout``,
``reset_peer``, ``limit_data``), goes ``down()`` (the listener closes and every open connection
is cut: connection refused from then on) and ``up()`` again, and reports the bytes that went
through it (``traffic``: the server runs with ``-proxy-metrics``), so a test can wait
for "half of the upload has passed" instead of sleeping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ys1000_dev.ports import start_on_port, stop_process

BINARY_ENV = "TOXIPROXY_SERVER"


class ToxiproxyError(RuntimeError):
    """toxiproxy's API refused a request (the message carries its answer)."""


def binary() -> str:
    """``$TOXIPROXY_SERVER``, else ``bin/toxiproxy-server`` of the repository, else the PATH."""
    found = os.environ.get(BINARY_ENV)
    if found:
        return found
    built = Path(__file__).resolve().parents[2] / "bin" / "toxiproxy-server"
    if built.exists():
        return str(built)
    on_path = shutil.which("toxiproxy-server")
    if on_path:
        return on_path
    raise FileNotFoundError(f"toxiproxy-server is not built: run `make toxiproxy` (or set ${BINARY_ENV})")


class Toxiproxy:
    """One running ``toxiproxy-server`` and its HTTP API."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.proxies: dict[str, Proxy] = {}

    @classmethod
    def start(cls, log: Path, *, port: int | None = None, timeout: float = 30) -> "Toxiproxy":
        exe = binary()
        log.parent.mkdir(parents=True, exist_ok=True)

        def launch(p: int) -> subprocess.Popen:
            with open(log, "ab") as out:
                return subprocess.Popen(
                    [exe, "-host", "127.0.0.1", "-port", str(p), "-proxy-metrics"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "LOG_LEVEL": os.environ.get("TOXIPROXY_LOG_LEVEL", "info")},
                    start_new_session=True,
                )

        proc, p = start_on_port(launch, log, "toxiproxy-server", port=port, timeout=timeout)
        return cls(proc, p, log)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "Toxiproxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the HTTP API
    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {exc.code}: {exc.read().decode()[:500]}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def proxy(self, name: str, upstream: str) -> "Proxy":
        """A new proxy to ``upstream`` (``host:port``) on a loopback port toxiproxy picks."""
        made = self.request("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": upstream})
        p = self.proxies[name] = Proxy(self, name, made["listen"], upstream)
        return p

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.request("POST", "/reset")

    def metrics(self) -> str:
        return str(self.request("GET", "/metrics"))


_METRIC = re.compile(r"^toxiproxy_proxy_(received|sent)_bytes_total\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class Proxy:
    """One proxy of a ``Toxiproxy``: its listen address and its toxics."""

    def __init__(self, server: Toxiproxy, name: str, listen: str, upstream: str):
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        """``http://`` plus the listen address: an S3 endpoint URL through the proxy."""
        return f"http://{self.listen}"

    def state(self) -> dict:
        return self.server.request("GET", f"/proxies/{self.name}")

    # -- up and down
    def down(self) -> None:
        """Disable the proxy: its listener closes and every open connection through it is cut."""
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": False})

    def up(self) -> None:
        self.server.request("POST", f"/proxies/{self.name}", {"enabled": True})

    # -- toxics
    def add_toxic(
        self,
        kind: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> str:
        """Add a toxic (``stream``: ``upstream`` = client → server, ``downstream`` = back);
        returns its name."""
        name = name or f"{kind}_{stream}"
        body = {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self.server.request("POST", f"/proxies/{self.name}/toxics", body)
        return name

    def remove_toxic(self, name: str) -> None:
        self.server.request("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def toxics(self) -> list[dict]:
        return self.server.request("GET", f"/proxies/{self.name}/toxics")

    def clear(self) -> None:
        """Every toxic removed and the proxy enabled."""
        for t in self.toxics():
            self.remove_toxic(t["name"])
        self.up()

    def latency(self, ms: int, *, jitter: int = 0, stream: str = "downstream") -> str:
        """Delay every chunk of data by ``ms`` (± ``jitter``) milliseconds."""
        return self.add_toxic("latency", stream=stream, latency=ms, jitter=jitter)

    def bandwidth(self, kib_per_s: int, *, stream: str = "upstream") -> str:
        """Limit the stream to ``kib_per_s`` KiB/s (toxiproxy's ``rate`` is in KB/s = KiB/s)."""
        return self.add_toxic("bandwidth", stream=stream, rate=kib_per_s)

    def timeout(self, ms: int = 0, *, stream: str = "upstream") -> str:
        """Let no data through; close each connection after ``ms`` (0: never, hang)."""
        return self.add_toxic("timeout", stream=stream, timeout=ms)

    def reset_peer(self, ms: int = 0, *, stream: str = "upstream") -> str:
        """Reset each connection (TCP RST) after ``ms`` milliseconds."""
        return self.add_toxic("reset_peer", stream=stream, timeout=ms)

    def limit_data(self, nbytes: int, *, stream: str = "upstream") -> str:
        """Close each connection once ``nbytes`` have passed in ``stream``."""
        return self.add_toxic("limit_data", stream=stream, bytes=nbytes)

    # -- traffic
    def traffic(self, *, direction: str = "upstream", counter: str = "sent") -> int:
        """Bytes that went through this proxy so far, over every connection: ``counter`` ``sent``
        (passed on by toxiproxy, after the toxics) or ``received``; ``direction`` ``upstream``
        (client → server) or ``downstream``."""
        total = 0.0
        for m in _METRIC.finditer(self.server.metrics()):
            if m.group(1) != counter:
                continue
            labels = dict(_LABEL.findall(m.group(2)))
            if labels.get("proxy") == self.name and labels.get("direction") == direction:
                total += float(m.group(3))
        return int(total)
