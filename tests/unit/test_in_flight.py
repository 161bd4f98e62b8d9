"""Which runs in flight an orchestrator may stop (core.in_flight), as tables: only its own."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from clickstream.core.in_flight import ExitPlan, InFlight, Timeouts, occupies_deployment, on_exit
from clickstream.core.in_flight import timeouts as decide_timeouts

DAY = (date(2026, 11, 1),)
TIMEOUT = 60.0
NOW = 1000.0


def own(started: float | None, **kw) -> InFlight:
    return InFlight("au-sydney", DAY, attempt=1, started=started, own=True, **kw)


def adopted(started: float | None, days=DAY, **kw) -> InFlight:
    return InFlight("au-sydney", days, attempt=None, started=started, **kw)


TIMEOUT_CASES = {
    "own child within the timeout: nothing": dict(
        runs={"mine": own(NOW - 30)}, expected=Timeouts()
    ),
    "own child past the timeout: cancel it": dict(
        runs={"mine": own(NOW - 61)}, expected=Timeouts(cancel=("mine",))
    ),
    "own child already cancelled (started None): not again": dict(
        runs={"mine": own(None)}, expected=Timeouts()
    ),
    "adopted run past the timeout: never cancelled, only noted": dict(
        runs={"theirs": adopted(NOW - 3600)}, expected=Timeouts(overdue=("theirs",))
    ),
    "adopted run already noted: nothing more": dict(
        runs={"theirs": adopted(NOW - 3600, overdue_noted=True)}, expected=Timeouts()
    ),
    "a regular run occupying the lane (no days), past the timeout: noted, not cancelled": dict(
        runs={"regular": adopted(NOW - 3600, days=())}, expected=Timeouts(overdue=("regular",))
    ),
    "mixed: only the own overdue child is cancelled": dict(
        runs={
            "mine-late": own(NOW - 120),
            "mine-fresh": own(NOW - 5),
            "theirs-late": adopted(NOW - 120),
            "theirs-fresh": adopted(NOW - 5),
        },
        expected=Timeouts(cancel=("mine-late",), overdue=("theirs-late",)),
    ),
    "exactly at the timeout: not yet": dict(runs={"mine": own(NOW - TIMEOUT)}, expected=Timeouts()),
}


@pytest.mark.parametrize("case", TIMEOUT_CASES.values(), ids=TIMEOUT_CASES.keys())
def test_only_own_children_time_out(case):
    assert decide_timeouts(case["runs"], NOW, TIMEOUT) == case["expected"]


EXIT_CASES = {
    "nothing in flight": dict(runs={}, expected=ExitPlan()),
    "own children are cancelled": dict(
        runs={"a": own(NOW), "b": own(None)}, expected=ExitPlan(cancel=("a", "b"))
    ),
    "adopted runs and regular runs are left going": dict(
        runs={"theirs": adopted(NOW), "regular": adopted(NOW, days=())},
        expected=ExitPlan(leave=("theirs", "regular")),
    ),
    "mixed": dict(
        runs={"mine": own(NOW), "theirs": adopted(NOW)},
        expected=ExitPlan(cancel=("mine",), leave=("theirs",)),
    ),
}


@pytest.mark.parametrize("case", EXIT_CASES.values(), ids=EXIT_CASES.keys())
def test_on_exit_only_own_children_are_cancelled(case):
    assert on_exit(case["runs"]) == case["expected"]


T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

OCCUPY_CASES = {
    "running (holds the deployment slot)": ("RUNNING", T - timedelta(hours=1), True),
    "pending (holds the slot)": ("PENDING", T, True),
    "cancelling (holds the slot until it ends)": ("CANCELLING", T - timedelta(hours=1), True),
    "scheduled and due (late, or waiting for the slot)": (
        "SCHEDULED",
        T - timedelta(seconds=1),
        True,
    ),
    "scheduled right now": ("SCHEDULED", T, True),
    "scheduled for a later tick": ("SCHEDULED", T + timedelta(minutes=30), False),
    "scheduled with no start time": ("SCHEDULED", None, False),
    "paused (releases the slot)": ("PAUSED", T - timedelta(hours=1), False),
    "completed": ("COMPLETED", T - timedelta(hours=1), False),
    "cancelled": ("CANCELLED", T - timedelta(hours=1), False),
}


@pytest.mark.parametrize("case", OCCUPY_CASES.values(), ids=OCCUPY_CASES.keys())
def test_which_deployment_runs_occupy_the_lane(case):
    state, expected_start, expected = case
    assert occupies_deployment(state, expected_start, T) is expected
