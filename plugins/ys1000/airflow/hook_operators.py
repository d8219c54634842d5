"""Operators for custom hooks and consistency protection, and the DAG wiring that adds them.

- ``RunHooksOperator(phase=...)``: the plan's hooks of one phase, in plan order, each as a Job in
  its cluster (``ys1000.hooks.custom``); every hook's output is copied into the task log. A hook
  still running after a few seconds is deferred: the triggerer waits for its Job (a
  ``VolumeWaitTrigger`` of ``kind: hook``) and the task resumes with the next hook. A hook
  with ``on_failure: fail`` that fails fails the task *without retry* (a hook may not be safe to
  repeat; re-run the task by hand after fixing it); ``continue`` logs the failure and goes on.
- ``QuiesceOperator``: quiesces each of the plan's ``consistency`` targets (a quiesce Job per
  database holding the lock, ``ys1000.hooks.consistency``); XCom: the handles. If one target
  cannot be quiesced the ones already held are resumed before the task fails; ``on_kill``
  resumes everything it holds.
- ``ResumeOperator`` (``trigger_rule=all_done``: it runs whatever happened to the capture):
  resumes every quiesce Job of this DAG run, found by label, so it needs no XCom and is safe to
  retry. A lock that ended by its hard maximum (``max_lock``) before this task is logged as a
  warning: that backup's data is crash-consistent only.

``chain_with_hooks`` inserts these tasks into a plan's DAG (used by ``dagfactory`` only when the
plan has hooks or consistency targets, so other plans keep their task list):

- backup: preflight → pre_backup_hooks → quiesce → capture → volumes → resume → post_backup_hooks
  → [wait → export →] verify → commit → retention; the task after ``resume`` also depends on
  ``volumes`` directly, so a failed capture still stops the run after the resume;
- restore plan: preflight → pre_restore_hooks → restore → post_restore_hooks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from itertools import pairwise
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowFailException

from ys1000.airflow.errors import Cancelled, engine_errors
from ys1000.airflow.operators import Ys1000Operator

if TYPE_CHECKING:
    from ys1000.config import BackupPlan, Plan

PHASE_TASKS = {
    "PreBackup": "pre_backup_hooks",
    "PostBackup": "post_backup_hooks",
    "PreRestore": "pre_restore_hooks",
    "PostRestore": "post_restore_hooks",
}
QUIESCE_TIMEOUT = timedelta(minutes=15)
#: How long a hook task looks at its Job before deferring the wait to the triggerer.
IN_PLACE_WAIT = 5.0
RESUME_TIMEOUT = timedelta(minutes=10)


def _cluster_of(plan: "Plan", role: str) -> str:
    """The cluster name behind a hook's ``source``/``target`` in this plan."""
    if plan.kind == "BackupPlan":
        return plan.cluster
    if plan.kind == "RestorePlan":
        return plan.target_cluster
    return plan.source_cluster if role == "source" else plan.target_cluster


def consistency_run_id(context: Any) -> str:
    """Labels the quiesce Jobs of one DAG run (shared by the quiesce and resume tasks)."""
    return f"{context['dag_run'].run_id}/consistency"


class _PlanHooksOperator(Ys1000Operator):
    ui_color = "#f3e5c0"
    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, plan: str, plan_kind: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.plan_kind = plan_kind  # plans of different kinds may share a name

    @cached_property
    def plan_obj(self) -> "Plan":
        from ys1000.config import ConfigError

        if self.plan_kind:
            for result in self._loaded[1].values():
                if not isinstance(result, ConfigError) and result.name == self.plan and result.kind == self.plan_kind:
                    return result
        plan = self.plan_named(self.plan)
        if self.plan_kind and plan.kind != self.plan_kind:
            raise AirflowFailException(f"plan {self.plan!r} is a {plan.kind}, not a {self.plan_kind}")
        return plan


