"""Report texts from plain data (no Airflow): the daily job summary and the failure alert.

Inputs are ``JobRecord``/``FailureInfo`` values (what the Airflow side collects from the REST API
or a task's context); outputs are ``Message`` values with a subject, a plain-text body (e-mail)
and a Markdown body (Work WeChat robots render a subset of Markdown: headings, bold, links,
``<font color=...>``; a markdown message is at most 4096 bytes, so long lists are cut).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from ys1000.units import human_size

WECOM_MARKDOWN_LIMIT = 4096  # bytes, UTF-8
MAX_LISTED_FAILURES = 20

KINDS = {
    "backup": "backup",
    "restore": "restore",
    "migrate": "migration",
    "report": "report",
    "self_backup": "self-backup",
}


def kind_of(dag_id: str) -> str:
    """``ys1000_backup__plan`` → backup; ``ys1000_restore`` → restore; ``ys1000_self_backup`` → self-backup."""
    rest = dag_id[len("ys1000_") :] if dag_id.startswith("ys1000_") else dag_id
    head = rest.split("__", 1)[0]
    return KINDS.get(head, head or "other")


def plan_of(dag_id: str) -> str | None:
    return dag_id.split("__", 1)[1] if "__" in dag_id else None


@dataclass
class JobRecord:
    """One job (a DAG run of a ys1000 DAG) as the report sees it."""

    dag_id: str
    run_id: str
    state: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    failed_tasks: list[str] = field(default_factory=list)
    reason: str | None = None  # the failure reason (exception text or log tail), if known
    backup: dict[str, Any] | None = None  # the commit task's XCom summary (backup id, sizes, counts)
    url: str | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.dag_id)

    @property
    def plan(self) -> str | None:
        return plan_of(self.dag_id)

    @property
    def duration(self) -> dt.timedelta | None:
        if self.start and self.end:
            return self.end - self.start
        return None


@dataclass
class FailureInfo:
    """A failed task of a job (from a failure callback's context)."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int | None = None
    reason: str | None = None
    when: dt.datetime | None = None
    log_url: str | None = None


@dataclass
class Message:
    subject: str
    text: str
    markdown: str


def human_duration(td: dt.timedelta | None) -> str:
    if td is None:
        return "-"
    s = int(round(td.total_seconds()))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


def _local(when: dt.datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else "-"


def one_line(text: str | None, limit: int = 300) -> str:
    """A reason on one line, cut to ``limit`` characters."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def daily_summary(
    jobs: Iterable[JobRecord],
    *,
    since: dt.datetime,
    until: dt.datetime,
    timezone: str = "UTC",
    product: str = "YS1000",
    objectives: list[dict] | None = None,
    approvals: list[dict] | None = None,
) -> Message:
    """The daily report: counts per kind and state, failures with reasons, backups with sizes
    and durations, each plan's recovery objectives (``ys1000.objectives.plan_objectives``) and
    the human decisions taken in the window (approval records, oldest first; an entry with an
    ``error`` is a repository whose decisions could not be read)."""
    tz = ZoneInfo(timezone)
    jobs = sorted(jobs, key=lambda j: (j.start or j.end or until, j.dag_id, j.run_id))
    counts: Counter[tuple[str, str]] = Counter((j.kind, j.state) for j in jobs)
    kinds = sorted({k for k, _ in counts})
    states = ["success", "failed", "running", "queued"]
    states += sorted({s for _, s in counts} - set(states))
    failed = [j for j in jobs if j.state == "failed"]
    backups = [j for j in jobs if j.kind == "backup" and j.backup]
    total_bytes = sum(int((j.backup or {}).get("archive_bytes") or 0) for j in backups)  # all have one
    window = f"{_local(since, tz)} – {_local(until, tz)} ({timezone})"
    subject = f"{product} daily report {until.astimezone(tz):%Y-%m-%d}: {len(jobs)} jobs, {len(failed)} failed"

    # -- text
    t: list[str] = [f"{product} job report for {window}", ""]
    if not jobs:
        t.append("No jobs ran in this period.")
    else:
        t.append(
            f"Jobs: {len(jobs)} ("
            + ", ".join(
                f"{s} {sum(c for (k, st), c in counts.items() if st == s)}"
                for s in states
                if any(st == s for _, st in counts)
            )
            + ")"
        )
        for k in kinds:
            t.append(f"  {k}: " + ", ".join(f"{s} {counts[(k, s)]}" for s in states if counts[(k, s)]))
    if failed:
        t += ["", f"Failures ({len(failed)}):"]
        for j in failed[:MAX_LISTED_FAILURES]:
            where = f" task {', '.join(j.failed_tasks)}" if j.failed_tasks else ""
            t.append(
                f"  - {j.dag_id} run {j.run_id} ({_local(j.start, tz)}){where}: "
                f"{one_line(j.reason) or 'failed (no reason recorded)'}"
            )
            if j.url:
                t.append(f"    {j.url}")
        if len(failed) > MAX_LISTED_FAILURES:
            t.append(f"  ... and {len(failed) - MAX_LISTED_FAILURES} more")
    if backups:
        t += ["", f"Backups ({len(backups)}, {human_size(total_bytes)} in total):"]
        for j in backups:
            b = j.backup or {}
            t.append(
                f"  - {b.get('backup_id', j.run_id)} (plan {b.get('plan') or j.plan}, cluster "
                f"{b.get('cluster', '-')}): {b.get('status', j.state)}, {b.get('objects', '-')} objects, "
                f"archive {human_size(b.get('archive_bytes'))}, volumes {b.get('volumes', 0)}, "
                f"took {human_duration(j.duration)}"
            )
    others = [j for j in jobs if j.state not in ("failed",) and not (j.kind == "backup" and j.backup)]
    if others:
        t += ["", "Other jobs:"]
        for j in others:
            t.append(
                f"  - {j.dag_id} run {j.run_id}: {j.state}, started {_local(j.start, tz)}, "
                f"took {human_duration(j.duration)}"
            )

    compliance = [objective_line(o) for o in objectives or []]
    if compliance:
        t += ["", "Recovery objectives:"] + [f"  - {line}" for line in compliance]

    decisions = [a for a in approvals or [] if not a.get("error")]
    unread = [a for a in approvals or [] if a.get("error")]
    if decisions or unread:
        t += ["", f"Decisions ({len(decisions)}):"]
        for a in decisions:
            t.append(f"  - {decision_line(a, tz)}")
            if a.get("comment"):
                t.append(f"    comment: {one_line(a['comment'], 500)}")
        t += [f"  - repository {a.get('repository')}: decisions not readable: {a['error']}" for a in unread]

    # -- markdown (Work WeChat)
    md: list[str] = [f"## {product} 作业日报 / daily report", f"> {window}", ""]
    if not jobs:
        md.append("No jobs ran in this period.")
    else:
        ok = sum(c for (k, s), c in counts.items() if s == "success")
        md.append(
            f'**Jobs**: {len(jobs)}  <font color="info">success {ok}</font>  '
            f'<font color="warning">failed {len(failed)}</font>'
        )
        for k in kinds:
            md.append(f"- {k}: " + ", ".join(f"{s} {counts[(k, s)]}" for s in states if counts[(k, s)]))
    if failed:
        md += ["", f"**Failures** ({len(failed)})"]
        for j in failed[:MAX_LISTED_FAILURES]:
            name = f"[{j.dag_id}]({j.url})" if j.url else j.dag_id
            md.append(
                f'- {name} {_local(j.start, tz)}: <font color="warning">{one_line(j.reason, 200) or "failed"}</font>'
            )
    if backups:
        md += ["", f"**Backups** ({len(backups)}, {human_size(total_bytes)})"]
        for j in backups:
            b = j.backup or {}
            md.append(
                f"- {b.get('backup_id', j.run_id)}: {human_size(b.get('archive_bytes'))}, "
                f"{b.get('objects', '-')} objects, {human_duration(j.duration)}"
            )
    if compliance:
        md += ["", "**Recovery objectives**"] + [f"- {line}" for line in compliance]
    if decisions or unread:
        md += ["", f"**Decisions** ({len(decisions)})"]
        for a in decisions:
            color = "info" if a.get("decision") == "approved" else "warning"
            label = DECISION_LABELS.get(a.get("decision") or "", a.get("decision") or "?")
            by = f" by {_md(a['by'])}" if a.get("by") else ""
            comment = f": {_md(one_line(a['comment'], 200))}" if a.get("comment") else ""
            md.append(
                f"- {_local(_when(a), tz)} {a.get('kind')} {_md(a.get('plan') or '-')} "
                f'`{_md(_about(a))}`: <font color="{color}">{label}</font>{by}{comment}'
            )
        md += [f"- repository {a.get('repository')}: decisions not readable" for a in unread]
    return Message(subject, "\n".join(t) + "\n", fit_markdown("\n".join(md)))


DECISION_LABELS = {"approved": "approved", "rejected": "rejected", "timed_out": "timed out (no answer)"}


def _when(a: dict) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(a.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _about(a: dict) -> str:
    return str(a.get("about") or a.get("subject") or "-")


def _md(text: str) -> str:
    """User text inside Work WeChat Markdown: no markup of its own (tags, code spans)."""
    return text.replace("<", "‹").replace(">", "›").replace("`", "'")


def decision_line(a: dict, tz: ZoneInfo) -> str:
    """``2025-03-01 08:30 restore of plan shop, restore-…: approved by alice``."""
    label = DECISION_LABELS.get(a.get("decision") or "", a.get("decision") or "?")
    plan = f" of plan {a['plan']}" if a.get("plan") else ""
    by = f" by {a['by']}" if a.get("by") else ""
    return f"{_local(_when(a), tz)} {a.get('kind')}{plan}, {_about(a)}: {label}{by}"


def objective_line(o: dict) -> str:
    """``plan shop: RPO 6h breached (last backup 7h ago); RTO 15m ok (drill 42s)``."""
    parts = []
    if o.get("error"):
        return f"plan {o['plan']}: cannot read its repository: {o['error']}"
    if o.get("rpo_state"):
        age = o.get("age_seconds")
        last = f"last backup {human_duration(dt.timedelta(seconds=age))} ago" if age is not None else "no backup"
        parts.append(f"RPO {human_duration(dt.timedelta(seconds=o['rpo_seconds']))} {o['rpo_state']} ({last})")
    drill = o.get("last_drill") or {}
    if o.get("rto_seconds") is not None:
        state = o.get("rto_state") or "not measured"
        measured = f" (drill {drill['rto_seconds']:.0f}s)" if drill.get("rto_seconds") is not None else ""
        parts.append(f"RTO {human_duration(dt.timedelta(seconds=o['rto_seconds']))} {state}{measured}")
    if drill:
        parts.append(f"last drill {drill.get('state')} of {drill.get('backup_id')}")
    return f"plan {o['plan']}: " + ("; ".join(parts) or "no objectives")


def failure_alert(info: FailureInfo, *, timezone: str = "UTC", product: str = "YS1000") -> Message:
    """The alert sent when a job's task fails for good (retries exhausted)."""
    tz = ZoneInfo(timezone)
    kind = kind_of(info.dag_id)
    plan = plan_of(info.dag_id)
    what = f"{kind} job" + (f" of plan {plan}" if plan else "")
    subject = f"{product} {what} failed: {info.dag_id} / {info.task_id}"
    reason = (info.reason or "").strip() or "no reason recorded"
    when = _local(info.when, tz) if info.when else "-"
    lines = [
        f"The {what} failed.",
        "",
        f"DAG:     {info.dag_id}",
        f"Run:     {info.run_id}",
        f"Task:    {info.task_id}" + (f" (try {info.try_number})" if info.try_number else ""),
        f"When:    {when} ({timezone})",
        "",
        "Reason:",
        reason[:4000],
    ]
    if info.log_url:
        lines += ["", f"Log: {info.log_url}"]
    md = [
        f'## <font color="warning">{product} {what} failed</font>',
        f"> DAG: {info.dag_id}",
        f"> Run: {info.run_id}",
        f"> Task: {info.task_id}",
        f"> When: {when} ({timezone})",
        "",
        f"**Reason**: {one_line(reason, 1000)}",
    ]
    if info.log_url:
        md.append(f"[log]({info.log_url})")
    return Message(subject, "\n".join(lines) + "\n", fit_markdown("\n".join(md)))


def fit_markdown(text: str, limit: int = WECOM_MARKDOWN_LIMIT) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes at a line boundary (WeChat's limit)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    tail = "\n…(truncated)"
    budget = limit - len(tail.encode())
    out: list[str] = []
    used = 0
    for line in text.split("\n"):
        n = len(line.encode()) + 1
        if used + n > budget:
            break
        out.append(line)
        used += n
    return "\n".join(out) + tail


def wecom_payload(
    message: Message, msgtype: str = "markdown", mentioned_mobile_list: list[str] | None = None
) -> dict[str, Any]:
    """The JSON body of a Work WeChat group-robot webhook POST."""
    if msgtype == "markdown":
        return {"msgtype": "markdown", "markdown": {"content": message.markdown}}
    content = f"{message.subject}\n\n{message.text}"
    body: dict[str, Any] = {"content": fit_markdown(content, 2048)}
    if mentioned_mobile_list:
        body["mentioned_mobile_list"] = list(mentioned_mobile_list)
    return {"msgtype": "text", "text": body}
