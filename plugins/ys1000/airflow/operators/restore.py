"""Restore operators: ``preflight`` → ``restore`` (resources up to the PVCs) → ``volumes`` (mapped:
one task per PVC filled from restic, waits deferred) → ``workloads`` (the rest, then the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from ys1000.airflow.errors import Cancelled, engine_errors
from ys1000.airflow.operators.base import Ys1000Operator, _counts, restore_id_for

if TYPE_CHECKING:
    from ys1000.repository import Repository
    from ys1000.restore.apply import ExistingPolicy


# -- restore -------------------------------------------------------------------------------------


def resolve_backup(repo: "Repository", backup: str, plan: str | None) -> str:
    """A backup id, or ``latest``: the newest completed backup of ``plan`` (config.specs)."""
    from ys1000.config.specs import BackupNotResolved, resolve_backup as resolve

    try:
        return resolve(repo, backup, plan)
    except BackupNotResolved as exc:
        raise AirflowFailException(str(exc)) from None


class _RestoreBase(Ys1000Operator):
    """Restore arguments: given directly (the generic DAG renders them from params) or, with
    ``restore_plan``, taken from a RestorePlan."""

    template_fields: Sequence[str] = (
        "backup",
        "plan",
        "repository_name",
        "target_cluster",
        "namespaces",
        "namespace_mapping",
        "storage_class_mapping",
        "include_kinds",
        "exclude_kinds",
        "resource_refs",
        "remove_node_constraints",
        "remove_tolerations",
        "existing_resource_policy",
        "dry_run_only",
    )

    def __init__(
        self,
        *,
        backup: str = "latest",
        plan: str | None = None,
        repository: str | None = None,
        target_cluster: str | None = None,
        namespaces: list[str] | None = None,
        namespace_mapping: dict[str, str] | None = None,
        storage_class_mapping: dict[str, str] | None = None,
        include_kinds: list[str] | None = None,
        exclude_kinds: list[str] | None = None,
        resource_refs: list[str] | None = None,
        remove_node_constraints: bool = False,
        remove_tolerations: bool = False,
        existing_resource_policy: str = "skip",
        dry_run: bool = False,
        restore_plan: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backup = backup
        self.plan = plan
        self.repository_name = repository
        self.target_cluster = target_cluster
        self.namespaces = namespaces or []
        self.namespace_mapping = namespace_mapping or {}
        self.storage_class_mapping = storage_class_mapping or {}
        self.include_kinds = include_kinds or []
        self.exclude_kinds = exclude_kinds or []
        self.resource_refs = resource_refs or []  # ('resources' is a BaseOperator field)
        self.remove_node_constraints = remove_node_constraints
        self.remove_tolerations = remove_tolerations
        self.existing_resource_policy = existing_resource_policy
        self.dry_run_only = dry_run  # not `dry_run`: that is a BaseOperator method
        self.restore_plan = restore_plan

    def _apply_plan(self) -> None:
        """Fill the arguments from the RestorePlan (run time: the plan as it is on disk)."""
        if not self.restore_plan:
            return
        from ys1000.config import RestorePlan

        rp = self.plan_named(self.restore_plan)
        if not isinstance(rp, RestorePlan):
            raise AirflowFailException(f"plan {self.restore_plan!r} is a {rp.kind}, not a RestorePlan")
        if not self.backup or self.backup == "latest":  # else: an id preflight already resolved
            self.backup = rp.backup.id
        self.plan = rp.backup.plan
        self.repository_name, self.target_cluster = rp.repository, rp.target_cluster
        self.namespace_mapping, self.storage_class_mapping = dict(rp.namespace_mapping), dict(rp.storage_class_mapping)
        self.include_kinds, self.exclude_kinds = list(rp.include_kinds), list(rp.exclude_kinds)
        self.resource_refs = list(rp.resources)
        self.remove_node_constraints, self.remove_tolerations = rp.remove_node_constraints, rp.remove_tolerations
        self.existing_resource_policy, self.dry_run_only = rp.existing_resource_policy, rp.dry_run

    @property
    def cluster(self) -> str:
        """The target cluster (``_check_args`` made sure there is one)."""
        if not self.target_cluster:
            raise AirflowFailException("no target cluster given")
        return self.target_cluster

    @property
    def repo_name(self) -> str:
        """The repository (``_check_args`` made sure there is one)."""
        if not self.repository_name:
            raise AirflowFailException("no repository given")
        return self.repository_name

    def _check_args(self) -> None:
        self._apply_plan()
        if not self.repository_name:
            raise AirflowFailException("no repository given")
        if not self.target_cluster:
            raise AirflowFailException("no target cluster given")
        if self.existing_resource_policy not in ("skip", "update", "fail"):
            raise AirflowFailException(
                f"existing_resource_policy {self.existing_resource_policy!r} is not "
                "allowed; expected skip, update or fail"
            )
        for name in ("namespace_mapping", "storage_class_mapping"):
            if not isinstance(getattr(self, name), dict):
                raise AirflowFailException(f"{name} must be a mapping OLD: NEW, got {getattr(self, name)!r}")
        for name in ("namespaces", "include_kinds", "exclude_kinds", "resource_refs"):
            if not isinstance(getattr(self, name), list):
                raise AirflowFailException(f"{name} must be a list, got {getattr(self, name)!r}")
        # rendered params may come back as other types (native rendering): normalise
        self.backup = str(self.backup) if self.backup not in (None, "") else "latest"
        self.namespace_mapping = {str(k): str(v) for k, v in self.namespace_mapping.items()}
        self.storage_class_mapping = {str(k): str(v) for k, v in self.storage_class_mapping.items()}
        for name in ("namespaces", "include_kinds", "exclude_kinds", "resource_refs"):
            setattr(self, name, [str(v) for v in getattr(self, name)])
        self.dry_run_only = _truthy(self.dry_run_only)
        self.remove_node_constraints = _truthy(self.remove_node_constraints)
        self.remove_tolerations = _truthy(self.remove_tolerations)
        self.plan = str(self.plan) if self.plan not in (None, "", "None") else None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class RestorePreflightOperator(_RestoreBase):
    """Before a restore: the target cluster and the repository are reachable, the backup exists
    and is complete (``latest`` is resolved here). XCom ``backup_id`` and the backup's summary."""

    def execute(self, context: Any) -> dict:
        from ys1000.airflow.params import check_run_conf

        check_run_conf(self, context)  # unknown conf keys, wrong types, a backup id that does not exist
        self._check_args()
        kube = self.kube(self.cluster)
        repo = self.repository(self.repo_name)
        with engine_errors("restore preflight"):
            bid = resolve_backup(repo, self.backup, self.plan)
            m = repo.manifest(bid)
        context["ti"].xcom_push(key="backup_id", value=bid)
        self.log.info(
            "restore preflight OK: backup %s (plan %s, %s) has %d objects from %s; target cluster %s "
            "(Kubernetes %s) reachable",
            bid,
            m.plan,
            m.status,
            m.total,
            ", ".join(m.namespaces),
            self.target_cluster,
            kube.version().get("gitVersion"),
        )
        return {"backup_id": bid, "plan": m.plan, "objects": m.total, "namespaces": m.namespaces}


