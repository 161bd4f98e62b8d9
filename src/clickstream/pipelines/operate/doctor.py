"""`clickstream doctor`'s reads: the API and the ledger, once, into clickstream.core.health's
inputs (the verdicts are pure, there).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickstream.core.health import (
    DEFAULT_LATE_AFTER,
    DEFAULT_WORKER_ALIVE_WITHIN,
    DeploymentInfo,
    HealthInput,
    LimitInfo,
    OwnerRun,
    PauseRecord,
    RunInfo,
    ScheduleInfo,
    SchedulerSettings,
    WorkerInfo,
)


# --- reading the API --------------------------------------------------------------------------
def schedule_label(schedule) -> str:
    """A short description of a Prefect schedule object."""
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return f"every {interval}"
    cron = getattr(schedule, "cron", None)
    if cron is not None:
        return f"cron '{cron}' ({getattr(schedule, 'timezone', None) or 'UTC'})"
    rrule = getattr(schedule, "rrule", None)
    if rrule is not None:
        return f"rrule '{rrule}'"
    return type(schedule).__name__


def scheduler_settings() -> SchedulerSettings:
    """The server's own scheduler settings (defaults unless this environment overrides them)."""
    from prefect.settings import get_current_settings

    s = get_current_settings().server.services.scheduler
    return SchedulerSettings(
        min_runs=s.min_runs,
        min_scheduled_time=s.min_scheduled_time,
        loop_seconds=float(s.loop_seconds),
    )


def _run_info(run) -> RunInfo:
    created_by = getattr(run, "created_by", None)
    schedule_id = (
        str(created_by.id)
        if created_by is not None and created_by.type == "SCHEDULE" and created_by.id
        else None
    )
    state_type = run.state_type.value if run.state_type is not None else ""
    return RunInfo(
        id=str(run.id),
        name=run.name or "",
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        state_type=state_type,
        state_name=run.state_name or state_type.title(),
        scheduled_time=run.next_scheduled_start_time,
        expected_start_time=run.expected_start_time,
        auto_scheduled=bool(run.auto_scheduled),
        schedule_id=schedule_id,
        slot_time=_slot_time(run.idempotency_key) if schedule_id else None,
    )


def _slot_time(key: str | None) -> datetime | None:
    """The slot in Prefect 3.8.8's scheduler key ``scheduled <deployment> <schedule> <date>``
    (prefect/server/models/deployments.py; prefect is pinned exactly, and
    tests/e2e/own/test_schedules.py's doctor check fails if the format changes)."""
    parts = (key or "").split(" ", 3)
    if len(parts) != 4 or parts[0] != "scheduled":
        return None
    try:
        return datetime.fromisoformat(parts[3])
    except ValueError:
        return None


async def _paged(read, **kwargs) -> list:
    out: list = []
    offset = 0
    while True:
        page = await read(limit=200, offset=offset, **kwargs)
        out.extend(page)
        if len(page) < 200:
            return out
        offset += 200


