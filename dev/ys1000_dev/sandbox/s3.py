"""S3 on loopback for the sandbox: a moto server with real credential checks.

moto stands in for S3 because no real object store runs here without containers; it is a
full S3 protocol server (boto3 and restic both talk to it), not a mock of our own code.
Authentication is switched on after bootstrap: an IAM user with an access key is created, then
moto's auth counter is reset to 0 so every later request must be signed with that key (a wrong
secret gets ``SignatureDoesNotMatch``, an unknown key ``InvalidAccessKeyId``) — the same errors a
real endpoint gives, which the repository's connection test must tell apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3

from ys1000_dev.ports import start_on_port

REGION = "us-east-1"
DEFAULT_BUCKET = "ys1000-backups"
_ADMIN_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


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


def start_moto(log_path: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``moto.server`` on loopback (``port``, else a free one; another free one if that is
    taken before moto binds it); return the process and its URL once it answers."""

    def launch(p: int) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(p)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    proc, port = start_on_port(launch, log_path, "moto server", port=port, timeout=30)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto server did not answer on {url} within 30 s; see {log_path}")


def bootstrap(url: str, bucket: str = DEFAULT_BUCKET) -> S3Endpoint:
    """Create the IAM user, its key and the default bucket, then enforce authentication."""
    anon = dict(
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="ys1000")
    iam.put_user_policy(UserName="ys1000", PolicyName="all", PolicyDocument=_ADMIN_POLICY)
    key = iam.create_access_key(UserName="ys1000")["AccessKey"]
    endpoint = S3Endpoint(url, key["AccessKeyId"], key["SecretAccessKey"], REGION, bucket)
    boto3.client("s3", **anon).create_bucket(Bucket=bucket)
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form type would hide the body from moto
    )
    urllib.request.urlopen(req, timeout=5).read()
    return endpoint


def main(argv: list[str] | None = None) -> None:
    """``python -m ys1000_dev.sandbox.s3 DIR``: run S3 in the foreground (for debugging)."""
    target = Path((argv or sys.argv[1:] or ["."])[0])
    target.mkdir(parents=True, exist_ok=True)
    proc, url = start_moto(target / "s3.log")
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
