"""S3 on loopback for the sandbox: a MinIO server — the object store users run, and the one in
``docker-compose.yaml`` — built from the Go module proxy by ``make setup`` (``bin/minio``), like
restic and the control plane.

MinIO enforces its credentials from the first request (a wrong secret gets
``SignatureDoesNotMatch``, an unknown key ``InvalidAccessKeyId``), supports Object Lock on
buckets created with it, and serves restic's S3 backend; one single-drive server per sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from ys1000.repository import RepositoryConfig

from ys1000_dev.ports import start_on_port

REGION = "us-east-1"
DEFAULT_BUCKET = "ys1000-backups"


@dataclass(frozen=True)
class S3Endpoint:
    """Where the sandbox S3 listens and how to sign requests to it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str

    def client(self, **overrides):
        kw = dict(
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        kw.update(overrides)
        return boto3.client("s3", **kw)

    def repository_config(self, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> "RepositoryConfig":
        """A backup repository in ``bucket``/``prefix`` of this endpoint (or reached through
        ``endpoint_url``, e.g. a fault proxy in front of it)."""
        from ys1000.repository import RepositoryConfig

        return RepositoryConfig(
            type="s3",
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url or self.endpoint_url,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )

    def new_bucket(self, name: str, *, object_lock: bool = False) -> str:
        """Create a bucket (optionally with Object Lock enabled) and return its name."""
        kw = {"Bucket": name}
        if object_lock:
            kw["ObjectLockEnabledForBucket"] = True
        self.client().create_bucket(**kw)
        return name

    def env(self) -> dict[str, str]:
        """Environment in the shape boto3, restic and our CLI read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "YS1000_S3_BUCKET": self.bucket,
        }

    def write_env_file(self, path: Path) -> None:
        lines = [f"{k}={v}" for k, v in self.env().items()]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    @classmethod
    def from_env_file(cls, path: Path) -> "S3Endpoint":
        env = dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
        return cls(
            endpoint_url=env["AWS_ENDPOINT_URL"],
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            region=env["AWS_DEFAULT_REGION"],
            bucket=env["YS1000_S3_BUCKET"],
        )

    def to_json(self) -> dict:
        return asdict(self)


ACCESS_KEY = "ys1000-sandbox"
SECRET_KEY = "ys1000-sandbox-secret"  # a throwaway loopback server's root password


def binary() -> Path:
    """``minio`` on PATH, else ``bin/minio`` of the checkout (``make minio`` builds it)."""
    found = shutil.which("minio")
    if found:
        return Path(found)
    built = Path(__file__).resolve().parents[3] / "bin" / "minio"
    if not built.is_file():
        raise FileNotFoundError(f"MinIO server not found on PATH nor at {built}; run `make minio`")
    return built


def start_s3(log_path: Path, data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start MinIO on loopback (``port``, else a free one; another free one if that is taken
    before MinIO binds it), storing into ``data_dir``; return the process and its URL once live."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MINIO_ROOT_USER": ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": SECRET_KEY,
        "MINIO_BROWSER": "off",  # no console (and no second port)
        "MINIO_UPDATE": "off",
        "MINIO_REGION": REGION,
    }

    def launch(p: int) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [str(binary()), "server", "--quiet", "--address", f"127.0.0.1:{p}", str(data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    proc, port = start_on_port(launch, log_path, "MinIO server", port=port, timeout=60)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"MinIO exited with {proc.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"{url}/minio/health/ready", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"MinIO did not become ready on {url} within 60 s; see {log_path}")


def bootstrap(url: str, bucket: str = DEFAULT_BUCKET) -> S3Endpoint:
    """The endpoint with its credentials, and the default bucket."""
    endpoint = S3Endpoint(url, ACCESS_KEY, SECRET_KEY, REGION, bucket)
    endpoint.new_bucket(bucket)
    return endpoint


def main(argv: list[str] | None = None) -> None:
    """``python -m ys1000_dev.sandbox.s3 DIR``: run S3 in the foreground (for debugging)."""
    target = Path((argv or sys.argv[1:] or ["."])[0])
    target.mkdir(parents=True, exist_ok=True)
    proc, url = start_s3(target / "s3.log", target / "s3-data")
    endpoint = bootstrap(url)
    endpoint.write_env_file(target / "s3.env")
    print(json.dumps({k: v for k, v in endpoint.to_json().items() if k != "secret_key"}))
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