class _RestoreRun(_RestoreBase):
    """What the parts of one restore share: the spec (rebuilt the same in each task of the run)."""

    def restore_spec(self, context: Any, backup_id: str):
        from ys1000.restore import RestoreOptions, RestoreSpec

        cluster = self.cluster_spec(self.cluster)
        return RestoreSpec(
            backup_id=backup_id,
            restore_id=restore_id_for(context),
            options=RestoreOptions(
                namespace_mapping=dict(self.namespace_mapping),
                storage_class_mapping=dict(self.storage_class_mapping),
                image_registry_mapping=dict(cluster.image_registry_rewrite),
                remove_node_constraints=self.remove_node_constraints,
                remove_tolerations=self.remove_tolerations,
            ),
            namespaces=list(self.namespaces),
            include_kinds=list(self.include_kinds),
            exclude_kinds=list(self.exclude_kinds),
            resources=list(self.resource_refs),
            existing_policy=cast("ExistingPolicy", self.existing_resource_policy),
            dry_run=self.dry_run_only,
        )

    def _repo_config(self):
        from ys1000.airflow.connections import repository_config_for

        return repository_config_for(self.repo_name, self.repository_spec(self.repo_name))

    def _volume_opts(self, context: Any):
        from ys1000.config.specs import restore_volume_options_for

        return restore_volume_options_for(self.cluster_spec(self.cluster), run_id=self.run_key(context))

    def _report(self, report, bid: str) -> dict:
        lines = [
            f"restore {report.restore_id} of backup {bid} into cluster {self.target_cluster}"
            f"{' (dry run)' if report.dry_run else ''}: {report.status}; {_counts(report.counts)}"
        ]
        for i in report.items:
            if i.action in ("failed", "would-fail"):
                where = f"{i.namespace}/" if i.namespace else ""
                lines.append(f"  {i.action}: {i.kind} {where}{i.name}: {i.reason}")
        for v in report.volumes:
            lines.append(
                f"  PVC {v['namespace']}/{v['pvc']}: {v['status']}" + (f" ({v['reason']})" if v.get("reason") else "")
            )
        self.log.info("\n".join(lines))
        return {
            "restore_id": report.restore_id,
            "backup_id": bid,
            "status": report.status,
            "counts": report.counts,
            "dry_run": report.dry_run,
            "failed": len(report.failed),
            "volumes": {
                s: sum(v["status"] == s for v in report.volumes)
                for s in ("data", "empty", "existing", "pending", "failed")
            },
        }


