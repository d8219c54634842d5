"""``ys1000 test-connection``: the Airflow connection test of a configured cluster or repository.

The same check as the "Test" button of the connection in the Airflow UI (enabled with
``AIRFLOW__CORE__TEST_CONNECTION=Enabled``), resolved through the names in ``config/``: a cluster
answers ``/version`` and lists its nodes; a repository writes, reads and deletes a probe object
(and its key opens the repository, when one exists there). Exit 0 when connected, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("test-connection", help="test the Airflow connection of a configured cluster or repository")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--cluster", help="a name from clusters.yaml")
    what.add_argument("--repository", help="a name from repositories.yaml")
    p.add_argument("--config-dir", type=Path, help="default: $YS1000_CONFIG_DIR or the repo's config/")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ys1000.config import default_config_dir, load_config

    config = load_config(args.config_dir or default_config_dir())
    try:
        if args.cluster:
            print(_cluster(config, args.cluster))
        else:
            print(_repository(config, args.repository))
    except Exception as exc:  # the reason, in one line, is the answer
        name = args.cluster or args.repository
        print(f"{'cluster' if args.cluster else 'repository'} {name}: NOT connected: {exc}")
        return 1
    return 0


def _cluster(config, name: str) -> str:
    from ys1000.airflow.connections import kube_for_cluster

    if name not in config.clusters:
        raise LookupError(f"not in clusters.yaml (defined: {', '.join(sorted(config.clusters))})")
    spec = config.clusters[name]
    kube = kube_for_cluster(name, spec)
    version = kube.version().get("gitVersion")
    nodes = kube.get("/api/v1/nodes").get("items", [])
    return (
        f"cluster {name}: connected through connection {spec.connection_id} "
        f"(Kubernetes {version}, {len(nodes)} node{'s' if len(nodes) != 1 else ''})"
    )


def _repository(config, name: str) -> str:
    from ys1000.airflow.connections import passphrase_for, repository_config_for
    from ys1000.repository import Repository, RepositoryNotInitialized, check_connection, make_store

    if name not in config.repositories:
        raise LookupError(f"not in repositories.yaml (defined: {', '.join(sorted(config.repositories))})")
    spec = config.repositories[name]
    store = make_store(repository_config_for(name, spec))
    report = check_connection(store)
    try:
        Repository.open(store, passphrase_for(name, spec.key))
        key = "the key opens the repository"
    except RepositoryNotInitialized:
        key = "no repository there yet (the first backup creates it)"
    return (
        f"repository {name}: connected ({store.describe()}; write, read and delete probe OK"
        f"{'; Object Lock enabled' if report.object_lock else ''}; {key})"
    )
