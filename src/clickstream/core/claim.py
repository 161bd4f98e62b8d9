"""Which days of a batch are still ours to build, from the ledger as it is right now (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from clickstream.core.child_runs import next_attempt
from clickstream.core.lanes import group_runs
from clickstream.core.records import BuildRecord, DispatchRecord
from clickstream.core.states import Batch, PartitionKey

# Another orchestrator claims days and creates their run a moment later; a claim with no run
# after this long belongs to an orchestrator that died in between, and is taken over.
CLAIM_WITHOUT_RUN_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class KnownRuns:
    """What an orchestrator knows of child runs when it claims days. The collections are read,
    never copied or changed: a dispatcher passes its own (they can be large)."""

    in_flight: Collection[str] = ()  # runs it waits for: its own and adopted ones
    ended_here: Collection[str] = ()  # runs it saw end
    known_at_plan: Collection[str] = ()  # known to exist when planning: built, or active
    active_at_plan: Collection[str] = ()  # store runs not ended when planning
    # Runs looked up since planning: True ended, False live when read, None no such run.
    looked_up: Mapping[str, bool | None] = field(default_factory=dict)

    def ended(self, run_id: str) -> bool:
        """The run is known to have ended (or never existed): this orchestrator saw it end,
        it ended before the backfill planned (it recorded a build and was not active then),
        or a look-up found it ended."""
        if run_id in self.ended_here:
            return True
        if run_id in self.known_at_plan and run_id not in self.active_at_plan:
            return True
        return self.looked_up.get(run_id, False) is not False

    def exists(self, run_id: str | None) -> bool:
        """The run exists on the server. A run not looked up (it appeared after the look-up)
        is taken to exist: at worst an attempt number is skipped, never a key reused for a
        run that ended."""
        return run_id is not None and (
            run_id in self.known_at_plan or self.looked_up.get(run_id, True) is not None
        )

    def to_look_up(self, dispatches: Mapping[PartitionKey, DispatchRecord]) -> set[str]:
        """The runs these dispatches name that are neither in flight, seen ending, nor found
        ended by an earlier look-up: whether each exists and has ended is read next."""
        return {
            d.flow_run_id
            for d in dispatches.values()
            if d.flow_run_id
            and d.flow_run_id not in self.in_flight
            and d.flow_run_id not in self.ended_here
            and not self.looked_up.get(d.flow_run_id)
        }


@dataclass(frozen=True)
class ClaimDecision:
    """What to do with one store's batch of days.

    ``submit``: the days to dispatch as one run now (None: nothing now); ``adopt``: another
    trigger's runs that may still be going, and the days of the batch each covers (wait for
    them); ``later``: days another trigger has just claimed without a run yet (try again next
    round); ``counted``: days another run built after this backfill planned, with that run;
    ``back_to_lane``: the pieces not submitted now, ``later``'s days one per piece, to put
    back at the head of the store's lane in this order.
    """

    submit: Batch | None = None
    adopt: Mapping[str, Batch] = field(default_factory=dict)
    later: Batch = ()
    counted: Mapping[date, str | None] = field(default_factory=dict)
    back_to_lane: tuple[Batch, ...] = ()


def decide_claim(
    store_id: str,
    batch: Batch,
    dispatches: Mapping[PartitionKey, DispatchRecord],
    builds: Mapping[PartitionKey, BuildRecord],
    *,
    orchestrator_run_id: str | None,
    planned_at: datetime,
    now: datetime,
    runs: KnownRuns,
) -> ClaimDecision:
    """Decide about ``batch`` from each day's latest dispatch and build, read inside the
    store's dispatch claim.

    Another trigger (a second backfill, the nightly catch-up) may have dispatched or built
    some of these days since this orchestrator planned: those are adopted (we wait for that
    run) or counted as built, never built again. Idempotency keys alone cannot catch this
    once runs cover different sets of days. A day another trigger has just claimed but not
    yet created a run for is tried again on the next round. What is left is submitted as one
    run if it is still consecutive; other pieces go back to the head of the lane.
    """
    mine: list[date] = []
    later: list[date] = []
    theirs: dict[str, list[date]] = {}
    counted: dict[date, str | None] = {}
    for ds in batch:
        disp = dispatches.get((store_id, ds))
        build = builds.get((store_id, ds))
        other = (
            disp if disp is not None and disp.orchestrator_run_id != orchestrator_run_id else None
        )
        run_id = disp.flow_run_id if disp is not None else None
        if other and run_id and not runs.ended(run_id):
            # Another trigger's run of this day that may still be going, whenever it was
            # dispatched (also just before this backfill planned, too late for the plan to
            # see its run): wait for it rather than build the day again.
            theirs.setdefault(run_id, []).append(ds)
        elif other and not run_id and now - other.submitted_at < CLAIM_WITHOUT_RUN_TIMEOUT:
            later.append(ds)  # its run is being created right now
        elif (
            build is not None
            and build.status == "completed"
            and build.started_at is not None
            and build.started_at >= planned_at
            and build.flow_run_id not in runs.in_flight
        ):
            counted[ds] = build.flow_run_id
        else:
            mine.append(ds)
    pieces = group_runs(mine, "oldest_first", len(batch)) if mine else []
    pieces += [(ds,) for ds in later]
    # The lane is busy with an adopted run, waits for another trigger's run to appear, or
    # its days no longer form one run: what is not submitted now goes back.
    submit = pieces[0] if mine and not theirs else None
    return ClaimDecision(
        submit=submit,
        adopt={run_id: tuple(days) for run_id, days in theirs.items()},
        later=tuple(later),
        counted=counted,
        back_to_lane=tuple(p for p in pieces if p != submit),
    )


def submit_attempt(
    store_id: str,
    days: Batch,
    dispatches: Mapping[PartitionKey, DispatchRecord],
    dispatched_here: Mapping[PartitionKey, int],
    runs: KnownRuns,
) -> int:
    """The attempt to dispatch ``days`` with: the highest any of its days needs, given its
    latest dispatch in the ledger and ``dispatched_here`` (the attempt this orchestrator last
    created a run with, per day)."""

    def attempt(key: PartitionKey) -> int:
        if key in dispatched_here:  # dispatched by this orchestrator: its run exists
            return next_attempt(dispatched_here[key], True)
        disp = dispatches.get(key)
        if disp is None:
            return next_attempt(None, False)
        # A dispatch from the ledger may have no run: the orchestrator that wrote it died
        # before creating it. Then the same attempt (the same key) is used again.
        return next_attempt(disp.attempt, runs.exists(disp.flow_run_id))

    return max(attempt((store_id, ds)) for ds in days)