class RunHooksOperator(_PlanHooksOperator):
    """Run the plan's custom hooks of ``phase`` in order and show their output in the task log."""

    template_fields: Sequence[str] = ("plan", "phase")
    _runner = None

    def __init__(self, *, phase: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = phase

    def execute(self, context: Any) -> list[dict]:
        plan = self.plan_obj
        if not self._hooks():
            self.log.info("plan %s has no %s hooks", plan.name, self.phase)
            return []
        return self._run_from(context, 0, [])

    def resume(self, context: Any, event: dict[str, Any] | None = None, **_: Any) -> list[dict]:
        """A hook's Job ended (or its wait did): its result, then the hooks after it."""
        from ys1000.hooks.custom import HookFailed

        state = (event or {}).get("state") or {}
        runner = self._make_runner(context)
        try:
            with engine_errors(f"hook {state.get('hook')}"):
                result = runner.finish(state, event or {"status": "error", "reason": "no event"})
        except HookFailed as exc:
            self._show(exc.result)
            raise AirflowFailException(str(exc)) from None
        self._show(result)
        return self._run_from(context, state["index"] + 1, [*state["results"], result.to_dict()])

    def _hooks(self) -> list:
        return [h for h in self.plan_obj.hooks if h.phase == self.phase]

    def _make_runner(self, context: Any):
        from ys1000.hooks.custom import HookRunner

        plan = self.plan_obj
        runner = HookRunner(
            lambda role: self.kube(_cluster_of(plan, role)),
            f"{context['dag_run'].run_id}/{self.task_id}",
            log_fn=self.log.info,
        )
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled(f"{self.phase} hooks cancelled")
            self._runner = runner
        return runner

    def _run_from(self, context: Any, index: int, results: list[dict]) -> list[dict]:
        """Hooks ``index``… in order. A hook that has not ended after ``IN_PLACE_WAIT`` seconds
        is deferred: the triggerer waits for its Job, no worker slot is held."""
        from ys1000.hooks.custom import HookFailed, HookResult
        from ys1000.volumes.steps import check

        hooks = self._hooks()
        runner = self._make_runner(context) if index < len(hooks) else None
        try:
            for i in range(index, len(hooks)):
                hook = hooks[i]
                assert runner is not None
                try:
                    with engine_errors(f"hook {hook.name}"):
                        step = runner.begin(hook)
                        if not isinstance(step, HookResult):
                            step.state.update(index=i, results=results)
                            event = self._wait_briefly(runner, step.what, check)
                            if event is None:
                                cluster = _cluster_of(self.plan_obj, step.what["cluster"])
                                self.defer_step(step, cluster)
                            step = runner.finish(step.state, event)
                except HookFailed as exc:
                    self._show(exc.result)
                    raise AirflowFailException(str(exc)) from None
                self._show(step)
                results = [*results, step.to_dict()]
        except InterruptedError as exc:
            raise Cancelled(f"{self.phase} hooks cancelled; their Jobs were deleted") from exc
        return results

    def _wait_briefly(self, runner, what: dict, check) -> dict | None:
        """Most hooks end within seconds: look a few times before handing the wait over."""
        deadline = time.monotonic() + IN_PLACE_WAIT
        kube = runner.kube_for(what["cluster"])
        while True:
            if self.cancel.is_set():
                raise InterruptedError("cancelled while the hook ran")
            event = check(kube, what)
            if event is not None or time.monotonic() >= deadline:
                return event
            time.sleep(0.5)

    def _show(self, result) -> None:
        out = result.output.rstrip() or "(no output)"
        self.log.info(
            "output of hook %s (%s, exit code %s):\n%s",
            result.name,
            "ok" if result.ok else "FAILED",
            result.exit_code,
            "\n".join(f"  | {line}" for line in out.splitlines()),
        )

    def cleanup(self) -> list[str]:
        """The hook Jobs (and ConfigMaps) this task started."""
        return [f"hook Job {name}" for name in self._runner.cancel_all()] if self._runner is not None else []


class QuiesceOperator(_PlanHooksOperator):
    """Quiesce the plan's databases (``consistency``) for the capture that follows."""

    _runner = None

    def _source_cluster(self) -> str:
        return _cluster_of(self.plan_obj, "source")

    def execute(self, context: Any) -> list[dict]:
        from ys1000.hooks.consistency import ConsistencyRunner

        plan = self.plan_obj
        cluster = self._source_cluster()
        runner = ConsistencyRunner(
            self.kube(cluster),
            consistency_run_id(context),
            image=self.cluster_spec(cluster).mover_image,
            log_fn=self.log.info,
        )
        with self._state_lock:
            if self.cancel.is_set():
                raise Cancelled("cancelled before quiescing")
            self._runner = runner
        handles = []
        try:
            for spec in cast("BackupPlan", plan).consistency:
                with engine_errors(f"consistency {spec.type} in {spec.namespace}"):
                    handles.append(runner.quiesce(spec).to_dict())
        except BaseException as exc:
            for r in runner.cancel_all() if handles else []:
                self.log.warning("resumed %s after the failure: %s", r.get("job"), _fmt_result(r))
            if isinstance(exc, InterruptedError):
                raise Cancelled("quiesce cancelled; every lock taken was released") from exc
            raise
        for h in handles:
            self.log.info(
                "holding %s at %s (Job %s/%s, hard maximum %ss)",
                h["type"],
                h["target"],
                h["namespace"],
                h["job"],
                h["quiesced"].get("max_lock"),
            )
        return handles

    def cleanup(self) -> list[str]:
        """Every lock this task holds is released (its quiesce Jobs resumed and removed)."""
        if self._runner is None:
            return []
        return [f"the lock of {r.get('job')} ({_fmt_result(r)})" for r in self._runner.cancel_all()]


class ResumeOperator(_PlanHooksOperator):
    """Resume every database this run quiesced (runs even when the capture failed)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)

    def execute(self, context: Any) -> list[dict]:
        from ys1000.hooks.consistency import ConsistencyRunner

        plan = self.plan_obj
        cluster = _cluster_of(plan, "source")
        runner = ConsistencyRunner(self.kube(cluster), consistency_run_id(context), log_fn=self.log.info)
        with engine_errors("resume"):
            results = runner.resume_run(cast("list[str]", [c.namespace for c in cast("BackupPlan", plan).consistency]))
        if not results:
            self.log.info("nothing to resume (no quiesce Job of this run is left)")
        for r in results:
            line = f"{r['type']} at {r['target']} (Job {r['namespace']}/{r['job']}): {_fmt_result(r)}"
            if r.get("ok") and r.get("released_by") == "signal":
                self.log.info("resumed %s", line)
            elif r.get("released_by") == "timeout":
                self.log.warning(
                    "%s — the lock ended by its hard maximum (max_lock) before the resume: "
                    "data copied after that moment is crash-consistent only; raise max_lock",
                    line,
                )
            else:
                self.log.warning("resume of %s did not confirm a clean release", line)
        return results


def _fmt_result(r: dict) -> str:
    parts = [f"released by {r.get('released_by')}"]
    if r.get("held_seconds") is not None:
        parts.append(f"held {r['held_seconds']}s")
    if r.get("error"):
        parts.append(f"error: {r['error']}")
    return ", ".join(parts)


# -- DAG wiring ------------------------------------------------------------------------------------


def _hooks_timeout(plan: "Plan", phase: str) -> timedelta:
    total = sum((h.timeout for h in plan.hooks if h.phase == phase), timedelta())
    return total + timedelta(minutes=5)


def chain_with_hooks(plan: "Plan", ops: list, config_dir: str) -> list:
    """Insert the hook/quiesce/resume tasks the plan needs into ``ops`` (a chain of the plan's
    tasks, created inside the DAG context) and set the dependencies. Returns the new chain."""
    common = {"plan": plan.name, "plan_kind": plan.kind, "config_dir": config_dir}
    phases = {h.phase for h in plan.hooks}
    ids = [op.task_id for op in ops]

    def hooks(phase: str) -> list:
        if phase not in phases:
            return []
        return [
            RunHooksOperator(
                task_id=PHASE_TASKS[phase], phase=phase, execution_timeout=_hooks_timeout(plan, phase), **common
            )
        ]

    consistency = getattr(plan, "consistency", None) or []
    out = list(ops)
    after_volumes = None
    if plan.kind == "BackupPlan":
        start = ids.index("capture")
        end = ids.index("volumes") + 1
        before = hooks("PreBackup")
        quiesce = (
            [QuiesceOperator(task_id="quiesce", execution_timeout=QUIESCE_TIMEOUT, **common)] if consistency else []
        )
        resume = [ResumeOperator(task_id="resume", execution_timeout=RESUME_TIMEOUT, **common)] if consistency else []
        after = hooks("PostBackup")
        out = [*ops[:start], *before, *quiesce, *ops[start:end], *resume, *after, *ops[end:]]
        if resume:
            after_volumes = end + len(before) + len(quiesce) + 1  # the task right after resume
    elif plan.kind == "RestorePlan":
        i = ids.index("restore")
        j = ids.index("workloads") if "workloads" in ids else i  # after the whole restore
        out = [*ops[:i], *hooks("PreRestore"), *ops[i : j + 1], *hooks("PostRestore"), *ops[j + 1 :]]
    for upstream, downstream in pairwise(out):
        upstream >> downstream
    if after_volumes is not None and after_volumes < len(out):
        # resume runs whatever happened (all_done); the rest of the run still needs the copy
        volumes = next(op for op in ops if op.task_id == "volumes")
        volumes >> out[after_volumes]
    return out
