"""A recorded human decision before a destructive step, with Airflow's human-in-the-loop tasks.

Three moments ask (each only when configured — ``approval: required`` on the plan, or
``restore_approval: required`` on the target cluster — and only when there is something to lose):

- ``approve_cutover`` (migration plans): after the last incremental sync, with the source still
  running, before anything is stopped. The request lists the workloads that will stop, the bytes
  the last sync moved, the target and the newest restore drill of these namespaces.
- ``approve`` (restore plans and the generic restore): before the restore, when it overwrites —
  ``existing_resource_policy: update``, or a target namespace that exists and is not empty.
- ``review`` (backup plans): after a backup the anomaly guard marked suspicious — "was this change
  expected?". Approve clears the mark; reject keeps it and pauses the plan's schedule.

Each is an ``ApprovalOperator`` (standard provider): the task waits in ``awaiting_input`` (no
worker slot, no triggerer) and is answered in the UI's Required Actions view or through the REST
API (``PATCH …/hitlDetails``) by one of the ``approvers`` (Airflow users; anyone allowed to edit
the DAG run when the list is empty). No answer by ``approval_timeout`` counts as a rejection.
The decision — who, when, the comment, what was asked — is stored in the repository
(``approvals/<id>.json``) before the run goes on; a rejection fails the task with who rejected
and why, and nothing destructive has run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ys1000.airflow.operators.backup import _BackupPlanOperator
from ys1000.airflow.operators.base import Ys1000Operator, restore_id_for
from ys1000.airflow.operators.restore import _RestoreBase
from ys1000.units import human_size

APPROVE, REJECT = ApprovalOperator.APPROVE, ApprovalOperator.REJECT


@dataclass
class Request:
    """What one approval asks: shown to the approver, stored with the decision."""

    subject: str
    body: str  # Markdown, rendered by the Required Actions view
    about: str  # the backup, restore or migration id the decision is about
    plan: str
    repository: str
    approvers: list[str] = field(default_factory=list)
    timeout: dt.timedelta = dt.timedelta(hours=24)
    summary: dict[str, Any] = field(default_factory=dict)


class _Approval(Ys1000Operator, ApprovalOperator):
    """``request`` says what to ask (None: nothing to approve, the task succeeds at once);
    ``rejected`` runs after a recorded rejection or timeout, before the task fails."""

    kind: ClassVar[str] = ""
    ui_color = "#f9e3a3"
    template_fields: Sequence[str] = ()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "ys1000: approval")
        given = kwargs.pop("params", None)
        # the form asks only the comment: the DAG's own params (merged in here) are not the approver's
        params: dict[str, Any] = {}
        if isinstance(given, ParamsDict):
            params = {k: given.get_param(k) for k in given if given.get_param(k).source != "dag"}
        elif given:
            params = dict(given)
        params["comment"] = Param("", type="string", title="Comment", description="why; recorded with your decision")
        # no answer in time is a rejection: nothing destructive runs
        super().__init__(defaults=REJECT, params=params, **kwargs)

    def request(self, context: Any) -> Request | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def rejected(self, context: Any, record: dict) -> str:
        """Do what a rejection implies; returns what the failure message adds."""
        return ""

    def execute(self, context: Any) -> Any:
        req = self.request(context)
        if req is None:
            return {"decision": "not required"}
        self.subject, self.body = req.subject, req.body
        self.assigned_users = [{"id": u, "name": u} for u in req.approvers] or None
        self.response_timeout = req.timeout
        asked = {
            "about": req.about,
            "plan": req.plan,
            "repository": req.repository,
            "subject": req.subject,
            "summary": req.summary,
            "approvers": req.approvers,
            "asked_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "timeout_seconds": req.timeout.total_seconds(),
        }
        context["ti"].xcom_push(key="request", value=asked)
        self.log.info(
            "%s — waiting for %s (until %s):\n%s",
            req.subject,
            ", ".join(req.approvers) or "any user allowed to edit this DAG run",
            (dt.datetime.now(dt.timezone.utc) + req.timeout).isoformat(timespec="seconds"),
            req.body,
        )
        # explicitly HITLOperator's (the request written, the task awaits input): in the MRO a
        # plan operator's own execute may come first
        return HITLOperator.execute(self, context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.providers.standard.exceptions import HITLTimeoutError

        ti = context["ti"]
        asked = ti.xcom_pull(task_ids=self.task_id, key="request") or {}
        now = dt.datetime.now(dt.timezone.utc)
        try:
            # not ApprovalOperator.execute_complete: a rejection is handled here (recorded, then failed)
            answer = HITLOperator.execute_complete(self, context, event)
            user = answer.get("responded_by_user")
            chosen = answer.get("chosen_options") or []
            when = answer.get("responded_at") or now
            comment = str((answer.get("params_input") or {}).get("comment") or "")
            timed_out = bool(event.get("timedout")) or user is None
        except HITLTimeoutError:
            user, chosen, when, comment, timed_out = None, [], now, "", True
        decision = "timed_out" if timed_out else ("approved" if chosen == [APPROVE] else "rejected")
        by = (user.get("name") or user.get("id")) if isinstance(user, dict) else (str(user) if user else None)
        at = when if isinstance(when, dt.datetime) else now
        about = asked.get("about") or ti.run_id
        record = {
            "approval_id": f"{at:%Y%m%d%H%M%S}-{self.kind}-{about}"[:250],
            "kind": self.kind,
            "plan": asked.get("plan"),
            "about": about,
            "subject": about,
            "decision": decision,
            "by": by,
            "at": at.isoformat(),
            "comment": comment,
            "question": asked.get("subject"),
            "summary": asked.get("summary") or {},
            "approvers": asked.get("approvers") or [],
            "asked_at": asked.get("asked_at"),
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": self.task_id,
        }
        if asked.get("repository"):
            key = self.repository(asked["repository"]).save_approval(record)
            self.log.info("decision recorded in the repository: %s", key)
        ti.xcom_push(key="decision", value=record)
        if decision == "approved":
            self.log.info("approved by %s%s", by, f": {comment}" if comment else "")
            return record
        extra = self.rejected(context, record)
        if decision == "timed_out":
            why = f"no answer within {dt.timedelta(seconds=int(asked.get('timeout_seconds') or 0))}"
        else:
            why = f"rejected by {by} at {at:%Y-%m-%d %H:%M:%S} UTC" + (f": {comment}" if comment else "")
        raise AirflowFailException(f"{asked.get('subject') or self.task_id}: {why}. {extra}".strip())


def _approvers(*lists: Sequence[str]) -> list[str]:
    out: list[str] = []
    for users in lists:
        out += [u for u in users if u not in out]
    return out


# -- migration cutover -----------------------------------------------------------------------------


def cutover_approval_operator():
    """Built on first use: the migration operators import this module's neighbours."""
    from ys1000.airflow.migration import _MigrationOperator

    class CutoverApprovalOperator(_Approval, _MigrationOperator):
        """Before the cutover (the source still running, the last incremental sync done)."""

        kind: ClassVar[str] = "cutover"
        template_fields: Sequence[str] = (*_MigrationOperator.template_fields,)

        def request(self, context: Any) -> Request | None:
            if self.mode != "cutover":
                raise AirflowSkipException(f"mode {self.mode}: approval is asked before a cutover")
            from ys1000.migration import cutover_preview

            plan = self.plan_obj
            spec = self.spec()
            ti = context["ti"]
            namespaces = ti.xcom_pull(task_ids="preflight") or []
            sync = ti.xcom_pull(task_ids="presync_commit") or {}
            stops = cutover_preview(self.kube(plan.source_cluster), namespaces) if self.stopping else []
            repo = self.repository(plan.repository)
            drill = last_drill(repo, namespaces)
            _, restore_id = self.ids(context)
            lines = [
                f"**Cutover of migration plan `{plan.name}`**: cluster `{plan.source_cluster}` → "
                f"`{plan.target_cluster}`",
                "",
                "| source namespace | target namespace |",
                "|---|---|",
                *(f"| `{ns}` | `{spec.target_ns(ns)}` |" for ns in namespaces),
                "",
            ]
            if self.stopping:
                lines += [
                    "**Stopped in the source** (the values before are recorded; a failed cutover puts them back):",
                    "",
                ]
                lines += [f"- `{s['namespace']}` {s['kind']} `{s['name']}`: {s['now']} → {s['stopped']}" for s in stops]
                lines += ["- (nothing runs there)"] if not stops else []
            else:
                lines += ["**stop_source is false**: the source keeps running (a crash-consistent copy)."]
            vols = sync.get("volumes") or []
            lines += [
                "",
                f"**Last incremental sync** `{sync.get('backup_id', '?')}` (just now, source running): "
                f"{human_size(sync.get('bytes_sent'), missing='?')} changed since the sync before, "
                f"{len(vols)} PVC(s). The final sync after the stop sends what changes until then.",
                "",
                "**Newest restore drill of these namespaces**: "
                + (
                    f"{drill['state']} — backup `{drill['backup_id']}`"
                    + (f", RTO {drill['rto_seconds']:.0f} s" if drill.get("rto_seconds") is not None else "")
                    + (f" ({drill['reason']})" if drill.get("reason") else "")
                    if drill
                    else "none"
                ),
                "",
                f"**Approve**: stop the source and start the app in `{plan.target_cluster}`. **Reject**, or no "
                f"answer within {plan.approval_timeout}: the source keeps running, untouched.",
            ]
            return Request(
                subject=f"Cut over {plan.name}: {plan.source_cluster} → {plan.target_cluster}?",
                body="\n".join(lines),
                about=restore_id,
                plan=plan.name,
                repository=plan.repository,
                approvers=list(plan.approvers),
                timeout=plan.approval_timeout,
                summary={
                    "source_cluster": plan.source_cluster,
                    "target_cluster": plan.target_cluster,
                    "namespaces": {ns: spec.target_ns(ns) for ns in namespaces},
                    "stop_source": self.stopping,
                    "will_stop": stops,
                    "last_sync": {k: sync.get(k) for k in ("backup_id", "bytes_sent")},
                    "last_drill": drill,
                },
            )

        def rejected(self, context: Any, record: dict) -> str:
            return "Nothing was stopped: the source keeps running as it was."

    return CutoverApprovalOperator


