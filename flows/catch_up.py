"""The nightly catch-up flow (deployment ``nightly-catch-up`` in prefect.yaml, on a cron).

The same orchestrator as the backfill (clickstream.pipelines.backfill), over the last
``lookback_days`` complete local days of every selected store, with the ``stale`` policy:
whatever is missing, failed or built before its source changed gets built.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.runtime import flow_run

from clickstream.core.requests import CatchUpRequest
from clickstream.core.states import (
    ChildTimeoutMinutes,
    DaysPerRun,
    LookbackDays,
    MaxAttempts,
    MaxParallel,
)
from clickstream.core.stores import load_registry
from clickstream.names import CATCH_UP_FLOW_NAME
from clickstream.pipelines.backfill.run import orchestrate

StoreId = Literal[tuple(load_registry().ids)]  # type: ignore[valid-type]


@flow(name=CATCH_UP_FLOW_NAME, log_prints=True)
async def clickstream_catch_up(
    lookback_days: LookbackDays = 7,
    stores: list[StoreId] | None = None,
    days_per_run: DaysPerRun = 1,
    max_parallel: MaxParallel | None = None,
    max_attempts: MaxAttempts = 2,
    dry_run: bool = False,
    child_timeout_minutes: ChildTimeoutMinutes = 60,
):
    """Build every missing, failed or stale partition of the last complete local days.

    Args:
        lookback_days: Complete store-local days to look back over (yesterday and before).
        stores: Stores to catch up. Empty = every active store.
        days_per_run: Consecutive days of one store that one child run builds (1-31).
        max_parallel: Child runs in flight at once (empty = 2 x the dbt-global limit).
        max_attempts: Tries per partition before it counts as failed.
        dry_run: Plan and publish the status grid, submit nothing.
        child_timeout_minutes: A child run this backfill created that is in flight longer
            than this is cancelled and retried. Runs of other triggers it waits for are never
            cancelled or timed out by it.
    """
    request = CatchUpRequest(
        stores=tuple(stores or ()),
        lookback_days=lookback_days,
        days_per_run=days_per_run,
        max_parallel=max_parallel,
        max_attempts=max_attempts,
        child_timeout_minutes=child_timeout_minutes,
    )
    return await orchestrate(
        request,
        dry_run=dry_run,
        orchestrator_run_id=str(flow_run.get_id() or ""),
    )
