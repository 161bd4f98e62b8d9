"""Lane dispatch of child runs: claim, create, poll, retry, time out and cancel them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from clickstream import settings
from clickstream.adapters import ledger
from clickstream.adapters.prefect_api import TERMINAL, read_flow_runs_by_id, with_api_retries
from clickstream.core.child_runs import (
    batch_label,
    child_parameters,
    child_run_name,
    child_tags,
    idempotency_key,
)
from clickstream.core.claim import ClaimDecision, KnownRuns, decide_claim, submit_attempt
from clickstream.core.in_flight import InFlight, on_exit, timeouts
from clickstream.core.lanes import LaneScheduler, build_lanes
from clickstream.core.requests import ResolvedRequest
from clickstream.core.states import POLICY_STATES, Batch, PartitionKey, PartitionState
from clickstream.names import store_deployment
from clickstream.pipelines.backfill.occupancy import NOT_OURS, runs_occupying
from clickstream.pipelines.backfill.snapshot import Snapshot


@dataclass
class PartitionResult:
    state: str
    attempt: int | None = None
    flow_run_id: str | None = None
    started: float | None = None
    duration_s: float | None = None
    message: str | None = None
    run_days: str | None = None  # the days of the child run that built it


class Dispatcher:
    """Lane-based dispatch of child runs: one run per store, max_parallel overall. Days are
    claimed under the ledger's per-store lock (core.claim decides), then their run created.

    Only its own children (runs it created) are cancelled, on exit or past the child timeout;
    runs of other triggers it waits for are left to them (core.in_flight decides)."""

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
        deployments: Mapping[str, UUID] | None = None,
    ) -> None:
        self.client = client
        self.resolved = resolved
        self.snapshot = snapshot
        self.logger = logger
        self.orchestrator_run_id = orchestrator_run_id
        self.child_timeout_seconds = child_timeout_seconds
        self.deployments = dict(deployments or {})  # store id -> its deployment's id
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
            self._wait_for(sid, run_id, days)
            self.logger.info(
                "adopting in-flight run %s for %s %s (%s)", run_id, sid, batch_label(days), NOT_OURS
            )

    def _wait_for(
        self, sid: str, run_id: str, days: Batch, attempt: int | None = None, own: bool = False
    ) -> None:
        """Occupy the store's lane with a run in flight (ours, or another trigger's)."""
        self.scheduler.occupy(sid, run_id)
        self.in_flight[run_id] = InFlight(sid, days, attempt, time.monotonic(), own=own)

    def _known_runs(self) -> KnownRuns:
        """What this orchestrator knows of runs right now (its own collections, not copies)."""
        return KnownRuns(
            in_flight=self.in_flight,
            ended_here=self.ended_runs,
            known_at_plan=self.snapshot.known_runs,
            active_at_plan=self.snapshot.active_runs,
            looked_up=self.run_ended,
        )

    async def _look_up_runs(self, sid: str, batch: Batch) -> None:
        """Read (through the API, outside any ledger lock) the runs the ledger's latest
        dispatches of these days name that this orchestrator knows nothing about yet: whether
        each exists, and whether it has ended. ``run_ended`` maps a run to True (ended),
        False (live when read) or None (no such run)."""
        dispatches = ledger.read_latest_dispatches([sid], batch[0], batch[-1])
        ids = self._known_runs().to_look_up(dispatches)
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
        candidates = self.scheduler.next_batch()
        if not candidates:
            return
        # Any other run of a store's deployment in flight occupies its lane (see occupancy).
        known = set(self.in_flight) | self.ended_runs
        busy = set()
        for sid, run in await runs_occupying(
            self.client, self.deployments, [c[0] for c in candidates], known, self.logger
        ):
            self._wait_for(sid, str(run.id), ())
            busy.add(sid)
        for sid, batch in candidates:
            if sid in busy:
                self.scheduler.put_back(sid, [batch])
                continue
            await self._look_up_runs(sid, batch)
            # Decide and record inside the store's dispatch claim (ledger only, no API call:
            # it is held for milliseconds): another orchestrator deciding about this store
            # waits, then sees what this one took.
            with ledger.dispatch_claim(sid) as conn:
                dispatches = ledger.read_latest_dispatches([sid], batch[0], batch[-1], conn=conn)
                builds = ledger.read_builds([sid], batch[0], batch[-1], conn=conn)
                known = self._known_runs()
                decision = decide_claim(
                    sid,
                    batch,
                    dispatches,
                    builds,
                    orchestrator_run_id=self.orchestrator_run_id,
                    planned_at=self.snapshot.taken_at,
                    now=ledger.utcnow(),
                    runs=known,
                )
                self._apply(sid, decision)
                mine = decision.submit
                if not mine:
                    continue
                attempt = submit_attempt(sid, mine, dispatches, self.latest_attempt, known)
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
                name=store_deployment(sid),
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
        self._wait_for(sid, run_id, batch, attempt, own=True)
        self.child_runs += 1
        self.logger.info(
            "dispatched %s %s attempt %s -> %s", sid, batch_label(batch), attempt, run.name
        )

    def _apply(self, sid: str, decision: ClaimDecision) -> None:
        """Carry out a claim decision, all but its submission: count the days another run
        built, wait for the runs adopted, put the pieces not submitted back in the lane."""
        for ds, run_id in decision.counted.items():
            self.results[(sid, ds)] = PartitionResult(
                state="completed",
                flow_run_id=run_id,
                message="built by another run after this backfill was planned",
                run_days=batch_label((ds,)),
            )
        for run_id, days in decision.adopt.items():
            self.logger.info(
                "%s %s: dispatched by another trigger since this backfill was planned; "
                "adopting run %s (%s)",
                sid,
                batch_label(days),
                run_id,
                NOT_OURS,
            )
            self._wait_for(sid, run_id, days)
        if decision.back_to_lane:
            self.scheduler.put_back(sid, decision.back_to_lane)

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
        if not days:  # a run that only occupied the lane (a regular run): nothing to count
            self.logger.info(
                "%s: run %s of its deployment ended %s; dispatching resumes",
                sid,
                run_id,
                run.state_name or run.state_type.value,
            )
            return
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

    async def _time_out(self) -> None:
        """Cancel own children in flight longer than the child timeout (once each); log
        other triggers' runs as long in flight (once each), and go on waiting for them."""
        due = timeouts(self.in_flight, time.monotonic(), self.child_timeout_seconds)
        for run_id in due.cancel:
            flying = self.in_flight[run_id]
            self.logger.error(
                "%s %s exceeded %ss; cancelling its run",
                flying.store_id,
                batch_label(flying.days),
                self.child_timeout_seconds,
            )
            await self._cancel_child(run_id, "backfill child timeout")
            flying.started = None  # cancel once; its terminal state ends it
        for run_id in due.overdue:
            flying = self.in_flight[run_id]
            flying.overdue_noted = True
            self.logger.warning(
                "%s%s: run %s of another trigger has been in flight over %ss; adopted runs "
                "are not timed out by this backfill (their own orchestrator or flow timeout "
                "bounds them); still waiting for it",
                flying.store_id,
                f" {batch_label(flying.days)}" if flying.days else "",
                run_id,
                self.child_timeout_seconds,
            )

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
                await asyncio.sleep(settings.get().poll_seconds)
                if not self.in_flight:
                    continue
                ids = list(self.in_flight)
                runs = await with_api_retries(
                    lambda ids=ids: read_flow_runs_by_id(self.client, ids),
                    what="polling child runs",
                    logger=self.logger,
                )
                finished = 0
                for run_id in list(self.in_flight):
                    run = runs.get(run_id)
                    if run is not None and run.state_type in TERMINAL:
                        await self._finish(run_id, run)
                        finished += 1
                await self._time_out()
                if finished:
                    # Refill the freed lanes first; the progress artifact can wait a moment.
                    await self._submit_ready()
                    await self._progress()
        except BaseException:
            # Parent cancelled or crashed: stop what we started, dispatch nothing more. Runs
            # of other triggers go on: their own orchestrator (or flow) bounds them.
            plan = on_exit(self.in_flight)
            if plan.leave:
                self.logger.warning(
                    "backfill stopping: leaving %s run(s) of other triggers going (%s): %s",
                    len(plan.leave),
                    NOT_OURS,
                    ", ".join(plan.leave),
                )
            for run_id in plan.cancel:
                await self._cancel_child(run_id, "backfill orchestrator stopped")
            raise
        await self._progress()
        return self.results
