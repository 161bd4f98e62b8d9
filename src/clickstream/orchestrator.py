"""The backfill orchestrator's body: snapshot -> plan -> artifacts -> dispatch lanes -> outcome.

Dispatch keeps one partition in flight per store (a lane per store) and at most
``max_parallel`` overall, refills a lane as soon as its run ends, and never creates more child
runs than it has slots for, so Prefect's queue stays shallow and the deployment-level
ENQUEUE limit and the ``dbt-global`` limit are never the thing that does the scheduling
(they stay as the safety net for regular and manual runs).

Every child dispatch is written to the ledger *before* the child run is created, with an
idempotency key of (store, ds, attempt). A successor of a killed orchestrator therefore
adopts runs still in flight, re-creates nothing that exists, and retries with a new attempt
only what ended badly.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_UI_URL
from prefect.states import Cancelling, Completed, Failed, State

from clickstream import grid, ledger
from clickstream.deployments import DBT_FLOW_NAME
from clickstream.planning import (
    POLICY_STATES,
    BackfillInputError,
    BackfillRequest,
    Batch,
    LaneScheduler,
    PartitionKey,
    PartitionState,
    ResolvedRequest,
    batch_label,
    build_lanes,
    child_parameters,
    child_run_name,
    child_tags,
    classify,
    expand_partitions,
    group_runs,
    idempotency_key,
    next_attempt,
    resolve_request,
    select_partitions,
)
from clickstream.prefect_ops import (
    TERMINAL,
    read_active_store_runs,
    read_flow_runs_by_id,
    read_global_limit,
    run_partitions,
    store_deployment_ids,
    with_api_retries,
)
from clickstream.registry import Registry, load_registry
from clickstream.source import Recorded, fingerprints
from clickstream.warehouse import MartView, read_mart_view
from clickstream.windows import partition_windows

# Another orchestrator claims days and creates their run a moment later; a claim with no run
# after this long belongs to an orchestrator that died in between, and is taken over.
CLAIM_WITHOUT_RUN_TIMEOUT = timedelta(seconds=60)


def poll_seconds() -> float:
    """How often the orchestrator looks at its children (read per call: warm-forked runs)."""
    return float(os.environ.get("CLICKSTREAM_POLL_SECONDS", "0.5"))


@dataclass
class Snapshot:
    """Everything planning needs, read once at the start."""

    states: dict[PartitionKey, PartitionState]
    builds: dict[PartitionKey, ledger.BuildSummary]
    known_runs: set[str]  # runs known to exist: they recorded a build, or are active
    in_flight_runs: dict[PartitionKey, str]  # partition -> flow run id (several days may share one)
    mart: MartView = field(default_factory=MartView)
    taken_at: datetime = field(default_factory=ledger.utcnow)
    active_runs: set[str] = field(default_factory=set)  # store runs not ended when planning

    def warehouse_note(self) -> str:
        """What the plan could and could not check against the warehouse, in a line."""
        note = f"warehouse check: {len(self.mart.checked)} store(s) read"
        if self.mart.unchecked:
            busy = ", ".join(f"{s} ({why})" for s, why in sorted(self.mart.unchecked.items()))
            note += f"; not checked, the ledger's word kept: {busy}"
        return note


@dataclass
class PartitionResult:
    state: str
    attempt: int | None = None
    flow_run_id: str | None = None
    started: float | None = None
    duration_s: float | None = None
    message: str | None = None
    run_days: str | None = None  # the days of the child run that built it


@dataclass
class InFlight:
    """A child run in flight: ours, or one we adopted."""

    store_id: str
    days: Batch
    attempt: int | None
    started: float | None


@dataclass
class Outcome:
    planned: list[PartitionKey]
    results: dict[PartitionKey, PartitionResult] = field(default_factory=dict)
    dry_run: bool = False
    summary: str = ""
    child_runs: int = 0

    @property
    def failed(self) -> list[PartitionKey]:
        return sorted(k for k, r in self.results.items() if r.state != "completed")

    @property
    def ok(self) -> bool:
        return not self.failed


async def take_snapshot(
    client: PrefectClient,
    resolved: ResolvedRequest,
    *,
    with_fingerprints: bool = True,
) -> Snapshot:
    taken_at = ledger.utcnow()
    partitions = expand_partitions(resolved)
    store_ids = [s.store_id for s in resolved.stores]
    start, end = resolved.start_date, resolved.end_date
    builds = ledger.read_build_summaries(store_ids, start, end)
    # In flight: every non-terminal run of the store flow, whoever created it, by the days its
    # parameters name (a dispatched child names its days too). The dispatch history is read
    # per run right before dispatching (Dispatcher._claim), not here: for a large backfill it
    # is as big as the ledger and planning needs none of it.
    active = await with_api_retries(
        lambda: read_active_store_runs(client), what="reading active store runs"
    )
    known_runs = {b.flow_run_id for b in builds.values() if b.flow_run_id}
    known_runs |= {str(r.id) for r in active}
    wanted = set(partitions)
    in_flight: dict[PartitionKey, str] = {}
    for run in active:
        found_days = run_partitions(run)
        if found_days is None:
            continue
        sid, days = found_days
        # days None: a full refresh, which rebuilds the whole store.
        keys = [k for k in partitions if k[0] == sid] if days is None else [(sid, d) for d in days]
        for key in keys:
            if key in wanted and key not in in_flight:
                in_flight[key] = str(run.id)

    current: dict[PartitionKey, str] | None = None
    if with_fingerprints:
        current = {}
        for store in resolved.stores:
            built = {
                ds: builds[(store.store_id, ds)]
                for ds in resolved.dates_by_store[store.store_id]
                if (store.store_id, ds) in builds
            }
            if not built:
                continue
            recorded = {ds: Recorded(b.fingerprint, b.source_files) for ds, b in built.items()}
            windows = partition_windows(store.timezone, built)
            for ds, fp in fingerprints(store, windows, recorded=recorded).items():
                current[(store.store_id, ds)] = fp.token
    mart = read_mart_view(resolved.stores, start, end) if start is not None else MartView()
    states = classify(
        partitions,
        build_status={k: b.status for k, b in builds.items()},
        built_fingerprints={k: b.fingerprint for k, b in builds.items()},
        current_fingerprints=current,
        in_flight=in_flight.keys(),
        built_counts={k: (b.events, b.sessions) for k, b in builds.items()},
        mart_counts={k: (r.events, r.sessions) for k, r in mart.rows.items()},
        mart_checked=mart.checked,
    )
    return Snapshot(
        states, builds, known_runs, in_flight, mart, taken_at, {str(r.id) for r in active}
    )


def flow_run_url(flow_run_id: str | None) -> str:
    if not flow_run_id:
        return ""
    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/flow-run/{flow_run_id}" if base else flow_run_id


class Dispatcher:
    """Lane-based dispatch of child runs; see the module docstring."""

    def __init__(
        self,
        client: PrefectClient,
        resolved: ResolvedRequest,
        snapshot: Snapshot,
        selected: list[PartitionKey],
        *,
        orchestrator_run_id: str | None,
        child_timeout_seconds: float,
        logger,
    ) -> None:
        self.client = client
        self.resolved = resolved
        self.snapshot = snapshot
        self.logger = logger
        self.orchestrator_run_id = orchestrator_run_id
        self.child_timeout_seconds = child_timeout_seconds
        self.scheduler = LaneScheduler(
            build_lanes(selected, resolved.order, resolved.days_per_run), resolved.max_parallel
        )
        self.retry_states = POLICY_STATES[resolved.reprocess]
        self.in_flight: dict[str, InFlight] = {}  # flow run id -> its run
        self.results: dict[PartitionKey, PartitionResult] = {}
        self.attempts_used: dict[PartitionKey, int] = {}
        self.latest_attempt: dict[PartitionKey, int] = {}  # filled as runs are dispatched
        chosen = set(selected)
        self.planned = list(selected) + [k for k in snapshot.in_flight_runs if k not in chosen]
        self.progress_id: UUID | None = None
        self.max_in_flight_seen = 0
        self.child_runs = 0
        self.ended_runs: set[str] = set()
        self.run_ended: dict[str, bool | None] = {}  # see _look_up_runs

    # -- progress -------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return len(self.results)

    async def _progress(self) -> None:
        total = max(len(self.planned), 1)
        pct = round(100.0 * self.finished / total, 1)
        failed = sum(1 for r in self.results.values() if r.state != "completed")
        flying = sum(len(f.days) for f in self.in_flight.values())
        desc = (
            f"{self.finished}/{len(self.planned)} partitions finished, {failed} failed, "
            f"{flying} in flight in {len(self.in_flight)} run(s)"
        )
        try:
            if self.progress_id is None:
                self.progress_id = await acreate_progress_artifact(progress=pct, description=desc)
            else:
                await aupdate_progress_artifact(self.progress_id, progress=pct, description=desc)
        except Exception as exc:  # progress is best effort; never fail a backfill for it
            self.logger.warning("could not update the progress artifact: %s", exc)

    # -- dispatch -------------------------------------------------------------------------
    def _adopt_in_flight(self) -> None:
        runs: dict[str, list[PartitionKey]] = {}
        for key, run_id in self.snapshot.in_flight_runs.items():
            runs.setdefault(run_id, []).append(key)
        for run_id, keys in runs.items():
            sid = keys[0][0]
            days = tuple(sorted(k[1] for k in keys))
            self.scheduler.occupy(sid, run_id)
            self.in_flight[run_id] = InFlight(sid, days, None, time.monotonic())
            self.logger.info("adopting in-flight run %s for %s %s", run_id, sid, batch_label(days))

    def _attempt_for(self, key: PartitionKey, disp: ledger.DispatchRecord | None) -> int:
        """The attempt to dispatch ``key`` with, given its latest dispatch in the ledger."""
        if key in self.attempts_used:  # dispatched by this run: its run exists
            return next_attempt(self.latest_attempt[key], True)
        if disp is None:
            return next_attempt(None, False)
        # A dispatch from the ledger may have no run: the orchestrator that wrote it died
        # before creating it. Then the same attempt (the same key) is used again. A run not
        # looked up (it appeared after _look_up_runs) is taken to exist: at worst an attempt
        # number is skipped, never a key reused for a run that ended.
        run_id = disp.flow_run_id
        exists = run_id is not None and (
            run_id in self.snapshot.known_runs or self.run_ended.get(run_id, True) is not None
        )
        return next_attempt(disp.attempt, exists)

    async def _look_up_runs(self, sid: str, batch: Batch) -> None:
        """Read (through the API, outside any ledger lock) the runs the ledger's latest
        dispatches of these days name that this orchestrator knows nothing about yet: whether
        each exists, and whether it has ended. ``run_ended`` maps a run to True (ended),
        False (live when read) or None (no such run)."""
        dispatches = ledger.read_latest_dispatches([sid], batch[0], batch[-1])
        ids = {
            d.flow_run_id
            for d in dispatches.values()
            if d.flow_run_id
            and d.flow_run_id not in self.in_flight
            and d.flow_run_id not in self.ended_runs
            and not self.run_ended.get(d.flow_run_id)
        }
        if not ids:
            return
        runs = await with_api_retries(
            lambda: read_flow_runs_by_id(self.client, ids),
            what="reading dispatched runs",
            logger=self.logger,
        )
        for run_id in ids:
            run = runs.get(run_id)
            self.run_ended[run_id] = None if run is None else run.state_type in TERMINAL

    async def _submit_ready(self) -> None:
        for sid, batch in self.scheduler.next_batch():
            await self._look_up_runs(sid, batch)
            # Decide and record inside the store's dispatch claim (ledger only, no API call:
            # it is held for milliseconds): another orchestrator deciding about this store
            # waits, then sees what this one took.
            with ledger.dispatch_claim(sid) as conn:
                dispatches = ledger.read_latest_dispatches([sid], batch[0], batch[-1], conn=conn)
                builds = ledger.read_builds([sid], batch[0], batch[-1], conn=conn)
                mine = self._claim(sid, batch, dispatches, builds)
                if not mine:
                    continue
                keys = [(sid, ds) for ds in mine]
                attempt = max(self._attempt_for(k, dispatches.get(k)) for k in keys)
                records = [
                    ledger.DispatchRecord(
                        store_id=sid,
                        ds=ds,
                        attempt=attempt,
                        idempotency_key=idempotency_key(sid, mine, attempt),
                        flow_run_id=None,
                        orchestrator_run_id=self.orchestrator_run_id,
                        submitted_at=ledger.utcnow(),
                        planned_at=self.snapshot.taken_at,
                    )
                    for ds in mine
                ]
                ledger.record_dispatches(records, conn=conn)
            await self._create_run(sid, mine, attempt, records)

    async def _create_run(
        self, sid: str, batch: Batch, attempt: int, records: list[ledger.DispatchRecord]
    ) -> None:
        run = await with_api_retries(
            lambda: run_deployment(
                name=f"{DBT_FLOW_NAME}/{sid}",
                parameters=child_parameters(sid, batch),
                timeout=0,
                as_subflow=True,
                idempotency_key=records[0].idempotency_key,
                flow_run_name=child_run_name(sid, batch, attempt),
                tags=child_tags(sid, batch),
            ),
            what=f"creating the run for {sid} {batch_label(batch)}",
            logger=self.logger,
        )
        ledger.record_dispatches([replace(r, flow_run_id=str(run.id)) for r in records])
        run_id = str(run.id)
        for ds in batch:
            self.latest_attempt[(sid, ds)] = attempt
            self.attempts_used[(sid, ds)] = self.attempts_used.get((sid, ds), 0) + 1
        self.scheduler.occupy(sid, run_id)
        self.in_flight[run_id] = InFlight(sid, batch, attempt, time.monotonic())
        self.child_runs += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, len(self.in_flight))
        self.logger.info(
            "dispatched %s %s attempt %s -> %s", sid, batch_label(batch), attempt, run.name
        )

    def _ended(self, run_id: str) -> bool:
        """The run is known to have ended (or never existed): this orchestrator saw it end,
        it ended before this backfill planned (it recorded a build and was not active then),
        or a look-up found it ended."""
        if run_id in self.ended_runs:
            return True
        if run_id in self.snapshot.known_runs and run_id not in self.snapshot.active_runs:
            return True
        return self.run_ended.get(run_id, False) is not False

    def _claim(
        self,
        sid: str,
        batch: Batch,
        dispatches: dict[PartitionKey, ledger.DispatchRecord],
        builds: dict[PartitionKey, ledger.BuildRecord],
    ) -> Batch | None:
        """The days of ``batch`` still ours to build, from the ledger as it is right now.

        Another trigger (a second backfill, the nightly catch-up) may have dispatched or built
        some of these days since this orchestrator planned: those are adopted (we wait for
        that run) or counted as built, never built again. Idempotency keys alone cannot catch
        this once runs cover different sets of days. A day another trigger has just claimed
        but not yet created a run for is tried again on the next round. What is left is
        submitted as one run if it is still consecutive; other pieces go back to the head of
        the lane.
        """
        planned_at = self.snapshot.taken_at
        now = ledger.utcnow()
        mine: list[date] = []
        later: list[date] = []
        theirs: dict[str, list[date]] = {}
        for ds in batch:
            disp = dispatches.get((sid, ds))
            build = builds.get((sid, ds))
            other = disp is not None and disp.orchestrator_run_id != self.orchestrator_run_id
            run_id = disp.flow_run_id if disp is not None else None
            if other and run_id and not self._ended(run_id):
                # Another trigger's run of this day that may still be going, whenever it
                # was dispatched (also just before this backfill planned, too late for the
                # plan to see its run): wait for it rather than build the day again.
                theirs.setdefault(run_id, []).append(ds)
            elif other and not run_id and now - disp.submitted_at < CLAIM_WITHOUT_RUN_TIMEOUT:
                later.append(ds)  # its run is being created right now
            elif (
                build is not None
                and build.status == "completed"
                and build.started_at is not None
                and build.started_at >= planned_at
                and build.flow_run_id not in self.in_flight
            ):
                self.results[(sid, ds)] = PartitionResult(
                    state="completed",
                    flow_run_id=build.flow_run_id,
                    message="built by another run after this backfill was planned",
                    run_days=batch_label((ds,)),
                )
            else:
                mine.append(ds)
        for run_id, days in theirs.items():
            self.logger.info(
                "%s %s: dispatched by another trigger since this backfill was planned; "
                "adopting run %s",
                sid,
                batch_label(days),
                run_id,
            )
            self.scheduler.occupy(sid, run_id)
            self.in_flight[run_id] = InFlight(sid, tuple(days), None, time.monotonic())
        pieces = group_runs(mine, "oldest_first", len(batch)) if mine else []
        pieces += [(ds,) for ds in later]
        if theirs or later or len(pieces) > 1:
            # The lane is busy with an adopted run, waits for another trigger's run to
            # appear, or its days no longer form one run: what is not submitted now goes back.
            submit = pieces[0] if mine and not theirs else None
            self.scheduler.lanes.setdefault(sid, [])[:0] = [p for p in pieces if p != submit]
            return submit
        return pieces[0] if pieces else None

    async def _finish(self, run_id: str, run: FlowRun) -> None:
        flying = self.in_flight.pop(run_id)
        self.ended_runs.add(run_id)
        sid, days = flying.store_id, flying.days
        self.scheduler.release(sid, run_id)
        duration = (
            (run.end_time - run.start_time).total_seconds()
            if run.end_time and run.start_time
            else None
        )
        label = batch_label(days)

        def result(state: str, message: str | None = None) -> PartitionResult:
            return PartitionResult(
                state=state,
                attempt=flying.attempt,
                flow_run_id=run_id,
                duration_s=duration,
                message=message,
                run_days=label,
            )

        if run.state_type == StateType.COMPLETED:
            for ds in days:
                self.results[(sid, ds)] = result("completed")
            self.logger.info("%s %s completed (attempt %s)", sid, label, flying.attempt)
            return
        state = run.state
        message = f"{state.name if state else run.state_type}: {state.message if state else ''}"
        used = max(self.attempts_used.get((sid, ds), 0) for ds in days)
        retryable = PartitionState.FAILED in self.retry_states or used > 0
        if used < self.resolved.max_attempts and retryable:
            self.logger.warning(
                "%s %s attempt %s ended %s; retrying%s (%s of %s attempts used)",
                sid,
                label,
                flying.attempt,
                message,
                " each day on its own" if len(days) > 1 else "",
                used,
                self.resolved.max_attempts,
            )
            self.scheduler.retry(sid, days, self.resolved.order)
            return
        for ds in days:
            self.results[(sid, ds)] = result("failed", message)
        self.logger.error("%s %s failed after attempt %s: %s", sid, label, flying.attempt, message)

    async def _cancel_child(self, run_id: str, why: str) -> None:
        try:
            await self.client.set_flow_run_state(UUID(run_id), Cancelling(message=why), force=True)
        except Exception as exc:
            self.logger.warning("could not cancel %s: %s", run_id, exc)

    async def run(self) -> dict[PartitionKey, PartitionResult]:
        self._adopt_in_flight()
        await self._progress()
        try:
            while not self.scheduler.done:
                await self._submit_ready()
                await asyncio.sleep(poll_seconds())
                if not self.in_flight:
                    continue
                ids = list(self.in_flight)
                runs = await with_api_retries(
                    lambda ids=ids: read_flow_runs_by_id(self.client, ids),
                    what="polling child runs",
                    logger=self.logger,
                )
                finished = 0
                for run_id, flying in list(self.in_flight.items()):
                    run = runs.get(run_id)
                    if run is not None and run.state_type in TERMINAL:
                        await self._finish(run_id, run)
                        finished += 1
                    elif (
                        flying.started is not None
                        and time.monotonic() - flying.started > self.child_timeout_seconds
                    ):
                        self.logger.error(
                            "%s %s exceeded %ss; cancelling its run",
                            flying.store_id,
                            batch_label(flying.days),
                            self.child_timeout_seconds,
                        )
                        await self._cancel_child(run_id, "backfill child timeout")
                        flying.started = None  # cancel once; its terminal state ends it
                if finished:
                    # Refill the freed lanes first; the progress artifact can wait a moment.
                    await self._submit_ready()
                    await self._progress()
        except BaseException:
            # Parent cancelled or crashed: stop what we started, dispatch nothing more.
            for run_id in list(self.in_flight):
                await self._cancel_child(run_id, "backfill orchestrator stopped")
            raise
        await self._progress()
        return self.results


async def plan(
    request: BackfillRequest,
    *,
    registry: Registry | None = None,
    client: PrefectClient | None = None,
    for_status: bool = False,
) -> tuple[ResolvedRequest, Snapshot, list[PartitionKey]]:
    """Validate, snapshot and select. Raises BackfillInputError before anything is created."""
    registry = registry or load_registry()
    own_client = client is None
    client = client or get_client()
    try:
        if own_client:
            await client.__aenter__()
        limit = await with_api_retries(
            lambda: read_global_limit(client), what="reading the dbt-global limit"
        )
        if for_status:  # a status view needs no limit and dispatches nothing
            limit = limit or 1
            request = replace(request, max_parallel=1)
        resolved = resolve_request(request, registry, global_limit=limit)
        snapshot = await take_snapshot(client, resolved)
        selected = select_partitions(snapshot.states, resolved.reprocess)
        return resolved, snapshot, selected
    finally:
        if own_client:
            await client.__aexit__(None, None, None)


def display_states(
    snapshot: Snapshot, selected: list[PartitionKey], results: Mapping | None, dry_run: bool
) -> dict[PartitionKey, str]:
    states: dict[PartitionKey, str] = {k: str(v) for k, v in snapshot.states.items()}
    if dry_run:
        for key in selected:
            states[key] = grid.PLANNED
    for key, res in (results or {}).items():
        states[key] = res.state
    return states


def planned_runs(
    resolved: ResolvedRequest, selected: list[PartitionKey]
) -> dict[PartitionKey, str]:
    """The child run (its days) each selected partition goes into, as planned."""
    out = {}
    for sid, batches in build_lanes(selected, resolved.order, resolved.days_per_run).items():
        for batch in batches:
            for ds in batch:
                out[(sid, ds)] = batch_label(batch)
    return out


def partition_table(
    resolved: ResolvedRequest,
    snapshot: Snapshot,
    selected: list[PartitionKey],
    results: Mapping[PartitionKey, PartitionResult],
    dry_run: bool,
) -> list[dict]:
    chosen = planned_runs(resolved, selected)
    rows = []
    for key in sorted(snapshot.states):
        sid, ds = key
        res = results.get(key)
        build = snapshot.builds.get(key)
        if res is not None:
            state, attempt, run_id = res.state, res.attempt, res.flow_run_id
            duration = round(res.duration_s, 1) if res.duration_s is not None else None
            note = res.message or ""
            run_days = res.run_days
        else:
            state = str(snapshot.states[key])
            attempt = None
            run_id = snapshot.in_flight_runs.get(key) or (build.flow_run_id if build else None)
            duration = None
            if key in chosen:
                note = "would run" if dry_run else "not run"
            elif key in snapshot.in_flight_runs:
                note = "in flight in another run"
            else:
                note = "skipped by policy"
            run_days = chosen.get(key)
        rows.append(
            {
                "store_id": sid,
                "ds": ds.isoformat(),
                "state": state,
                "attempt": attempt,
                "run_days": run_days,
                "duration_s": duration,
                "run": flow_run_url(run_id),
                "note": note,
            }
        )
    return rows


async def publish_artifacts(
    resolved: ResolvedRequest,
    snapshot: Snapshot,
    selected: list[PartitionKey],
    results: Mapping[PartitionKey, PartitionResult],
    *,
    dry_run: bool,
    title: str,
) -> str:
    states = display_states(snapshot, selected, results, dry_run)
    md = grid.render_markdown(
        states,
        title=title,
        stores=[s.store_id for s in resolved.stores],
        note=snapshot.warehouse_note(),
    )
    prefix = "catch-up" if resolved.mode == "catch_up" else "backfill"
    await acreate_markdown_artifact(
        markdown=md, key=f"{prefix}-grid", description=f"{title}: status grid"
    )
    await acreate_table_artifact(
        table=partition_table(resolved, snapshot, selected, results, dry_run),
        key=f"{prefix}-partitions",
        description=f"{title}: every partition's state, attempt, child run days, duration and run",
    )
    return md


async def pause_schedules(client: PrefectClient, store_ids: list[str], owner: str, logger):
    """Pause the stores' regular schedules; returns the deployment ids to resume later."""
    ids = await store_deployment_ids(client, store_ids)
    paused: list[UUID] = []
    for name, dep_id in ids.items():
        dep = await client.read_deployment(dep_id)
        if dep.paused:
            continue  # someone else paused it; leave it as found
        ledger.record_pause(str(dep_id), name, owner)
        await client.pause_deployment(dep_id)
        paused.append(dep_id)
        logger.info("paused the regular schedule of %s", name)
    return paused


