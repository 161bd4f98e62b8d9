"""The body of the per-store dbt flow: one run builds one or more days of one store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from clickstream import settings
from clickstream.adapters import ledger
from clickstream.core.fingerprints import Fingerprint
from clickstream.core.records import BuildRecord
from clickstream.core.states import DbtMode
from clickstream.core.store_run_plan import (
    SUPERSEDING_STATES,
    Invocation,
    RunTick,
    already_built,
    day_label,
    full_refresh_days,
    invocations,
    requested_days,
    superseded_by,
)
from clickstream.core.stores import Store
from clickstream.names import GLOBAL_LIMIT_NAME


# -- the flow body -------------------------------------------------------------------------
def run_store_partitions(
    store_id: str,
    ds: date | None = None,
    ds_end: date | None = None,
    *,
    dbt_mode: DbtMode = "full",
    full_refresh: bool = False,
) -> dict:
    from prefect import get_run_logger
    from prefect.context import FlowRunContext

    from clickstream.adapters.landing import fingerprints
    from clickstream.core.stores import load_registry
    from clickstream.core.windows import local_today, partition_windows

    logger = get_run_logger()
    store = load_registry().get(store_id)
    today = local_today(store.timezone)
    days = requested_days(store, ds, ds_end, today)
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    run_id = str(run.id) if run else ""
    if ds is None and not full_refresh and run is not None:
        newer = _superseding_run(run)
        if newer is not None:
            logger.info(
                "%s: skipped; a newer regular run %s (due %s) builds %s; the nightly "
                "catch-up covers earlier days",
                store_id,
                newer.id,
                newer.expected_start.isoformat(timespec="minutes"),
                today,
            )
            return {"store_id": store_id, "days": [], "built": {}, "superseded_by": newer.id}
    requested_at = requested_time(run)

    # A full refresh rebuilds every day the ledger knows for the store, before or after ds.
    known = (
        ledger.read_builds([store_id])
        if full_refresh
        else ledger.read_builds([store_id], days[0], days[-1])
    )
    if full_refresh:
        days = full_refresh_days(days, [k[1] for k in known])
    windows = {w.ds: w for w in partition_windows(store.timezone, days)}
    current = fingerprints(store, list(windows.values()))
    skipped: dict[date, str] = {}
    if not full_refresh and requested_at is not None:
        skipped = already_built(
            days,
            {k[1]: b for k, b in known.items()},
            current,
            run_id=run_id,
            requested_at=requested_at,
        )
        for d, other in sorted(skipped.items()):
            logger.info(
                "%s %s: already built by run %s after this run was requested, from the same "
                "source data; not building it again",
                store_id,
                d,
                other,
            )
    to_build = [d for d in days if d not in skipped]
    plan = [
        Invocation(group, full_refresh and n == 0) for n, group in enumerate(invocations(to_build))
    ]
    logger.info(
        "%s: building %s in %d dbt invocation(s), dbt_mode=%s%s; source %d events in the "
        "input range",
        store_id,
        day_label(to_build),
        len(plan),
        dbt_mode,
        ", full refresh" if full_refresh else "",
        sum(current[d].event_count for d in to_build),
    )
    built: dict[str, dict] = {}
    for n, inv in enumerate(plan):
        try:
            counts = _build(store, inv, [windows[d] for d in inv.days], current, dbt_mode, run_id)
        except BaseException as exc:
            failed_days = [d for later in plan[n:] for d in later.days]
            _record(
                store,
                failed_days,
                current,
                run_id,
                status="failed",
                error=f"{type(exc).__name__}: {exc}"[:4000],
            )
            if len(failed_days) > len(inv.days):
                logger.error(
                    "full refresh stopped: %s marked failed (their rows may be gone); "
                    "re-run the full refresh or backfill them with --reprocess failed",
                    day_label(failed_days),
                )
            raise
        built.update({d.isoformat(): c for d, c in counts.items()})
    logger.info("%s: built %s", store_id, day_label(to_build))
    return {
        "store_id": store_id,
        "days": [d.isoformat() for d in days],
        "built": built,
        "skipped": {d.isoformat(): r for d, r in skipped.items()},
    }


def _build(
    store: Store,
    inv: Invocation,
    windows: list,
    current: Mapping[date, Fingerprint],
    dbt_mode: DbtMode,
    run_id: str,
) -> dict[date, dict]:
    from prefect import get_run_logger
    from prefect.concurrency.sync import concurrency

    from clickstream.adapters.dbt.invoke import build_days

    logger = get_run_logger()
    started = ledger.utcnow()

    def dbt_global_slot():
        # strict=True: if the limit is missing the run fails instead of running unlimited.
        return concurrency(
            GLOBAL_LIMIT_NAME,
            occupy=1,
            strict=True,
            lease_duration=settings.get().dbt_slot_lease_seconds,
        )

    result = build_days(
        store,
        windows,
        mode=dbt_mode,
        full_refresh=inv.full_refresh,
        slot=dbt_global_slot,
        logger=logger,
    )
    _record(
        store,
        inv.days,
        current,
        run_id,
        "completed",
        counts=result.counts,
        started=started,
        work={"start": result.work_started_at, "end": result.work_ended_at},
        node_seconds=result.outcome.execution_seconds / len(inv.days),
    )
    for d in inv.days:
        logger.info("%s %s: %s", store.store_id, d, result.counts[d])
    return result.counts


def _record(
    store: Store,
    days: Sequence[date],
    current: Mapping[date, Fingerprint],
    run_id: str,
    status: str,
    *,
    counts: Mapping[date, dict] | None = None,
    error: str | None = None,
    started: datetime | None = None,
    work: Mapping[str, datetime] | None = None,
    node_seconds: float | None = None,
) -> None:
    now = ledger.utcnow()
    ledger.record_builds(
        BuildRecord(
            store_id=store.store_id,
            ds=d,
            status=status,
            flow_run_id=run_id,
            fingerprint=current[d].token,
            source_files=current[d].files,
            built_at=now,
            started_at=started or now,
            source_event_count=current[d].event_count,
            source_max_loaded_at=current[d].max_loaded_at,
            error=error,
            work_started_at=(work or {}).get("start"),
            work_ended_at=(work or {}).get("end"),
            dbt_node_seconds=node_seconds,
            **((counts or {}).get(d) or {}),
        )
        for d in days
    )


def _regular(parameters: Mapping | None) -> bool:
    params = parameters or {}
    return not params.get("ds") and not params.get("full_refresh")


def _superseding_run(run) -> RunTick | None:
    """Read the store deployment's runs due between this run and now; apply superseded_by."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    if run.deployment_id is None or run.expected_start_time is None:
        return None
    now = datetime.now(UTC)
    mine = run.expected_start_time.astimezone(UTC)
    if mine >= now:
        return None
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[run.deployment_id]),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=mine, before_=now),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=sorted(SUPERSEDING_STATES))
                ),
            ),
            limit=200,
        )
    ticks = [
        RunTick(
            str(r.id),
            r.expected_start_time.astimezone(UTC),
            r.state_type.value if r.state_type else "",
            _regular(r.parameters),
        )
        for r in found
        if r.expected_start_time is not None
    ]
    me = RunTick(str(run.id), mine, "RUNNING", _regular(run.parameters))
    return superseded_by(me, ticks, now)


def requested_time(run) -> datetime | None:
    """When this build was asked for (naive UTC): for a backfill child, when its orchestrator
    planned it (the dispatch record of its idempotency key); otherwise when the run was
    created. Days built by another run after that moment are not built again."""
    if run is None or run.created is None:
        return None
    created = run.created.astimezone(UTC).replace(tzinfo=None)
    planned = ledger.read_planned_at(run.idempotency_key) if run.idempotency_key else None
    return min(created, planned) if planned else created
