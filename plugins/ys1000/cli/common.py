"""Options shared by the engine commands: which cluster, which repository, how to print."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from ys1000.kube import Kube, KubeError
from ys1000.repository import Repository, RepositoryConfig, open_repository

KEY_ENV = "YS1000_REPO_KEY"


class UsageError(Exception):
    """Bad flags or inputs: exit code 2 with the message, no traceback."""


class PermissionDenied(Exception):
    """The cluster refused a request (API 403): exit code 1 with one line, no traceback."""


def permission_denied(exc: KubeError) -> PermissionDenied:
    """The API server's own words (they name the user, the verb, the resource and the namespace),
    the request, and where the roles the product needs are."""
    why = exc.message or exc.reason or "Forbidden"
    return PermissionDenied(
        f"permission denied: {why} ({exc.method} {exc.path}); the kubeconfig's identity needs the "
        "roles in deploy/rbac/ (see the README's permissions section)"
    )


def add_cluster_args(p, required: bool = True) -> None:
    p.add_argument(
        "--kubeconfig",
        required=required and not os.environ.get("KUBECONFIG"),
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default $KUBECONFIG)",
    )
    p.add_argument("--context", help="kubeconfig context (default: its current context)")


def add_repo_args(p) -> None:
    p.add_argument(
        "--repo", required=True, metavar="URL", help="s3://BUCKET[/PREFIX] or local:///DIR (or a plain directory path)"
    )
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="S3 endpoint for MinIO/QingStor/... (default $AWS_ENDPOINT_URL)",
    )
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--key-file", type=Path, help=f"file holding the repository key (default: ${KEY_ENV})")


def add_output_arg(p) -> None:
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")


def kube_from(args) -> Kube:
    if not args.kubeconfig:
        raise UsageError("give --kubeconfig (or set KUBECONFIG)")
    if not Path(args.kubeconfig).is_file():
        raise UsageError(f"kubeconfig {args.kubeconfig} does not exist")
    return Kube.from_kubeconfig(args.kubeconfig, args.context, name=args.context or Path(args.kubeconfig).stem)


def repo_config(args) -> RepositoryConfig:
    url = urlparse(args.repo)
    if url.scheme == "s3":
        return RepositoryConfig(
            type="s3",
            bucket=url.netloc,
            prefix=url.path.strip("/"),
            region=args.region,
            endpoint_url=args.endpoint_url,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        )
    if url.scheme in ("local", "file", ""):
        return RepositoryConfig(type="local", path=url.path if url.scheme else args.repo)
    raise UsageError(f"--repo {args.repo!r}: expected s3://BUCKET[/PREFIX] or local:///DIR")


def passphrase(args) -> str:
    if args.key_file:
        return args.key_file.read_text().strip()
    key = os.environ.get(KEY_ENV)
    if not key:
        raise UsageError(f"the repository key is needed: set ${KEY_ENV} or give --key-file")
    return key


def repo_from(args, create: bool = False) -> Repository:
    return open_repository(repo_config(args), passphrase(args), create=create)


def emit(args, data, text: str) -> None:
    if getattr(args, "output", "text") == "json":
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


def parse_mapping(pairs: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise UsageError(f"{what} {pair!r}: expected OLD=NEW")
        out[old] = new
    return out
