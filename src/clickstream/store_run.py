"""The body of the per-store dbt flow: one partition (store_id, ds) end to end.

resolve store -> window -> source fingerprint -> dbt build inside the ``dbt-global`` slot ->
read back counts -> ledger. A dbt failure is recorded in the ledger and re-raised with dbt's
message so the flow run ends Failed.
"""

from __future__ import annotations

import os
from datetime import date

from prefect import get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from clickstream import ledger, paths
from clickstream.dbt_args import DEFAULT_SELECT, dbt_build_args
from clickstream.generate import source_fingerprints
from clickstream.prefect_ops import GLOBAL_LIMIT_NAME
from clickstream.registry import load_registry
from clickstream.warehouse import dbt_environment, dbt_target, read_partition_counts
from clickstream.windows import local_today, partition_window

# How long a dbt-global slot outlives a holder that died (SIGKILL, lost machine): the run
# renews its lease every 3/4 of this while alive; the server frees expired leases every 15 s.
DEFAULT_DBT_SLOT_LEASE_SECONDS = 120


def dbt_slot_lease_seconds() -> float:
    return float(
        os.environ.get("CLICKSTREAM_DBT_SLOT_LEASE_SECONDS", DEFAULT_DBT_SLOT_LEASE_SECONDS)
    )


class PartitionInputError(ValueError):
    """A ds outside the store's backfillable range."""


def run_store_partition(
    store_id: str,
    ds: date | None = None,
    select: str = DEFAULT_SELECT,
    full_refresh: bool = False,
) -> dict:
    logger = get_run_logger()
    store = load_registry().get(store_id)
    today = local_today(store.timezone)
    ds = ds or today
    if ds > today:
        raise PartitionInputError(
            f"ds {ds} is after {store_id}'s current local date {today} ({store.timezone})"
        )
    if ds < store.earliest_ds:
        raise PartitionInputError(
            f"ds {ds} is before {store_id}'s earliest date {store.earliest_ds}"
        )

    window = partition_window(store.timezone, ds)
    fingerprint = source_fingerprints(store, [window])[ds]
    target = dbt_target()
    args = dbt_build_args(
        store,
        window,
        landing_dir=paths.landing_dir(),
        project_dir=paths.dbt_project_dir(),
        target_path=paths.state_dir() / "dbt-target" / store.store_id,
        select=select,
        full_refresh=full_refresh,
        target=target,
    )
    os.environ.update(dbt_environment())
    paths.warehouse_dir().mkdir(parents=True, exist_ok=True)
    run_id = str(flow_run.get_id() or "")
    started = ledger.utcnow()
    logger.info(
        "Building %s ds=%s window [%s, %s) UTC (%.0f h), source %s events",
        store_id,
        ds,
        window.window_start,
        window.window_end,
        window.hours,
        fingerprint.event_count,
    )

    # dbt work interval: inside the dbt-global slot (what limits and benchmarks measure).
    work: dict[str, object] = {}

    def record(status: str, counts: dict | None = None, error: str | None = None) -> None:
        ledger.record_build(
            ledger.BuildRecord(
                store_id=store_id,
                ds=ds,
                status=status,
                flow_run_id=run_id,
                fingerprint=fingerprint.token,
                built_at=ledger.utcnow(),
                started_at=started,
                source_event_count=fingerprint.event_count,
                source_max_loaded_at=fingerprint.max_loaded_at,
                error=error,
                work_started_at=work.get("start"),
                work_ended_at=work.get("end"),
                **(counts or {}),
            )
        )

    try:
        # strict=True: if the limit is missing the run fails instead of running unlimited.
        with concurrency(
            GLOBAL_LIMIT_NAME, occupy=1, strict=True, lease_duration=dbt_slot_lease_seconds()
        ):
            work["start"] = ledger.utcnow()
            try:
                _invoke_dbt(args)
            finally:
                work["end"] = ledger.utcnow()
    except BaseException as exc:
        record("failed", error=f"{type(exc).__name__}: {exc}"[:4000])
        raise
    counts = read_partition_counts(store, ds, target)
    record("completed", counts)
    logger.info("Built %s ds=%s: %s", store_id, ds, counts)
    return {"store_id": store_id, "ds": ds.isoformat(), **counts, "fingerprint": fingerprint.token}


def _invoke_dbt(args: list[str]) -> None:
    """Run dbt in this process; its progress lines go to the flow run's log.

    dbt's own runner, not prefect-dbt's PrefectDbtRunner: that one turns each of the 15
    nodes into a Prefect task run (API calls and events per node), which measured ~2-3 s
    extra per partition here, more than the DuckDB work of a day. The flow run log gets
    one line per node result, the summary, and every warning and error; dbt's full debug
    log stays in the store's target folder (``<state>/dbt-target/<store_id>/logs``).
    """
    import logging

    from dbt.cli.main import dbtRunner

    logger = get_run_logger()
    levels = {"debug": None, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

    def forward(event) -> None:
        level = levels.get(getattr(event.info, "level", "info"), logging.INFO)
        msg = getattr(event.info, "msg", "")
        if level is None or not msg:
            return
        if level > logging.INFO or event.info.name in _FORWARDED_EVENTS:
            logger.log(level, "%s", msg)

    result = dbtRunner(callbacks=[forward]).invoke([*args, "--quiet"])
    if result.success:
        return
    problems = []
    for node in getattr(result.result, "results", None) or []:
        status = str(getattr(node, "status", ""))
        if status.lower() in {"error", "fail", "runtime error"}:
            problems.append(f"{node.node.name}: {status}: {(node.message or '').strip()[:500]}")
    detail = "; ".join(problems) or f"{type(result.exception).__name__}: {result.exception}"
    raise DbtBuildError(f"dbt build failed: {detail}")


class DbtBuildError(RuntimeError):
    """dbt ran and reported failing nodes (or could not run at all)."""


# Info-level dbt events worth a line in the flow run log (every run writes these through the
# API, so START lines, parse chatter and the like stay in dbt's own log file).
_FORWARDED_EVENTS = frozenset(
    {
        "LogModelResult",
        "LogTestResult",
        "LogNodeResult",
        "LogSkipBecauseError",
        "FinishedRunningStats",
        "EndOfRunSummary",
        "StatsLine",
        "RunResultError",
        "RunResultFailure",
        "UnableToPartialParse",
    }
)
