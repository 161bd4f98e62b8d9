"""The orchestrator flows' body: resume left pauses, plan, publish, dispatch, report; the run
ends Completed only if every planned partition completed.
"""

from __future__ import annotations

from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, State

from clickstream.adapters.prefect_api import store_deployment_ids, with_api_retries
from clickstream.core import grid
from clickstream.core.lanes import build_lanes
from clickstream.core.requests import BackfillInputError, BackfillRequest, CatchUpRequest
from clickstream.pipelines.backfill.dispatcher import Dispatcher
from clickstream.pipelines.backfill.report import Outcome, publish_artifacts
from clickstream.pipelines.backfill.schedules import (
    pause_schedules,
    resume_orphaned_pauses,
    resume_schedules,
)
from clickstream.pipelines.backfill.snapshot import plan


async def run_backfill(
    request: BackfillRequest | CatchUpRequest,
    *,
    dry_run: bool = False,
    pause_store_schedules: bool = False,
    child_timeout_seconds: float | None = None,
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
            if isinstance(request, CatchUpRequest)
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
                child_timeout_seconds=(
                    request.child_timeout_minutes * 60.0
                    if child_timeout_seconds is None
                    else child_timeout_seconds
                ),
                logger=logger,
                deployments=deployed,
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


async def orchestrate(request: BackfillRequest | CatchUpRequest, **kwargs) -> State:
    """The orchestrator flows' body: run the backfill, end the run with what happened.

    Completed only if every planned partition completed; otherwise Failed with a message that
    names the failed partitions (bad input: every problem, before anything was created)."""
    try:
        outcome = await run_backfill(request, **kwargs)
    except BackfillInputError as exc:
        return Failed(message=str(exc))
    get_run_logger().info(outcome.summary)
    return Completed(message=outcome.summary) if outcome.ok else Failed(message=outcome.summary)
