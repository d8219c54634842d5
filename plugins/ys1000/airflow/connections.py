"""Resolve configured clusters and repositories through Airflow connections and Variables.

- A cluster (``clusters.yaml`` → ``connection_id``, conn type ``kubernetes``) becomes a
  ``ys1000.kube.Kube`` over the ApiClient the cncf provider's ``KubernetesHook`` builds from the
  connection's extras (``kube_config_path``, inline ``kube_config``, ``in_cluster``,
  ``cluster_context``, ``disable_verify_ssl``).
- An S3 repository (``repositories.yaml`` → ``connection_id``, conn type ``aws``) gets its
  credentials from ``AwsBaseHook(...).get_credentials()`` (static keys, profiles, assumed roles:
  whatever the amazon provider supports) and its endpoint from the connection extra
  ``endpoint_url`` (MinIO, QingStor, the sandbox) and region from ``region_name``.
- The repository passphrase comes from the Airflow Variable or the connection password that
  ``RepositorySpec.key`` names; it is masked in task logs.

Everything here runs inside tasks, never at DAG parse time. A missing connection or Variable is
a permanent error (``MissingConnection``) naming its id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

if TYPE_CHECKING:
    from ys1000.config import ClusterSpec, KeyRef, RepositorySpec
    from ys1000.kube import Kube
    from ys1000.repository import Repository, RepositoryConfig


class MissingConnection(AirflowFailException):
    """An Airflow connection or Variable the configuration names does not exist."""


def get_connection(conn_id: str, what: str):
    """The Airflow connection ``conn_id``; ``MissingConnection`` naming it and its use when absent."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise MissingConnection(
            f"Airflow connection {conn_id!r} ({what}) does not exist; create it (Admin → Connections, "
            f"`airflow connections add {conn_id} ...`, or the AIRFLOW_CONN_{conn_id.upper()} variable)"
        ) from None


def kubernetes_hook(conn_id: str):
    """A ``KubernetesHook`` for ``conn_id`` with its own client configuration (loading a kubeconfig
    never touches the process-wide default, so several clusters can be used side by side)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    return KubernetesHook(conn_id=conn_id, client_configuration=client.Configuration())


def kube_for_cluster(name: str, spec: "ClusterSpec") -> "Kube":
    """``Kube`` for cluster ``name`` through its Airflow connection (conn type ``kubernetes``)."""
    from ys1000.kube import Kube

    get_connection(spec.connection_id, f"cluster {name}")
    hook = kubernetes_hook(spec.connection_id)
    return Kube(hook.get_conn(), name=name)


def passphrase_for(repo_name: str, key: "KeyRef") -> str:
    """The repository passphrase from the Airflow Variable or connection password ``key`` names."""
    from airflow.sdk import Variable

    if key.variable:
        try:
            value = Variable.get(key.variable)
        except (KeyError, AirflowNotFoundException):
            value = None
        if not value:
            raise MissingConnection(
                f"Airflow Variable {key.variable!r} (the encryption key of repository {repo_name}) does not "
                f"exist or is empty; create it (Admin → Variables, `airflow variables set {key.variable} ...`, "
                f"or AIRFLOW_VAR_{key.variable.upper()})"
            )
    else:
        assert key.connection_id is not None  # the key names a variable or a connection
        conn = get_connection(key.connection_id, f"encryption key of repository {repo_name}")
        value = conn.password
        if not value:
            raise MissingConnection(
                f"Airflow connection {key.connection_id!r} (the encryption key of "
                f"repository {repo_name}) has an empty password field"
            )
    _mask(value)
    return value


def repository_config_for(name: str, spec: "RepositorySpec") -> "RepositoryConfig":
    """The engine's ``RepositoryConfig`` for repository ``name``, credentials from its connection."""
    if spec.type == "local":
        return spec.to_repository_config()
    assert spec.connection_id is not None  # an s3 repository has one
    conn = get_connection(spec.connection_id, f"repository {name}")
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    extra = conn.extra_dejson or {}
    hook = AwsBaseHook(aws_conn_id=spec.connection_id, client_type="s3")
    creds = hook.get_credentials()
    endpoint = extra.get("endpoint_url") or hook.conn_config.get_service_endpoint_url("s3") or None
    region = extra.get("region_name") or hook.conn_config.region_name or spec.region
    verify = extra.get("verify")
    kwargs = {"verify_tls": bool(verify)} if isinstance(verify, bool) else {}
    return spec.to_repository_config(
        endpoint_url=endpoint, access_key=creds.access_key, secret_key=creds.secret_key, region=region, **kwargs
    )


def open_repository_for(name: str, spec: "RepositorySpec", *, create: bool = False) -> "Repository":
    """Open repository ``name`` (``create=True``: initialise it when absent, for backups)."""
    from ys1000.repository import open_repository

    return open_repository(repository_config_for(name, spec), passphrase_for(name, spec.key), create=create)


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older SDKs
        return
    mask_secret(secret)
