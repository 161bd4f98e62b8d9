"""Per-store dbt flow: one deployment per store (prefect.yaml). A run builds one day of the
store by default (its 30-minute schedule, a click on Run), or a range of days (backfills)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from prefect import flow
from prefect.states import Completed, State

from clickstream import settings
from clickstream.names import DBT_FLOW_NAME
from clickstream.pipelines.store_run import run_store_partitions

# A hung dbt run must not hold its store's single-flight slot forever.
DBT_RUN_TIMEOUT_SECONDS = settings.get().dbt_run_timeout_seconds


@flow(name=DBT_FLOW_NAME, log_prints=True, timeout_seconds=DBT_RUN_TIMEOUT_SECONDS)
def clickstream_dbt_run(
    store_id: str,
    ds: date | None = None,
    ds_end: date | None = None,
    dbt_mode: Literal["full", "lean"] = "full",
    full_refresh: bool = False,
) -> dict | State:
    """Build the clickstream models of one store for one store-local day (or a range).

    Args:
        store_id: Store from the registry (stores/<store_id>.yaml).
        ds: Store-local date to build. Empty = the store's current local date.
        ds_end: Last date to build, inclusive (at most 31 days from ds). Empty = only ds.
        dbt_mode: full = every dbt model and test is a Prefect task with its own logs and
            state, models are reported as assets; lean = one dbt invocation and no per-node
            tasks (backfills use it: cheaper per day).
        full_refresh: Recreate the store's tables and rebuild, in this run, every day the
            ledger knows for the store plus ds..ds_end, from the source. Slow; for model
            changes that incremental builds cannot apply. Nothing already built is lost.
    """
    result = run_store_partitions(
        store_id, ds, ds_end, dbt_mode=dbt_mode, full_refresh=full_refresh
    )
    if result.get("superseded_by"):
        # Shown as the run's state message: why this tick built nothing.
        return Completed(
            message=f"Skipped: superseded by the newer regular run {result['superseded_by']}"
        )
    return result