class RestoreOperator(_RestoreRun):
    """The first part of a restore (an id, or ``latest`` of a plan) into the target cluster:
    every class of objects up to and including the PVCs (a CSI snapshot in the cluster that took
    it fills a PVC as it is created). The PVCs that need restic data are its return value, which
    the ``volumes`` task is mapped over; a dry run does everything here.

    Namespace/StorageClass mapping and filters come from the arguments; the image registry
    rewrite from the target cluster's ``image_registry_rewrite``. XCom: ``restore_id``, and the
    counts so far under ``summary``.
    """

    def execute(self, context: Any) -> list[dict]:
        from ys1000.restore.pipeline import restore_resources

        self._check_args()
        kube = self.kube(self.cluster)
        repo = self.repository(self.repo_name)
        with engine_errors("restore"):
            bid = resolve_backup(repo, self.backup, self.plan)
        spec = self.restore_spec(context, bid)
        context["ti"].xcom_push(key="restore_id", value=spec.restore_id)
        if self.cancel.is_set():
            raise Cancelled(f"restore {spec.restore_id} cancelled before it started")
        try:
            with engine_errors(f"restore {spec.restore_id} of backup {bid}"):
                report, pending = restore_resources(
                    kube,
                    repo,
                    spec,
                    same_cluster=repo.manifest(bid).cluster_name == self.target_cluster,
                    repo_cfg=self._repo_config(),
                    volume_opts=self._volume_opts(context),
                    progress=self._progress_logger(f"restore {spec.restore_id}"),
                    cancel=self.cancel,
                )
        except InterruptedError as exc:
            raise Cancelled(
                f"restore {spec.restore_id} cancelled; objects it created carry the label "
                f"ys1000.io/restore={spec.restore_id}"
            ) from exc
        context["ti"].xcom_push(key="summary", value=self._report(report, bid))
        if spec.dry_run:
            _raise_for(report)
        elif pending:
            self.log.info(
                "%d PVC(s) get their data next, one volumes task each: %s",
                len(pending),
                ", ".join(f"{v['namespace']}/{v['pvc']}" for v in pending),
            )
        return pending


