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
from prefect.settings import PREFECT_UI_URL
from prefect.states import Cancelling

from clickstream import grid, ledger
from clickstream.deployments import DBT_FLOW_NAME
from clickstream.generate import source_fingerprints
from clickstream.planning import (
    POLICY_STATES,
    BackfillInputError,
    BackfillRequest,
    LaneScheduler,
    PartitionKey,
    PartitionState,
    ResolvedRequest,
    build_lanes,
    child_run_name,
    child_tags,
    classify,
    expand_partitions,
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
    run_partition,
    store_deployment_ids,
    with_api_retries,
)
from clickstream.registry import Registry, load_registry
from clickstream.windows import partition_window


def poll_seconds() -> float:
    """How often the orchestrator looks at its children (read per call: warm-forked runs)."""
    return float(os.environ.get("CLICKSTREAM_POLL_SECONDS", "0.5"))


@dataclass
class Snapshot:
    """Everything planning needs, read once at the start."""

    states: dict[PartitionKey, PartitionState]
    builds: dict[PartitionKey, ledger.BuildRecord]
    dispatches: dict[PartitionKey, ledger.DispatchRecord]
    dispatch_runs: dict[str, FlowRun]
    in_flight_runs: dict[PartitionKey, str]  # partition -> flow run id


@dataclass
class PartitionResult:
    state: str
    attempt: int | None = None
    flow_run_id: str | None = None
    started: float | None = None
    duration_s: float | None = None
    message: str | None = None