async def read_health_input(
    client,
    *,
    late_after: timedelta = DEFAULT_LATE_AFTER,
    worker_alive_within: timedelta = DEFAULT_WORKER_ALIVE_WITHIN,
    now: datetime | None = None,
) -> HealthInput:
    """Everything ``diagnose`` needs, read from the Prefect API and the ledger."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterCreatedBy,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    from clickstream.adapters import ledger
    from clickstream.adapters.prefect_api import read_flow_runs_by_id
    from clickstream.core.stores import RegistryError, load_registry
    from clickstream.names import (
        CATCH_UP_FLOW_NAME,
        DBT_FLOW_NAME,
        GLOBAL_LIMIT_NAME,
        ORCHESTRATOR_FLOW_NAME,
        WORK_POOL,
    )

    scheduler = scheduler_settings()
    now = now or datetime.now(UTC)
    try:
        stores = {s.deployment_name: s for s in load_registry()}
    except RegistryError:
        stores = {}

    flows = (DBT_FLOW_NAME, ORCHESTRATOR_FLOW_NAME, CATCH_UP_FLOW_NAME)
    deployments: list[DeploymentInfo] = []
    for flow_name in flows:
        deps = await _paged(
            client.read_deployments,
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        )
        for d in sorted(deps, key=lambda d: d.name):
            store = stores.get(d.name) if flow_name == DBT_FLOW_NAME else None
            store_id = None
            if flow_name == DBT_FLOW_NAME:
                store_id = store.store_id if store else (d.parameters or {}).get("store_id", d.name)
            deployments.append(
                DeploymentInfo(
                    id=str(d.id),
                    name=f"{flow_name}/{d.name}",
                    paused=bool(d.paused),
                    schedules=tuple(
                        ScheduleInfo(
                            id=str(s.id),
                            label=(f"{s.slug}: " if s.slug else "") + schedule_label(s.schedule),
                            active=bool(s.active),
                        )
                        for s in (d.schedules or [])
                    ),
                    store_id=store_id,
                    store_active=store.active if store else None,
                    timezone=store.timezone if store else None,
                )
            )

    flow_filter = FlowFilter(name=FlowFilterName(any_=list(flows)))
    runs: dict[str, RunInfo] = {}
    for run_filter in (
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
        FlowRunFilter(
            expected_start_time=FlowRunFilterExpectedStartTime(after_=now - scheduler.grace)
        ),
        # Runs a schedule created that started lately (picked up, or brought forward by an
        # operator): their slots may still lie ahead. min_runs daily runs span min_runs days.
        FlowRunFilter(
            created_by=FlowRunFilterCreatedBy(type_=["SCHEDULE"]),
            start_time=FlowRunFilterStartTime(after_=now - timedelta(days=scheduler.min_runs + 1)),
        ),
    ):
        for r in await _paged(
            client.read_flow_runs, flow_filter=flow_filter, flow_run_filter=run_filter
        ):
            runs[str(r.id)] = _run_info(r)

    try:
        await client.read_work_pool(WORK_POOL)
        pool_exists = True
        workers = await client.read_workers_for_work_pool(WORK_POOL, limit=200)
    except ObjectNotFound:
        pool_exists, workers = False, []

    try:
        gcl = await client.read_global_concurrency_limit_by_name(GLOBAL_LIMIT_NAME)
        limit = LimitInfo(GLOBAL_LIMIT_NAME, True, bool(gcl.active), gcl.limit, gcl.active_slots)
    except ObjectNotFound:
        limit = LimitInfo(GLOBAL_LIMIT_NAME, False)

    ledger_error = None
    try:
        rows = ledger.read_pauses()
    except Exception as exc:  # noqa: BLE001 - reported as a problem; the other checks still run
        rows, ledger_error = [], f"{type(exc).__name__}: {exc}".splitlines()[0]
    pauses = tuple(
        PauseRecord(
            deployment_id=str(p["deployment_id"]),
            store_id=p["store_id"],
            paused_by=str(p["paused_by"]),
            paused_at=p.get("paused_at"),
        )
        for p in rows
    )
    found = await read_flow_runs_by_id(
        client, {p.paused_by for p in pauses if _is_uuid(p.paused_by)}
    )
    owners = {
        i: OwnerRun(i, r.name or "", r.state_type.value if r.state_type else "")
        for i, r in found.items()
    }
    return HealthInput(
        now=now,
        scheduler=scheduler,
        deployments=tuple(deployments),
        runs=tuple(runs.values()),
        pool=WORK_POOL,
        pool_exists=pool_exists,
        workers=tuple(
            WorkerInfo(
                w.name,
                w.status.value if hasattr(w.status, "value") else str(w.status),
                w.last_heartbeat_time,
            )
            for w in workers
        ),
        limit=limit,
        pauses=pauses,
        owners=owners,
        late_after=late_after,
        worker_alive_within=worker_alive_within,
        ledger_error=ledger_error,
    )


def _is_uuid(value: str) -> bool:
    from uuid import UUID

    try:
        UUID(value)
    except ValueError:
        return False
    return True
