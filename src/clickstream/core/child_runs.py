"""Both ends of the child-run contract: the key, name, tags and parameters an orchestrator gives
a child run, and reading back which days a store run works on from its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta


def batch_label(batch: Sequence[date]) -> str:
    """``2026-10-01`` or ``2026-10-01..2026-10-07``."""
    first, last = min(batch), max(batch)
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def idempotency_key(store_id: str, batch: Sequence[date] | date, attempt: int) -> str:
    """Unique per (flow, key) in Prefect; all store deployments share one flow, so the key
    carries the store. The days are part of it: a run of 2026-10-01..07 and a run of 10-03
    are different runs. The attempt makes a retry a new run."""
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return f"clickstream:{store_id}:{batch_label(days)}:attempt-{attempt}"


def child_run_name(store_id: str, batch: Sequence[date] | date, attempt: int) -> str:
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return f"backfill-{store_id}-{batch_label(days)}-a{attempt}"


def child_tags(store_id: str, batch: Sequence[date] | date) -> list[str]:
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return ["backfill", store_id, f"ds:{batch_label(days)}"]


def child_parameters(store_id: str, batch: Sequence[date]) -> dict:
    """Parameters of the store deployment's run for a batch (lean dbt mode: no per-node tasks)."""
    first, last = min(batch), max(batch)
    params = {"store_id": store_id, "ds": first.isoformat(), "dbt_mode": "lean"}
    if last != first:
        params["ds_end"] = last.isoformat()
    return params


def next_attempt(latest_attempt: int | None, latest_run_exists: bool) -> int:
    """Attempt number to dispatch for a partition that is not in flight.

    - never dispatched -> 1
    - last dispatch has no run on the server (the orchestrator died between writing the
      ledger and creating the run) -> the same attempt, hence the same key: run_deployment
      creates the run or returns the one that exists
    - last dispatch's run ended -> the next attempt (a new key, so a new run)

    A run of several days takes the highest attempt any of its days needs.
    """
    if latest_attempt is None:
        return 1
    return latest_attempt + 1 if latest_run_exists else latest_attempt


def run_partitions(parameters: Mapping | None) -> tuple[str, list[date] | None] | None:
    """(store_id, days) a store run works on, from its parameters: ``ds`` .. ``ds_end``; days
    None for a full refresh (it rebuilds every day of the store). None when the run names no
    ``ds`` (a scheduled run of "today": the orchestrator never plans today's partial day).
    The reading end of :func:`child_parameters`."""
    params = parameters or {}
    sid, ds, ds_end = params.get("store_id"), params.get("ds"), params.get("ds_end")
    if not sid:
        return None
    if params.get("full_refresh"):
        return sid, None
    if not ds:
        return None
    try:
        first = date.fromisoformat(str(ds))
        last = date.fromisoformat(str(ds_end)) if ds_end else first
    except ValueError:
        return None
    if last < first:
        return None
    return sid, [first + timedelta(days=n) for n in range((last - first).days + 1)]