@dataclass
class Outcome:
    planned: list[PartitionKey]
    results: dict[PartitionKey, PartitionResult] = field(default_factory=dict)
    dry_run: bool = False
    summary: str = ""

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
    partitions = expand_partitions(resolved)
    store_ids = [s.store_id for s in resolved.stores]
    start, end = resolved.start_date, resolved.end_date
    builds = ledger.read_builds(store_ids, start, end)
    dispatches = ledger.read_latest_dispatches(store_ids, start, end)
    run_ids = [d.flow_run_id for d in dispatches.values() if d.flow_run_id]
    dispatch_runs = await with_api_retries(
        lambda: read_flow_runs_by_id(client, run_ids), what="reading dispatched runs"
    )
    wanted = set(partitions)
    in_flight: dict[PartitionKey, str] = {}
    for key, disp in dispatches.items():
        run = dispatch_runs.get(str(disp.flow_run_id)) if disp.flow_run_id else None
        if run is not None and run.state_type not in TERMINAL and key in wanted:
            in_flight[key] = str(run.id)
    for run in await with_api_retries(
        lambda: read_active_store_runs(client), what="reading active store runs"
    ):
        key = run_partition(run)
        if key in wanted and key not in in_flight:
            in_flight[key] = str(run.id)

    current: dict[PartitionKey, str] | None = None
    if with_fingerprints:
        current = {}
        for store in resolved.stores:
            built_days = [
                ds
                for ds in resolved.dates_by_store[store.store_id]
                if (store.store_id, ds) in builds
            ]
            if not built_days:
                continue
            windows = [partition_window(store.timezone, ds) for ds in built_days]
            for ds, fp in source_fingerprints(store, windows).items():
                current[(store.store_id, ds)] = fp.token
    states = classify(
        partitions,
        build_status={k: b.status for k, b in builds.items()},
        built_fingerprints={k: b.fingerprint for k, b in builds.items()},
        current_fingerprints=current,
        in_flight=in_flight.keys(),
    )
    return Snapshot(states, builds, dispatches, dispatch_runs, in_flight)


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
        self.scheduler = LaneScheduler(build_lanes(selected, resolved.order), resolved.max_parallel)
        self.retry_states = POLICY_STATES[resolved.reprocess]
        self.in_flight: dict[PartitionKey, PartitionResult] = {}
        self.results: dict[PartitionKey, PartitionResult] = {}
        self.attempts_used: dict[PartitionKey, int] = {}
        self.latest_attempt: dict[PartitionKey, int] = {
            k: d.attempt for k, d in snapshot.dispatches.items()
        }
        self.planned = list(selected) + [
            k for k in snapshot.in_flight_runs if k not in set(selected)
        ]
        self.progress_id: UUID | None = None
        self.max_in_flight_seen = 0

    # -- progress -------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return len(self.results)

    async def _progress(self) -> None:
        total = max(len(self.planned), 1)
        pct = round(100.0 * self.finished / total, 1)
        failed = sum(1 for r in self.results.values() if r.state != "completed")
        desc = (
            f"{self.finished}/{len(self.planned)} partitions finished, {failed} failed, "
            f"{len(self.in_flight)} in flight"
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
        for key, run_id in self.snapshot.in_flight_runs.items():
            sid, ds = key
            self.scheduler.occupy(sid, ds)
            self.in_flight[key] = PartitionResult(
                state="in_flight",
                attempt=self.latest_attempt.get(key),
                flow_run_id=run_id,
                started=time.monotonic(),
            )
            self.logger.info("adopting in-flight run %s for %s %s", run_id, sid, ds)

    async def _submit(self, key: PartitionKey) -> None:
        sid, ds = key
        latest = self.latest_attempt.get(key)
        known_run = None
        disp = self.snapshot.dispatches.get(key)
        if disp is not None and disp.attempt == latest and disp.flow_run_id:
            known_run = self.snapshot.dispatch_runs.get(str(disp.flow_run_id))
        # A dispatch made by this run always has a run; one from the ledger may not (the
        # previous orchestrator died between writing the ledger and creating the run).
        attempt = next_attempt(latest, key in self.attempts_used or known_run is not None)
        key_str = idempotency_key(sid, ds, attempt)
        dispatch = ledger.DispatchRecord(
            store_id=sid,
            ds=ds,
            attempt=attempt,
            idempotency_key=key_str,
            flow_run_id=None,
            orchestrator_run_id=self.orchestrator_run_id,
            submitted_at=ledger.utcnow(),
        )
        ledger.record_dispatch(dispatch)
        run = await with_api_retries(
            lambda: run_deployment(
                name=f"{DBT_FLOW_NAME}/{sid}",
                parameters={"store_id": sid, "ds": ds.isoformat()},
                timeout=0,
                as_subflow=True,
                idempotency_key=key_str,
                flow_run_name=child_run_name(sid, ds, attempt),
                tags=child_tags(sid, ds),
            ),
            what=f"creating the run for {sid} {ds}",
            logger=self.logger,
        )
        ledger.record_dispatch(replace(dispatch, flow_run_id=str(run.id)))
        self.latest_attempt[key] = attempt
        self.attempts_used[key] = self.attempts_used.get(key, 0) + 1
        self.in_flight[key] = PartitionResult(
            state="in_flight", attempt=attempt, flow_run_id=str(run.id), started=time.monotonic()
        )
        self.max_in_flight_seen = max(self.max_in_flight_seen, len(self.in_flight))
        self.logger.info("dispatched %s %s attempt %s -> %s", sid, ds, attempt, run.name)

    async def _finish(self, key: PartitionKey, run: FlowRun) -> None:
        sid, ds = key
        res = self.in_flight.pop(key)
        self.scheduler.release(sid)
        state = run.state
        res.duration_s = (
            (run.end_time - run.start_time).total_seconds()
            if run.end_time and run.start_time
            else None
        )
        if run.state_type == StateType.COMPLETED:
            res.state = "completed"
            self.results[key] = res
            self.logger.info("%s %s completed (attempt %s)", sid, ds, res.attempt)
        else:
            res.state = "failed"
            res.message = (
                f"{state.name if state else run.state_type}: {state.message if state else ''}"
            )
            used = self.attempts_used.get(key, 0)
            retryable = PartitionState.FAILED in self.retry_states or used > 0
            if used < self.resolved.max_attempts and retryable:
                self.logger.warning(
                    "%s %s attempt %s ended %s; retrying (%s of %s attempts used)",
                    sid,
                    ds,
                    res.attempt,
                    res.message,
                    used,
                    self.resolved.max_attempts,
                )
                self.scheduler.retry(sid, ds)
                return
            self.results[key] = res
            self.logger.error(
                "%s %s failed after attempt %s: %s", sid, ds, res.attempt, res.message
            )

    async def _cancel_child(self, key: PartitionKey, res: PartitionResult, why: str) -> None:
        try:
            await self.client.set_flow_run_state(
                UUID(res.flow_run_id), Cancelling(message=why), force=True
            )
        except Exception as exc:
            self.logger.warning("could not cancel %s: %s", res.flow_run_id, exc)

    async def run(self) -> dict[PartitionKey, PartitionResult]:
        self._adopt_in_flight()
        await self._progress()
        try:
            while not self.scheduler.done:
                for key in self.scheduler.next_batch():
                    await self._submit(key)
                await asyncio.sleep(poll_seconds())
                if not self.in_flight:
                    continue
                ids = [r.flow_run_id for r in self.in_flight.values()]
                runs = await with_api_retries(
                    lambda ids=ids: read_flow_runs_by_id(self.client, ids),
                    what="polling child runs",
                    logger=self.logger,
                )
                finished = 0
                for key, res in list(self.in_flight.items()):
                    run = runs.get(str(res.flow_run_id))
                    if run is not None and run.state_type in TERMINAL:
                        await self._finish(key, run)
                        finished += 1
                    elif (
                        res.started is not None
                        and time.monotonic() - res.started > self.child_timeout_seconds
                    ):
                        self.logger.error(
                            "%s %s exceeded %ss; cancelling its run",
                            key[0],
                            key[1],
                            self.child_timeout_seconds,
                        )
                        await self._cancel_child(key, res, "backfill child timeout")
                        res.started = None  # cancel once; its terminal state ends it
                if finished:
                    # Refill the freed lanes first; the progress artifact can wait a moment.
                    for key in self.scheduler.next_batch():
                        await self._submit(key)
                    await self._progress()
        except BaseException:
            # Parent cancelled or crashed: stop what we started, dispatch nothing more.
            for key, res in list(self.in_flight.items()):
                await self._cancel_child(key, res, "backfill orchestrator stopped")
            raise
        await self._progress()
        return self.results


def request_from_params(**params) -> BackfillRequest:
    stores = tuple(params.pop("stores", None) or ())
    return BackfillRequest(stores=stores, **params)


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


def partition_table(
    snapshot: Snapshot,
    selected: list[PartitionKey],
    results: Mapping[PartitionKey, PartitionResult],
    dry_run: bool,
) -> list[dict]:
    chosen = set(selected)
    rows = []
    for key in sorted(snapshot.states):
        sid, ds = key
        res = results.get(key)
        build = snapshot.builds.get(key)
        if res is not None:
            state, attempt, run_id = res.state, res.attempt, res.flow_run_id
            duration = round(res.duration_s, 1) if res.duration_s is not None else None
            note = res.message or ""
        else:
            state = str(snapshot.states[key])
            attempt = None
            run_id = build.flow_run_id if build else snapshot.in_flight_runs.get(key)
            duration = None
            note = ("would run" if dry_run else "not run") if key in chosen else "skipped by policy"
        rows.append(
            {
                "store_id": sid,
                "ds": ds.isoformat(),
                "state": state,
                "attempt": attempt,
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
    md = grid.render_markdown(states, title=title, stores=[s.store_id for s in resolved.stores])
    prefix = "catch-up" if resolved.mode == "catch_up" else "backfill"
    await acreate_markdown_artifact(
        markdown=md, key=f"{prefix}-grid", description=f"{title}: status grid"
    )
    await acreate_table_artifact(
        table=partition_table(snapshot, selected, results, dry_run),
        key=f"{prefix}-partitions",
        description=f"{title}: every partition's state, attempt, duration and run",
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
    owners = await read_flow_runs_by_id(client, {p["paused_by"] for p in pauses})
    for p in pauses:
        owner = owners.get(p["paused_by"])
        if owner is None or owner.state_type in TERMINAL:
            logger.warning(
                "resuming %s's schedule left paused by ended run %s", p["store_id"], p["paused_by"]
            )
            await resume_schedules(client, [UUID(p["deployment_id"])], logger)


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
        resolved, snapshot, selected = await plan(request, client=client)
        title = (
            f"Catch-up (last {request.lookback_days} complete days)"
            if resolved.mode == "catch_up"
            else f"Backfill {resolved.start_date} .. {resolved.end_date}"
        )
        planned_msg = (
            f"{title}: {len(resolved.stores)} stores, {resolved.partition_count} partitions, "
            f"{len(selected)} to run under policy '{resolved.reprocess}', "
            f"{len(snapshot.in_flight_runs)} already in flight, max_parallel "
            f"{resolved.max_parallel}"
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
        await resume_orphaned_pauses(client, logger)
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
            outcome.results = await dispatcher.run()
        finally:
            if paused:
                await resume_schedules(client, paused, logger)
        await publish_artifacts(
            resolved, snapshot, selected, outcome.results, dry_run=False, title=title
        )
        done = sum(1 for r in outcome.results.values() if r.state == "completed")
        outcome.summary = f"{title}: {done}/{len(outcome.planned)} partitions completed"
        if outcome.failed:
            names = ", ".join(f"{s} {d}" for s, d in outcome.failed[:50])
            more = f" (+{len(outcome.failed) - 50} more)" if len(outcome.failed) > 50 else ""
            outcome.summary += f"; {len(outcome.failed)} failed: {names}{more}"
        return outcome