class RestoreVolumeOperator(_RestoreRun):
    """One restored PVC's data from restic (mapped over ``restore``'s ``volumes``; the Grid
    names each by namespace/PVC): wait until it is bound, then a mover Job, both deferred to the
    triggerer. A retry reattaches to its still-running mover. XCom: the PVC's report line."""

    def __init__(self, *, volume: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.volume = volume or {}

    @property
    def key(self) -> str:
        return f"{self.volume.get('namespace')}/{self.volume.get('pvc')}"

    def _unit(self, context: Any):
        from ys1000.restore.pipeline import volume_unit

        return volume_unit(
            self.kube(self.cluster),
            self.repository(self.repo_name),
            restore_id_for(context),
            self._volume_opts(context),
            repo_cfg=self._repo_config(),
        )

    def execute(self, context: Any) -> Any:
        self._check_args()
        with self._failures(context):
            v = self.volume
            return self._next(self._unit(context).begin(v["namespace"], v["pvc"], v["record"]))

    def resume(self, context: Any, event: dict) -> Any:
        self._check_args()
        with self._failures(context):
            if event.get("status") == "error":  # the trigger could not look: a retry looks again
                raise AirflowException(event.get("reason") or "the wait failed")
            return self._next(self._unit(context).resume(event["state"], event))

    def _next(self, step: Any) -> Any:
        from ys1000.volumes.steps import Done

        if isinstance(step, Done):
            self.log.info("PVC %s: %s", self.key, step.record)
            return step.record
        self.log.info(
            "PVC %s: waiting for %s (deferred to the triggerer; no worker slot held)", self.key, step.what.get("label")
        )
        return self.defer_step(step, self.cluster)

    def _failures(self, context: Any):
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                with engine_errors(f"PVC {self.key}"):
                    yield
            except Exception as exc:
                if isinstance(exc, AirflowFailException) or self.last_try(context):
                    context["ti"].xcom_push(
                        key="error",
                        value={
                            "namespace": self.volume.get("namespace"),
                            "pvc": self.volume.get("pvc"),
                            "error": str(exc),
                        },
                    )
                raise

        return guard()


class RestoreWorkloadsOperator(_RestoreRun):
    """The last part: what comes after the PVCs (workloads, custom resources, webhooks last), once
    the volume tasks are done — also when some failed: their PVCs are reported failed, with why.
    Fails (without retry) when any object or PVC failed, after logging each. XCom: the summary."""

    def execute(self, context: Any) -> dict:
        from ys1000.restore.pipeline import restore_workloads

        ti = context["ti"]
        first = ti.xcom_pull(task_ids="restore", key="summary")
        if first is None:
            raise AirflowFailException("the restore's first part did not complete in this run")
        if first.get("dry_run"):
            self.log.info("dry run: done in the first part")
            return first
        self._check_args()
        kube = self.kube(self.cluster)
        repo = self.repository(self.repo_name)
        spec = self.restore_spec(context, first["backup_id"])
        pending = ti.xcom_pull(task_ids="restore") or []
        if pending:  # the volume tasks are all done: nothing of theirs may still run (steps.sweep)
            from ys1000.volumes.steps import sweep

            for line in sweep(kube, [v["namespace"] for v in pending], [f"{context['dag_run'].run_id}/volumes"]):
                self.log.warning("removed %s left by a cancelled volume task", line)
        results = []
        for i, item in enumerate(pending):
            rec = ti.xcom_pull(task_ids="volumes", map_indexes=i)
            err = ti.xcom_pull(task_ids="volumes", key="error", map_indexes=i)
            results.append(
                rec
                or {
                    "namespace": item["namespace"],
                    "pvc": item["pvc"],
                    "status": "failed",
                    "reason": (err or {}).get("error") or "its volume task did not finish",
                }
            )
        try:
            with engine_errors(f"restore {spec.restore_id}"):
                report = restore_workloads(
                    kube,
                    repo,
                    spec,
                    results,
                    progress=self._progress_logger(f"restore {spec.restore_id}"),
                    cancel=self.cancel,
                )
        except InterruptedError as exc:
            raise Cancelled(
                f"restore {spec.restore_id} cancelled; objects it created carry the label "
                f"ys1000.io/restore={spec.restore_id}"
            ) from exc
        result = self._report(report, first["backup_id"])
        _raise_for(report)
        return result


def _raise_for(report) -> None:
    if report.failed_volumes:
        raise AirflowFailException(
            f"restore {report.restore_id}: the data of {len(report.failed_volumes)} PVC(s) was not restored: "
            + "; ".join(f"{v['namespace']}/{v['pvc']}: {v['reason']}" for v in report.failed_volumes)
        )
    if report.failed:
        raise AirflowFailException(
            f"restore {report.restore_id}: {len(report.failed)} of {len(report.items)} objects failed "
            f"(status {report.status}); each is listed above with its reason"
        )
