"""What `clickstream doctor` reads (schedules, runs, workers, the limit, pauses) and what it
concludes (problems, schedule rows), as plain values; the verdicts are in core.health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SCHEDULER_MARGIN = timedelta(seconds=60)
DEFAULT_LATE_AFTER = timedelta(minutes=5)
DEFAULT_WORKER_ALIVE_WITHIN = timedelta(seconds=90)  # 3 x the worker's 30 s heartbeat
MAX_LATE_LISTED = 20
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


# --- inputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SchedulerSettings:
    min_runs: int = 3
    min_scheduled_time: timedelta = timedelta(hours=1)
    loop_seconds: float = 60.0

    @property
    def grace(self) -> timedelta:
        """How long the scheduler may take to notice and top up a schedule."""
        return timedelta(seconds=self.loop_seconds) + SCHEDULER_MARGIN


@dataclass(frozen=True)
class ScheduleInfo:
    id: str
    label: str  # "every 1:00:00", "cron '15 3 * * *' (UTC)"
    active: bool


@dataclass(frozen=True)
class DeploymentInfo:
    id: str
    name: str  # "<flow>/<deployment>"
    paused: bool
    schedules: tuple[ScheduleInfo, ...] = ()
    store_id: str | None = None  # a store deployment (the per-store dbt flow)
    store_active: bool | None = None  # from stores/*.yaml; None when not in the registry
    timezone: str | None = None  # the store's local zone


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    deployment_id: str | None
    state_type: str  # StateType value: "SCHEDULED", "RUNNING", ...
    state_name: str
    scheduled_time: datetime | None  # next_scheduled_start_time (a Scheduled run's due time)
    expected_start_time: datetime | None
    auto_scheduled: bool = False
    schedule_id: str | None = None  # created_by.id when created_by.type == "SCHEDULE"
    # The schedule slot the run was created for (the scheduler's idempotency key names it): a
    # run brought forward by hand, or picked up early, still fills its slot.
    slot_time: datetime | None = None


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    status: str  # "ONLINE" / "OFFLINE"
    last_heartbeat: datetime | None


@dataclass(frozen=True)
class LimitInfo:
    name: str
    exists: bool
    active: bool = False
    limit: int | None = None
    active_slots: int | None = None


@dataclass(frozen=True)
class PauseRecord:
    deployment_id: str
    store_id: str
    paused_by: str  # orchestrator flow run id
    paused_at: datetime | None = None


@dataclass(frozen=True)
class OwnerRun:
    id: str
    name: str
    state_type: str


@dataclass(frozen=True)
class HealthInput:
    now: datetime
    scheduler: SchedulerSettings
    deployments: tuple[DeploymentInfo, ...]
    runs: tuple[RunInfo, ...]
    pool: str
    pool_exists: bool
    workers: tuple[WorkerInfo, ...]
    limit: LimitInfo
    pauses: tuple[PauseRecord, ...] = ()
    owners: Mapping[str, OwnerRun] = field(default_factory=dict)  # paused_by -> run (if found)
    late_after: timedelta = DEFAULT_LATE_AFTER
    worker_alive_within: timedelta = DEFAULT_WORKER_ALIVE_WITHIN
    ledger_error: str | None = None  # the ledger could not be read: pauses are unknown


# --- outputs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    kind: str  # scheduler | late | worker | limit | paused | ledger
    message: str


@dataclass(frozen=True)
class ScheduleRow:
    deployment: str
    schedule: str
    active: bool
    next_run: datetime | None
    next_run_local: str | None  # in the store's zone, for a store deployment
    kept_runs: int  # auto-scheduled runs the scheduler counts (see ``_kept_runs``)
    latest: datetime | None
    note: str


@dataclass
class Report:
    schedules: list[ScheduleRow] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems
