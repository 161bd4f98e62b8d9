"""What the ledger holds, as plain records: a partition's build, a child-run dispatch, and the
summary of a build that planning reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple


@dataclass(frozen=True)
class BuildRecord:
    store_id: str
    ds: date
    status: str
    flow_run_id: str | None
    fingerprint: str | None
    built_at: datetime
    mart_rows: int | None = None
    events: int | None = None
    sessions: int | None = None
    source_event_count: int | None = None
    source_max_loaded_at: datetime | None = None
    started_at: datetime | None = None
    work_started_at: datetime | None = None
    work_ended_at: datetime | None = None
    dbt_node_seconds: float | None = None
    error: str | None = None
    source_files: str | None = None


@dataclass(frozen=True)
class DispatchRecord:
    store_id: str
    ds: date
    attempt: int
    idempotency_key: str
    flow_run_id: str | None
    orchestrator_run_id: str | None
    submitted_at: datetime
    planned_at: datetime | None = None


class BuildSummary(NamedTuple):
    """What planning needs of a build. A tuple, and no timestamps: for 100 stores x 3 years,
    full records cost most of the planner's time budget in parsing and object set-up alone."""

    status: str
    flow_run_id: str | None
    fingerprint: str | None
    source_files: str | None
    events: int | None
    sessions: int | None
