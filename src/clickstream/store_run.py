"""The body of the per-store dbt flow: one run builds one or more days of one store.

resolve the days -> source fingerprints (before dbt reads anything) -> skip days another run
already built from the same data -> for each dbt invocation: ``dbt-global`` slot + the
store's warehouse lock -> dbt (prefect-dbt, full or lean mode) -> read the rows back -> one
ledger row per day. A failed invocation marks every day it was building failed, with dbt's
message naming the failing nodes, and the flow run ends Failed with the same message.

Full refresh (``full_refresh=True``) recreates the store's incremental tables and rebuilds,
in the same run, every day the ledger knows for the store plus the requested days, from the
source: nothing the ledger vouches for is lost (see README, "Full refresh").

The decisions are pure functions at the top of this module (unit-tested); the flow only wires
them to Prefect, dbt and the ledger.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from clickstream import ledger, paths
from clickstream.dbt_run import DbtMode
from clickstream.registry import Store
from clickstream.source import Fingerprint

# How far a single run may reach: the most days one child builds (days_per_run <= 31), and
# the most one dbt invocation of a full refresh builds (memory and spec size stay bounded).
MAX_DAYS_PER_RUN = 31

# How long a dbt-global slot outlives a holder that died (SIGKILL, lost machine): the run
# renews its lease every 3/4 of this while alive; the server frees expired leases every 15 s.
DEFAULT_DBT_SLOT_LEASE_SECONDS = 120
# A build waits this long for planning or status to finish reading its warehouse file.
WAREHOUSE_LOCK_WAIT_SECONDS = 120


def dbt_slot_lease_seconds() -> float:
    return float(
        os.environ.get("CLICKSTREAM_DBT_SLOT_LEASE_SECONDS", DEFAULT_DBT_SLOT_LEASE_SECONDS)
    )


class PartitionInputError(ValueError):
    """Days outside the store's range, or too many for one run."""


# -- pure decisions ------------------------------------------------------------------------
def requested_days(store: Store, ds: date | None, ds_end: date | None, today: date) -> list[date]:
    """The days a run was asked to build: ``ds`` .. ``ds_end`` (both default to today)."""
    first = ds or today
    last = ds_end or first
    problems = []
    if last < first:
        problems.append(f"ds_end {last} is before ds {first}")
    if last > today:
        problems.append(
            f"{'ds_end' if ds_end else 'ds'} {last} is after {store.store_id}'s current local "
            f"date {today} ({store.timezone})"
        )
    if first < store.earliest_ds:
        problems.append(
            f"ds {first} is before {store.store_id}'s earliest date {store.earliest_ds}"
        )
    span = (last - first).days + 1
    if span > MAX_DAYS_PER_RUN:
        problems.append(f"{span} days in one run; at most {MAX_DAYS_PER_RUN}")
    if problems:
        raise PartitionInputError("; ".join(problems))
    return [first + timedelta(days=n) for n in range(span)]


def full_refresh_days(requested: Iterable[date], ledger_days: Iterable[date]) -> list[date]:
    """A full refresh rebuilds the requested days and every day the ledger knows."""
    return sorted(set(requested) | set(ledger_days))


def invocations(days: Sequence[date], size: int = MAX_DAYS_PER_RUN) -> list[list[date]]:
    """Consecutive groups of at most ``size`` days, one dbt invocation each (days sorted)."""
    ordered = sorted(days)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def already_built(
    days: Iterable[date],
    builds: Mapping[date, ledger.BuildRecord],
    current: Mapping[date, Fingerprint],
    *,
    run_id: str,
    requested_at: datetime,
) -> dict[date, str]:
    """Days another run built after this run was requested, from the data there is now.

    Building them again would write the same rows: a batch and a single-day run of the same
    day, queued one behind the other, build it once. Returns day -> the run that built it.
    ``requested_at`` is naive UTC, like the ledger's timestamps.
    """
    out = {}
    for ds in days:
        b = builds.get(ds)
        fp = current.get(ds)
        if (
            b is not None
            and fp is not None
            and b.status == "completed"
            and b.flow_run_id
            and b.flow_run_id != run_id
            and b.started_at is not None
            and b.started_at >= requested_at
            and b.fingerprint == fp.token
        ):
            out[ds] = b.flow_run_id
    return out


