"""The backfill orchestrator flow (deployment ``backfill-orchestrator`` in prefect.yaml).

Parameter names are what the Prefect UI shows as labels on the run form, and the Args below
are shown under them. The logic lives in clickstream.pipelines.backfill / clickstream.core.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from prefect import flow
from prefect.runtime import flow_run

from clickstream.core.requests import BackfillRequest
from clickstream.core.states import (
    ChildTimeoutMinutes,
    DaysPerRun,
    MaxAttempts,
    MaxParallel,
)
from clickstream.core.stores import load_registry
from clickstream.names import ORCHESTRATOR_FLOW_NAME
from clickstream.pipelines.backfill.run import orchestrate

# The UI's multi-select of stores comes from this Literal, built from stores/ at import time
# (a deploy after adding a store refreshes the choices).
StoreId = Literal[tuple(load_registry().ids)]  # type: ignore[valid-type]


@flow(name=ORCHESTRATOR_FLOW_NAME, log_prints=True)
async def clickstream_backfill(
    start_date: date,
    end_date: date,
    stores: list[StoreId] | None = None,
    reprocess: Literal["missing", "failed", "stale", "all"] = "missing",
    order: Literal["oldest_first", "newest_first"] = "oldest_first",
    days_per_run: DaysPerRun = 1,
    max_parallel: MaxParallel | None = None,
    max_attempts: MaxAttempts = 2,
    pause_store_schedules: bool = False,
    dry_run: bool = False,
    allow_large_backfill: bool = False,
    child_timeout_minutes: ChildTimeoutMinutes = 60,
):
    """Backfill store x date partitions of the clickstream aggregation.

    Args:
        start_date: First store-local date (inclusive).
        end_date: Last store-local date (inclusive); at most each store's current local date.
        stores: Stores to backfill. Empty = every active store.
        reprocess: Which partitions to run. missing = never built; failed = missing + failed;
            stale = failed + built before its source data changed; all = everything in range.
        order: Dates within each store: oldest_first or newest_first.
        days_per_run: Consecutive days of one store that one child run builds (1-31). Raise it
            for large backfills: fewer runs, much less Prefect bookkeeping per day. The cost:
            a failure fails the whole run's days, and its retry runs them one by one.
        max_parallel: Child runs in flight at once across all stores (one per store at most).
            Empty = 2 x the dbt-global limit (runs beyond the limit wait for a dbt slot);
            more than that is an error.
        max_attempts: Tries per partition in this backfill before it counts as failed.
        pause_store_schedules: Pause the selected stores' 30-minute schedules while the
            backfill runs; they are resumed afterwards whatever the outcome.
        dry_run: Plan and publish the status grid, submit nothing.
        allow_large_backfill: Allow more than 20,000 partitions in one backfill.
        child_timeout_minutes: A child run this backfill created that is in flight longer
            than this is cancelled and retried. Runs of other triggers it waits for are never
            cancelled or timed out by it.
    """
    request = BackfillRequest(
        start_date=start_date,
        end_date=end_date,
        stores=tuple(stores or ()),
        reprocess=reprocess,
        order=order,
        days_per_run=days_per_run,
        max_parallel=max_parallel,
        max_attempts=max_attempts,
        child_timeout_minutes=child_timeout_minutes,
        allow_large_backfill=allow_large_backfill,
    )
    return await orchestrate(
        request,
        dry_run=dry_run,
        pause_store_schedules=pause_store_schedules,
        orchestrator_run_id=str(flow_run.get_id() or ""),
    )