async def resume_schedules(client: PrefectClient, deployment_ids: list[UUID], logger) -> None:
    for dep_id in deployment_ids:
        await with_api_retries(
            lambda dep_id=dep_id: client.resume_deployment(dep_id),
            what="resuming a store schedule",
            logger=logger,
        )
        ledger.clear_pause(str(dep_id))
        logger.info("resumed the regular schedule of deployment %s", dep_id)


async def resume_orphaned_pauses(client: PrefectClient, logger) -> None:
    """Resume schedules paused by an orchestrator run that has since ended (e.g. killed)."""
    pauses = ledger.read_pauses()
    if not pauses:
        return
    ids = {p["paused_by"] for p in pauses if _is_uuid(p["paused_by"])}
    owners = await read_flow_runs_by_id(client, ids) if ids else {}
    for p in pauses:
        owner = owners.get(p["paused_by"])
        if owner is None or owner.state_type in TERMINAL:
            logger.warning(
                "resuming %s's schedule left paused by ended run %s", p["store_id"], p["paused_by"]
            )
            try:
                await resume_schedules(client, [UUID(p["deployment_id"])], logger)
            except ObjectNotFound:  # the deployment is gone: nothing left to resume
                ledger.clear_pause(p["deployment_id"])


def _is_uuid(value: str) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


