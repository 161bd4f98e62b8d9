"""``clickstream doctor``: is anything keeping this project's runs from happening?

The decisions are pure (``diagnose``): the API is read once by ``read_health_input`` into the
dataclasses below, and ``diagnose`` turns them into ok lines and problems. What it checks:

- **the scheduler keeps runs ahead.** Prefect's scheduler service
  (``prefect/server/services/scheduler.py``) keeps, for every active schedule of an unpaused
  deployment, at least ``min_runs`` auto-scheduled future runs *and* its latest one at least
  ``min_scheduled_time`` ahead, re-checking every ``loop_seconds``. In 3.8.8 every run it
  creates has ``auto_scheduled=True`` and ``created_by = {"type": "SCHEDULE", "id": <schedule
  id>}``, and the service counts runs per schedule by that id; so does this check. A schedule
  short of either minimum for longer than one loop (+ 60 s margin) means the scheduler is not
  running. A dead scheduler that had pre-created runs still shows upcoming runs: the count and
  the horizon shrink as they are used up, which is what this catches.
- **late runs**: Scheduled runs of our flows named ``Late`` (Prefect's late-runs service) or
  whose scheduled time is more than ``late_after`` in the past (nobody picked them up).
- **a live worker** in the work pool: one whose last heartbeat is recent. A worker's ONLINE
  status is not enough: only the server's foreman service sets it back to OFFLINE, and it runs
  in the same services process as the scheduler.
- **the dbt-global limit** exists and is active (store runs acquire it with ``strict=True``:
  without it every store run fails).
- **paused store schedules**, and who paused them: the ledger's ``schedule_pauses`` rows name
  the orchestrator run; a pause with no row was made by a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from clickstream.core.health_model import (
    DEFAULT_LATE_AFTER,
    DEFAULT_WORKER_ALIVE_WITHIN,
    MAX_LATE_LISTED,
    SCHEDULER_MARGIN,
    TERMINAL_STATES,
    DeploymentInfo,
    HealthInput,
    LimitInfo,
    OwnerRun,
    PauseRecord,
    Problem,
    Report,
    RunInfo,
    ScheduleInfo,
    ScheduleRow,
    SchedulerSettings,
    WorkerInfo,
)

__all__ = [
    "SCHEDULER_MARGIN",
    "DEFAULT_LATE_AFTER",
    "DEFAULT_WORKER_ALIVE_WITHIN",
    "MAX_LATE_LISTED",
    "TERMINAL_STATES",
    "SchedulerSettings",
    "ScheduleInfo",
    "DeploymentInfo",
    "RunInfo",
    "WorkerInfo",
    "LimitInfo",
    "PauseRecord",
    "OwnerRun",
    "HealthInput",
    "Problem",
    "ScheduleRow",
    "Report",
    "diagnose",
]


def _fmt(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "none"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _local(ts: datetime | None, tz: str | None) -> str | None:
    if ts is None or not tz:
        return None
    try:
        return ts.astimezone(ZoneInfo(tz)).strftime(f"%Y-%m-%d %H:%M {tz}")
    except (KeyError, ValueError):  # unknown zone: the UTC column still says it
        return None


def _kept_runs(
    runs: Iterable[RunInfo],
    dep: DeploymentInfo,
    sched: ScheduleInfo,
    now: datetime,
    grace: timedelta,
) -> list[datetime]:
    """Due times of the schedule's slots the scheduler considers filled.

    The scheduler creates the runs of a schedule's next slots and never a second run for a
    slot (its idempotency key names the slot), whatever state the first one is in: a run the
    worker picked up early (Pending, due in a few seconds), or one an operator brought forward
    and that has ended, still fills its future slot. So a slot counts when a run of the
    schedule was created for it at or after now, in any state; and runs due within the last
    ``grace`` count too, since the scheduler tops up only once a loop: otherwise every run
    start would look like a dead scheduler for a minute.
    """
    out: list[datetime] = []
    for r in runs:
        if r.deployment_id != dep.id or not r.auto_scheduled or r.schedule_id != sched.id:
            continue
        due = r.slot_time or r.scheduled_time or r.expected_start_time
        if due is not None and due >= now - grace:
            out.append(due)
    return sorted(out)


def _next_run(runs: Iterable[RunInfo], dep: DeploymentInfo, now: datetime) -> dict[str, datetime]:
    """Earliest upcoming Scheduled run per schedule id ('' = runs no schedule created)."""
    out: dict[str, datetime] = {}
    for r in runs:
        if r.deployment_id != dep.id or r.state_type != "SCHEDULED" or r.state_name == "Late":
            continue
        due = r.scheduled_time or r.expected_start_time
        if due is None or due < now:
            continue
        key = r.schedule_id or ""
        if key not in out or due < out[key]:
            out[key] = due
    return out


def _check_schedules(inp: HealthInput, report: Report) -> None:
    s = inp.scheduler
    grace = s.grace
    for dep in inp.deployments:
        upcoming = _next_run(inp.runs, dep, inp.now)
        if not dep.schedules:
            report.ok.append(f"{dep.name}: no schedule (runs only when triggered)")
        for sched in dep.schedules:
            kept = _kept_runs(inp.runs, dep, sched, inp.now, grace)
            latest = kept[-1] if kept else None
            nxt = upcoming.get(sched.id)
            note = "ok"
            if dep.paused:
                note = "deployment paused"
            elif not sched.active:
                note = "schedule inactive"
            else:
                short_count = len(kept) < s.min_runs
                horizon = inp.now + s.min_scheduled_time - grace
                short_time = latest is None or latest < horizon
                if short_count or short_time:
                    why = []
                    if short_count:
                        why.append(
                            f"{len(kept)} future auto-scheduled run(s), fewer than {s.min_runs}"
                        )
                    if short_time:
                        why.append(
                            f"latest {_fmt(latest)}, earlier than now + "
                            f"{s.min_scheduled_time} - {grace}"
                        )
                    note = "not kept ahead"
                    report.problems.append(
                        Problem(
                            "scheduler",
                            f"the scheduler is not keeping runs ahead: it may be dead. "
                            f"{dep.name} schedule {sched.label} (id {sched.id}): {'; '.join(why)}",
                        )
                    )
            report.schedules.append(
                ScheduleRow(
                    deployment=dep.name,
                    schedule=sched.label,
                    active=sched.active and not dep.paused,
                    next_run=nxt,
                    next_run_local=_local(nxt, dep.timezone),
                    kept_runs=len(kept),
                    latest=latest,
                    note=note,
                )
            )
    active = [r for r in report.schedules if r.active]
    if active and not any(p.kind == "scheduler" for p in report.problems):
        report.ok.append(
            f"scheduler: {len(active)} active schedule(s) each kept >= {s.min_runs} runs and "
            f"{s.min_scheduled_time} ahead"
        )


def _check_late(inp: HealthInput, report: Report) -> None:
    names = {d.id: d.name for d in inp.deployments}
    late: list[tuple[datetime, RunInfo]] = []
    for r in inp.runs:
        if r.state_type != "SCHEDULED":
            continue
        due = r.scheduled_time or r.expected_start_time
        overdue = due is not None and inp.now - due > inp.late_after
        if r.state_name == "Late" or overdue:
            late.append((due or inp.now, r))
    late.sort(key=lambda pair: pair[0])
    for due, r in late[:MAX_LATE_LISTED]:
        where = names.get(r.deployment_id or "", "no deployment")
        report.problems.append(
            Problem(
                "late",
                f"late run {r.name} ({r.id}) of {where}: {r.state_name}, due {_fmt(due)} "
                f"({_ago(inp.now - due)} ago) and not started: is a worker polling "
                f"{inp.pool}?",
            )
        )
    if len(late) > MAX_LATE_LISTED:
        report.problems.append(
            Problem("late", f"... and {len(late) - MAX_LATE_LISTED} more late run(s)")
        )
    if not late:
        report.ok.append(f"no late runs (none Late or due more than {inp.late_after} ago)")


def _check_workers(inp: HealthInput, report: Report) -> None:
    if not inp.pool_exists:
        report.problems.append(
            Problem("worker", f"work pool {inp.pool} does not exist: run `clickstream bootstrap`")
        )
        return
    live = [
        w
        for w in inp.workers
        if w.last_heartbeat is not None and inp.now - w.last_heartbeat <= inp.worker_alive_within
    ]
    if live:
        report.ok.append(
            f"work pool {inp.pool}: {len(live)} live worker(s) ({', '.join(w.name for w in live)})"
        )
        return
    seen = [
        f"{w.name} {_ago(inp.now - w.last_heartbeat)} ago"
        + (" though still marked ONLINE" if w.status == "ONLINE" else "")
        for w in inp.workers
        if w.last_heartbeat is not None
    ]
    detail = f"; last heartbeats: {', '.join(seen)}" if seen else ""
    report.problems.append(
        Problem(
            "worker",
            f"work pool {inp.pool} has no live worker (no heartbeat in the last "
            f"{_ago(inp.worker_alive_within)}){detail}: nothing runs; start one with "
            f"`prefect worker start --pool {inp.pool}` (or `make up`)",
        )
    )


def _check_limit(inp: HealthInput, report: Report) -> None:
    lim = inp.limit
    if not lim.exists:
        report.problems.append(
            Problem(
                "limit",
                f"global concurrency limit {lim.name} does not exist: every store run fails "
                "(it takes a slot with strict=True); run `clickstream bootstrap`",
            )
        )
    elif not lim.active:
        report.problems.append(
            Problem(
                "limit",
                f"global concurrency limit {lim.name} is inactive: dbt runs are not limited; "
                "run `clickstream bootstrap` to activate it",
            )
        )
    else:
        report.ok.append(
            f"global concurrency limit {lim.name}: {lim.active_slots}/{lim.limit} slots active"
        )


def _check_pauses(inp: HealthInput, report: Report) -> None:
    if inp.ledger_error:
        report.problems.append(
            Problem(
                "ledger",
                f"cannot read the ledger, so who paused a store is unknown: {inp.ledger_error}",
            )
        )
    by_dep = {p.deployment_id: p for p in inp.pauses}
    for dep in inp.deployments:
        if dep.store_id is None:
            continue
        resume = f"`prefect deployment resume {dep.name}`"
        if dep.paused:
            pause = by_dep.get(dep.id)
            if pause is None:
                report.problems.append(
                    Problem(
                        "paused",
                        f"store {dep.store_id}: {dep.name} is paused by a person (no "
                        f"orchestrator recorded the pause), so it gets no regular runs; "
                        f"{resume} when that is no longer wanted",
                    )
                )
                continue
            owner = inp.owners.get(pause.paused_by)
            if owner is not None and owner.state_type not in TERMINAL_STATES:
                report.ok.append(
                    f"store {dep.store_id}: paused while orchestrator run {owner.name} "
                    f"({owner.id}) runs; it resumes the schedule when it ends"
                )
                continue
            ended = (
                f"ended run {owner.name} ({owner.id}, {owner.state_type.title()})"
                if owner is not None
                else f"ended run {pause.paused_by} (it no longer exists)"
            )
            report.problems.append(
                Problem(
                    "paused",
                    f"store {dep.store_id}: schedule left paused by {ended}; the next "
                    f"backfill or catch-up run resumes it, or {resume}",
                )
            )
        elif dep.store_active:
            for sched in dep.schedules:
                if not sched.active:
                    report.problems.append(
                        Problem(
                            "paused",
                            f"store {dep.store_id}: schedule {sched.label} (id {sched.id}) of "
                            f"{dep.name} is inactive while the store is active, so it gets no "
                            f"regular runs; `prefect deployment schedule resume {dep.name} "
                            f"{sched.id}` (or `make deploy`)",
                        )
                    )
    if not any(p.kind == "paused" for p in report.problems):
        report.ok.append("no store schedule is paused")


def diagnose(inp: HealthInput) -> Report:
    """Every check, in the order the report prints them."""
    report = Report()
    _check_schedules(inp, report)
    _check_late(inp, report)
    _check_workers(inp, report)
    _check_limit(inp, report)
    _check_pauses(inp, report)
    return report