@dataclass(frozen=True)
class RunTick:
    """A run of the store's deployment as the supersede rule sees it."""

    id: str
    expected_start: datetime  # when it was due (its scheduled time)
    state_type: str  # Prefect StateType value: SCHEDULED, PENDING, RUNNING, COMPLETED, ...
    regular: bool  # builds "today" (no ds, no full refresh): a schedule tick or a Run click


# A newer regular run in one of these states makes an older one redundant: it is about to
# build (or has built, after the older one was due) the same current local day.
SUPERSEDING_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "COMPLETED"})


def superseded_by(me: RunTick, others: Iterable[RunTick], now: datetime) -> RunTick | None:
    """The newest regular run of the same store that makes this regular run redundant.

    After an outage (a server or worker down for hours) the missed 30-minute ticks are all
    due at once, and under ENQUEUE they would run back to back, each building the same current
    day. A regular run skips when another regular run of its deployment was due after it (and
    is due by now) and is waiting, running or done: the newest tick builds today once, and the
    nightly catch-up covers the days before. In normal operation the next tick is not due yet
    when a run starts, so nothing is skipped.
    """
    if not me.regular:
        return None
    newer = [
        o
        for o in others
        if o.id != me.id
        and o.regular
        and me.expected_start < o.expected_start <= now
        and o.state_type in SUPERSEDING_STATES
    ]
    return max(newer, key=lambda o: o.expected_start) if newer else None


def day_label(days: Sequence[date]) -> str:
    if not days:
        return "no days"
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0]}..{days[-1]} ({len(days)} days)"


@dataclass(frozen=True)
class Invocation:
    days: list[date]
    full_refresh: bool


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

    from clickstream.registry import load_registry
    from clickstream.source import fingerprints
    from clickstream.windows import local_today, partition_windows

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

    from clickstream.dbt_args import dbt_build_args, spec_environment
    from clickstream.dbt_run import invoke_dbt
    from clickstream.prefect_ops import GLOBAL_LIMIT_NAME
    from clickstream.warehouse import (
        dbt_environment,
        dbt_target,
        read_partition_counts,
        release_dbt_duckdb,
        store_lock,
    )

    logger = get_run_logger()
    target = dbt_target()
    args = dbt_build_args(
        store,
        landing_dir=paths.landing_dir(),
        project_dir=paths.dbt_project_dir(),
        target_path=paths.state_dir() / "dbt-target" / store.store_id,
        full_refresh=inv.full_refresh,
        target=target,
    )
    paths.warehouse_dir().mkdir(parents=True, exist_ok=True)
    env = {**dbt_environment(), **spec_environment(store, windows)}
    started = ledger.utcnow()
    work: dict[str, datetime] = {}
    # strict=True: if the limit is missing the run fails instead of running unlimited.
    with (
        concurrency(
            GLOBAL_LIMIT_NAME, occupy=1, strict=True, lease_duration=dbt_slot_lease_seconds()
        ),
        store_lock(store, exclusive=True, wait_seconds=WAREHOUSE_LOCK_WAIT_SECONDS),
    ):
        work["start"] = ledger.utcnow()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            outcome = invoke_dbt(
                args, mode=dbt_mode, project_dir=paths.dbt_project_dir(), logger=logger
            )
            counts = read_partition_counts(store, inv.days)
        finally:
            if target == "duckdb":
                release_dbt_duckdb()
            work["end"] = ledger.utcnow()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    _record(
        store,
        inv.days,
        current,
        run_id,
        "completed",
        counts=counts,
        started=started,
        work=work,
        node_seconds=outcome.execution_seconds / len(inv.days),
    )
    for d in inv.days:
        logger.info("%s %s: %s", store.store_id, d, counts[d])
    return counts


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
        ledger.BuildRecord(
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