async def run_backfill(
    request: BackfillRequest,
    *,
    dry_run: bool = False,
    pause_store_schedules: bool = False,
    child_timeout_seconds: float = 3600.0,
    orchestrator_run_id: str | None = None,
) -> Outcome:
    logger = get_run_logger()
    async with get_client() as client:
        # First, whatever this run turns out to do (bad input, a dry run, nothing to do): a
        # store schedule a killed orchestrator left paused gets no regular runs until resumed.
        await with_api_retries(
            lambda: resume_orphaned_pauses(client, logger),
            what="resuming schedules left paused",
            logger=logger,
        )
        resolved, snapshot, selected = await plan(request, client=client)
        title = (
            f"Catch-up (last {request.lookback_days} complete days)"
            if resolved.mode == "catch_up"
            else f"Backfill {resolved.start_date} .. {resolved.end_date}"
        )
        runs = sum(
            len(b) for b in build_lanes(selected, resolved.order, resolved.days_per_run).values()
        )
        planned_msg = (
            f"{title}: {len(resolved.stores)} stores, {resolved.partition_count} partitions, "
            f"{len(selected)} to run under policy '{resolved.reprocess}' in {runs} child "
            f"run(s) of up to {resolved.days_per_run} day(s), "
            f"{len(snapshot.in_flight_runs)} already in flight, max_parallel "
            f"{resolved.max_parallel}; {snapshot.warehouse_note()}"
        )
        logger.info(planned_msg)
        await publish_artifacts(
            resolved, snapshot, selected, {}, dry_run=True, title=title + " (plan)"
        )
        outcome = Outcome(planned=selected, dry_run=dry_run)
        if dry_run:
            outcome.summary = f"Dry run: {planned_msg}. Nothing submitted."
            return outcome
        if not selected and not snapshot.in_flight_runs:
            outcome.summary = f"Nothing to do: {grid.summarize(snapshot.states)}."
            return outcome

        deployed = await with_api_retries(
            lambda: store_deployment_ids(client, [s.store_id for s in resolved.stores]),
            what="reading store deployments",
        )
        missing = sorted({s.store_id for s in resolved.stores} - set(deployed))
        if missing:
            raise BackfillInputError(
                f"no deployment for store(s) {', '.join(missing)}: run `clickstream stores sync` "
                "and `make deploy` (prefect deploy --all)"
            )
        paused: list[UUID] = []
        try:
            if pause_store_schedules:
                paused = await pause_schedules(
                    client, [s.store_id for s in resolved.stores], orchestrator_run_id or "", logger
                )
            dispatcher = Dispatcher(
                client,
                resolved,
                snapshot,
                selected,
                orchestrator_run_id=orchestrator_run_id,
                child_timeout_seconds=child_timeout_seconds,
                logger=logger,
            )
            outcome.planned = dispatcher.planned
            try:
                outcome.results = await dispatcher.run()
            finally:
                outcome.child_runs = dispatcher.child_runs
        finally:
            if paused:
                await resume_schedules(client, paused, logger)
        await publish_artifacts(
            resolved, snapshot, selected, outcome.results, dry_run=False, title=title
        )
        done = sum(1 for r in outcome.results.values() if r.state == "completed")
        outcome.summary = (
            f"{title}: {done}/{len(outcome.planned)} partitions completed "
            f"({outcome.child_runs} child run(s) created)"
        )
        if outcome.failed:
            names = ", ".join(f"{s} {d}" for s, d in outcome.failed[:50])
            more = f" (+{len(outcome.failed) - 50} more)" if len(outcome.failed) > 50 else ""
            outcome.summary += f"; {len(outcome.failed)} failed: {names}{more}"
        return outcome


async def orchestrate(request: BackfillRequest, **kwargs) -> State:
    """The orchestrator flows' body: run the backfill, end the run with what happened.

    Completed only if every planned partition completed; otherwise Failed with a message that
    names the failed partitions (bad input: every problem, before anything was created)."""
    try:
        outcome = await run_backfill(request, **kwargs)
    except BackfillInputError as exc:
        return Failed(message=str(exc))
    get_run_logger().info(outcome.summary)
    return Completed(message=outcome.summary) if outcome.ok else Failed(message=outcome.summary)
