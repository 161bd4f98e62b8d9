"""Per-store dbt flow: one deployment per store (prefect.yaml), one partition per run."""

from __future__ import annotations

import os
from datetime import date

from prefect import flow

from clickstream.dbt_args import DEFAULT_SELECT
from clickstream.deployments import DBT_FLOW_NAME
from clickstream.store_run import run_store_partition

# A hung dbt run must not hold its store's single-flight slot forever.
DBT_RUN_TIMEOUT_SECONDS = int(os.environ.get("CLICKSTREAM_DBT_RUN_TIMEOUT_SECONDS", "3600"))


@flow(name=DBT_FLOW_NAME, log_prints=True, timeout_seconds=DBT_RUN_TIMEOUT_SECONDS)
def clickstream_dbt_run(
    store_id: str,
    ds: date | None = None,
    select: str = DEFAULT_SELECT,
    full_refresh: bool = False,
) -> dict:
    """Build the clickstream models of one store for one store-local day.

    Args:
        store_id: Store from the registry (stores/<store_id>.yaml).
        ds: Store-local date to build. Empty = the store's current local date.
        select: dbt selector.
        full_refresh: Rebuild incremental models from scratch (keeps only this partition).
    """
    return run_store_partition(store_id, ds, select=select, full_refresh=full_refresh)