def last_drill(repo: Any, namespaces: Sequence[str]) -> dict | None:
    """The newest restore drill of a backup holding any of ``namespaces`` (any plan)."""
    wanted = set(namespaces)
    for entry in repo.list_backups():  # newest first
        if entry.drill and wanted & set(entry.namespaces):
            return {"backup_id": entry.backup_id, **entry.drill}
    return None


# -- restore ---------------------------------------------------------------------------------------

_CONTENT_KINDS = (
    ("apps", "v1", "deployments", "Deployment"),
    ("apps", "v1", "statefulsets", "StatefulSet"),
    ("apps", "v1", "daemonsets", "DaemonSet"),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("", "v1", "services", "Service"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("", "v1", "secrets", "Secret"),
    ("batch", "v1", "cronjobs", "CronJob"),
)
_DEFAULTS = {("ConfigMap", "kube-root-ca.crt")}


def namespace_contents(kube: Any, namespace: str) -> dict[str, int] | None:
    """Kind → count of what an application keeps in ``namespace`` (None: no such namespace).
    What every namespace gets by itself (kube-root-ca.crt, token Secrets) is not counted."""
    from ys1000.kube.client import ResourceType
    from ys1000.kube.discovery import NAMESPACES

    if kube.get_or_none(NAMESPACES.path(name=namespace)) is None:
        return None
    counts: dict[str, int] = {}
    for group, version, plural, kind in _CONTENT_KINDS:
        rt = ResourceType(group, version, plural, kind, True, frozenset({"list"}))
        n = sum(
            1
            for o in kube.list(rt, namespace)
            if (kind, o["metadata"]["name"]) not in _DEFAULTS and o.get("type") != "kubernetes.io/service-account-token"
        )
        if n:
            counts[kind] = n
    return counts


class RestoreApprovalOperator(_Approval, _RestoreBase):
    """Before a restore that overwrites (``existing: update``, or into a namespace that exists and
    is not empty), when the restore plan or the target cluster asks for approval."""

    kind: ClassVar[str] = "restore"
    template_fields: Sequence[str] = (*_RestoreBase.template_fields,)

    def request(self, context: Any) -> Request | None:
        from ys1000.config import RestorePlan

        self._check_args()
        cluster = self.cluster_spec(self.cluster)
        plan = self.plan_named(self.restore_plan) if self.restore_plan else None
        wanted = [p for p in (plan, cluster) if p is not None and _asks(p)]
        if not wanted:
            self.log.info("no approval asked: neither the plan nor cluster %s requires one", self.cluster)
            return None
        bid = str(self.backup)
        repo = self.repository(self.repo_name)
        m = repo.manifest(bid)
        sources = [ns for ns in m.namespaces if not self.namespaces or ns in self.namespaces]
        kube = self.kube(self.cluster)
        targets = {ns: self.namespace_mapping.get(ns, ns) for ns in sources}
        present = {t: namespace_contents(kube, t) for t in targets.values()}
        occupied = {t: c for t, c in present.items() if c}
        update = self.existing_resource_policy == "update"
        if not update and not occupied:
            self.log.info(
                "no approval needed: existing objects are kept (%s) and every target namespace is empty or new",
                self.existing_resource_policy,
            )
            return None
        restore_id = restore_id_for(context)
        lines = [
            f"**Restore of backup `{bid}`** (plan `{m.plan}`, taken {m.created:%Y-%m-%d %H:%M} UTC, "
            f"{m.total} objects, {len(m.volumes)} PVC(s)) into cluster `{self.cluster}`",
            "",
            "| backup namespace | target namespace | in the target now |",
            "|---|---|---|",
        ]
        for src, tgt in targets.items():
            c = present[tgt]
            now = "does not exist" if c is None else (", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "empty")
            lines.append(f"| `{src}` | `{tgt}` | {now} |")
        lines += [
            "",
            f"**Existing objects**: `{self.existing_resource_policy}`"
            + (
                " — objects present in the target are **overwritten** with the backup's version."
                if update
                else " — objects present are kept; what the backup adds lands next to the application running there."
            ),
            "",
            "**Approve**: restore now. **Reject**, or no answer in time: nothing is written.",
        ]
        approvers = _approvers(*(w.approvers for w in wanted))
        timeout = min(w.approval_timeout for w in wanted)
        return Request(
            subject=f"Restore {bid} into {self.cluster} ({', '.join(targets.values())}), overwriting?",
            body="\n".join(lines),
            about=restore_id,
            plan=self.restore_plan if isinstance(plan, RestorePlan) and self.restore_plan else m.plan,
            repository=self.repo_name,
            approvers=approvers,
            timeout=timeout,
            summary={
                "backup_id": bid,
                "target_cluster": self.cluster,
                "namespaces": targets,
                "existing_resource_policy": self.existing_resource_policy,
                "target_now": present,
            },
        )

    def rejected(self, context: Any, record: dict) -> str:
        return "Nothing was restored."


def _asks(obj: Any) -> bool:
    return getattr(obj, "approval", None) == "required" or getattr(obj, "restore_approval", None) == "required"


# -- suspicious backup -----------------------------------------------------------------------------


class BackupReviewOperator(_Approval, _BackupPlanOperator):
    """After a backup the anomaly guard marked suspicious, on plans with ``approval: required``:
    "this change was expected?" Approve clears the mark; reject keeps it and pauses the plan's
    schedule (through the Airflow REST API) until someone resumes it."""

    kind: ClassVar[str] = "anomaly"
    template_fields: Sequence[str] = ("plan",)

    def request(self, context: Any) -> Request | None:
        p = self.plan_obj
        summary = context["ti"].xcom_pull(task_ids="commit") or {}
        anomaly = summary.get("anomaly") or {}
        if not anomaly.get("suspicious"):
            self.log.info("backup %s is not suspicious: nothing to review", summary.get("backup_id"))
            return None
        if p.approval != "required":
            self.log.info(
                "backup %s is suspicious; plan %s asks no review (approval: none)", summary.get("backup_id"), p.name
            )
            return None
        bid = summary["backup_id"]
        reasons = anomaly.get("reasons") or []
        body = "\n".join(
            [
                f"**Backup `{bid}` of plan `{p.name}` looks unlike this plan's earlier backups:**",
                "",
                *(f"- {r}" for r in reasons),
                "",
                "It is committed but marked **suspicious**: retention keeps the newest clean backup, and "
                "`latest` in restores and drills skips this one.",
                "",
                "**Approve** if this change was expected (the mark is cleared). **Reject** if it was not: "
                f"the mark stays and the schedule of `{self.dag_id}` is paused until someone resumes it.",
            ]
        )
        return Request(
            subject=f"Backup {bid} of {p.name} is suspicious: was this change expected?",
            body=body,
            about=bid,
            plan=p.name,
            repository=p.repository,
            approvers=list(p.approvers),
            timeout=p.approval_timeout,
            summary={"backup_id": bid, "reasons": reasons},
        )

    def rejected(self, context: Any, record: dict) -> str:
        from ys1000.notify.airflow_api import AirflowApiClient
        from ys1000.notify.config import load_reports_config

        dag_id = context["ti"].dag_id
        try:
            api = AirflowApiClient.from_connection(
                load_reports_config(self.config.config_dir).airflow_api.connection_id
            )
            api.pause_dag(dag_id)
        except Exception as exc:
            self.log.error("could not pause %s: %s", dag_id, exc)
            return f"The backup stays suspicious. Pausing {dag_id} FAILED ({exc}): pause it by hand."
        self.log.warning("paused %s: unpause it (UI or `airflow dags unpause`) to resume backups", dag_id)
        return f"The backup stays suspicious; {dag_id} is paused until someone resumes it."
