"""The runs an orchestrator waits for, and which of them it may stop (pure).

An orchestrator waits for three kinds of store runs: its own children (it created them, with
an attempt), runs of other triggers that cover days it planned (adopted: another backfill's,
the nightly catch-up's, an operator's full refresh), and runs of a store's deployment that
name no day of it (a regular run) but hold the deployment's concurrency slot, so a child
created meanwhile would queue behind them (ENQUEUE) or be cancelled at once (CANCEL_NEW).

Only its own children are ever cancelled or timed out by it: a run of another trigger is
bounded by that trigger (its orchestrator's child timeout, its own flow timeout); cancelling
it would lose that orchestrator an attempt, or stop a full refresh half way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from clickstream.core.states import Batch

# Deployment concurrency slots are held from Pending until a run leaves Running or Cancelling
# (Prefect's SecureFlowConcurrencySlots / ReleaseFlowConcurrencySlots); a Paused run holds none.
SLOT_HOLDING_STATES = frozenset({"PENDING", "RUNNING", "CANCELLING"})


@dataclass
class InFlight:
    """A store run in flight that occupies its store's lane.

    ``own``: this orchestrator created it (``attempt`` is its attempt); otherwise it belongs
    to another trigger and is only waited for. ``days``: the planned days it builds, counted
    when it ends; empty for a run that only occupies the lane (a regular run of the store).
    ``started``: when this orchestrator started waiting (monotonic seconds).
    """

    store_id: str
    days: Batch
    attempt: int | None
    started: float | None
    own: bool = False
    overdue_noted: bool = False  # an adopted run past the child timeout was logged once


@dataclass(frozen=True)
class Timeouts:
    """What the child timeout means right now: ``cancel``, own runs in flight longer than the
    timeout (cancel each once); ``overdue``, other triggers' runs as long in flight, which are
    only logged (once), never cancelled."""

    cancel: tuple[str, ...] = ()
    overdue: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitPlan:
    """What to do with the runs in flight when the orchestrator stops (cancelled, crashed):
    ``cancel`` its own children; ``leave`` the runs of other triggers to them."""

    cancel: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()


def timeouts(in_flight: Mapping[str, InFlight], now: float, timeout_seconds: float) -> Timeouts:
    """The runs past ``timeout_seconds`` since this orchestrator started waiting for them
    (``started`` None: already cancelled, not timed again)."""
    cancel: list[str] = []
    overdue: list[str] = []
    for run_id, run in in_flight.items():
        if run.started is None or now - run.started <= timeout_seconds:
            continue
        if run.own:
            cancel.append(run_id)
        elif not run.overdue_noted:
            overdue.append(run_id)
    return Timeouts(tuple(cancel), tuple(overdue))


def on_exit(in_flight: Mapping[str, InFlight]) -> ExitPlan:
    """Cancel only the orchestrator's own children; leave every other run going."""
    return ExitPlan(
        cancel=tuple(r for r, run in in_flight.items() if run.own),
        leave=tuple(r for r, run in in_flight.items() if not run.own),
    )


def occupies_deployment(state_type: str, expected_start: datetime | None, now: datetime) -> bool:
    """Whether a run of a store's deployment occupies the store's lane: it holds the
    deployment's concurrency slot (Pending, Running, Cancelling) or takes it next (Scheduled
    and due: late, or waiting for the slot). A run scheduled for later (the schedule's
    upcoming ticks) and a Paused run hold nothing. ``now`` and ``expected_start`` are aware."""
    if state_type in SLOT_HOLDING_STATES:
        return True
    return state_type == "SCHEDULED" and expected_start is not None and expected_start <= now
