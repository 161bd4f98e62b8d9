"""The claim decision (core.claim) as a table: ledger rows in, what to do with each day out."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from clickstream.core.claim import (
    CLAIM_WITHOUT_RUN_TIMEOUT,
    ClaimDecision,
    KnownRuns,
    decide_claim,
    submit_attempt,
)
from clickstream.core.records import BuildRecord, DispatchRecord

SID = "au-sydney"
ME = "orchestrator-me"
OTHER = "orchestrator-other"
PLANNED = datetime(2026, 11, 20, 12, 0, 0)
NOW = PLANNED + timedelta(minutes=5)


def d(day: int) -> date:
    return date(2026, 11, day)


def batch(*days: int) -> tuple[date, ...]:
    return tuple(d(n) for n in days)


def dispatch(day, run=None, by=OTHER, attempt=1, at=PLANNED - timedelta(minutes=1)):
    return DispatchRecord(
        store_id=SID,
        ds=d(day),
        attempt=attempt,
        idempotency_key=f"key-{day}-{attempt}",
        flow_run_id=run,
        orchestrator_run_id=by,
        submitted_at=at,
    )


def build(day, run, status="completed", started=PLANNED + timedelta(minutes=1)):
    return BuildRecord(
        store_id=SID,
        ds=d(day),
        status=status,
        flow_run_id=run,
        fingerprint="fp",
        built_at=started,
        started_at=started,
    )


CASES = {
    "nothing in the ledger: the whole batch is ours": dict(
        batch=batch(1, 2, 3),
        expected=ClaimDecision(submit=batch(1, 2, 3)),
    ),
    "our own dispatch (a retry): ours again": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-mine", by=ME)],
        runs=KnownRuns(ended_here={"run-mine"}),
        expected=ClaimDecision(submit=batch(1)),
    ),
    "another trigger's live run: adopt it, submit nothing": dict(
        batch=batch(1, 2),
        dispatches=[dispatch(1, run="run-a"), dispatch(2, run="run-a")],
        runs=KnownRuns(looked_up={"run-a": False}),
        expected=ClaimDecision(adopt={"run-a": batch(1, 2)}),
    ),
    "another trigger's run not looked up and unknown: taken to be live": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-a")],
        expected=ClaimDecision(adopt={"run-a": batch(1)}),
    ),
    "another trigger's run that was active when planning: live": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-a")],
        runs=KnownRuns(known_at_plan={"run-a"}, active_at_plan={"run-a"}),
        expected=ClaimDecision(adopt={"run-a": batch(1)}),
    ),
    "another trigger's run found ended, day not built since: ours": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-a")],
        runs=KnownRuns(looked_up={"run-a": True}),
        expected=ClaimDecision(submit=batch(1)),
    ),
    "another trigger's run that never existed: ours": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-a")],
        runs=KnownRuns(looked_up={"run-a": None}),
        expected=ClaimDecision(submit=batch(1)),
    ),
    "another trigger's run ended before planning (built, not active): ours": dict(
        batch=batch(1),
        dispatches=[dispatch(1, run="run-a")],
        runs=KnownRuns(known_at_plan={"run-a"}),
        expected=ClaimDecision(submit=batch(1)),
    ),
    "another trigger's run seen ending here, built after planning: counted": dict(
        batch=batch(1, 2),
        dispatches=[dispatch(1, run="run-a"), dispatch(2, run="run-a")],
        builds=[build(1, "run-a"), build(2, "run-a")],
        runs=KnownRuns(ended_here={"run-a"}),
        expected=ClaimDecision(counted={d(1): "run-a", d(2): "run-a"}),
    ),
    "claim without a run younger than the timeout: later": dict(
        batch=batch(1),
        dispatches=[dispatch(1, at=NOW - CLAIM_WITHOUT_RUN_TIMEOUT + timedelta(seconds=1))],
        expected=ClaimDecision(later=batch(1), back_to_lane=(batch(1),)),
    ),
    "claim without a run exactly as old as the timeout: taken over": dict(
        batch=batch(1),
        dispatches=[dispatch(1, at=NOW - CLAIM_WITHOUT_RUN_TIMEOUT)],
        expected=ClaimDecision(submit=batch(1)),
    ),
    "claim without a run older than the timeout: taken over": dict(
        batch=batch(1, 2),
        dispatches=[dispatch(1, at=NOW - timedelta(minutes=10))],
        expected=ClaimDecision(submit=batch(1, 2)),
    ),
    "our own claim without a run (we died before creating it): ours": dict(
        batch=batch(1),
        dispatches=[dispatch(1, by=ME, at=NOW)],
        expected=ClaimDecision(submit=batch(1)),
    ),
    "built after planning by another run: counted with that run": dict(
        batch=batch(1, 2),
        builds=[build(2, "run-b")],
        expected=ClaimDecision(submit=batch(1), counted={d(2): "run-b"}),
    ),
    "built before planning: ours (the plan chose it)": dict(
        batch=batch(1),
        builds=[build(1, "run-b", started=PLANNED - timedelta(seconds=1))],
        expected=ClaimDecision(submit=batch(1)),
    ),
    "built exactly when planning: counted": dict(
        batch=batch(1),
        builds=[build(1, "run-b", started=PLANNED)],
        expected=ClaimDecision(counted={d(1): "run-b"}),
    ),
    "failed after planning: ours": dict(
        batch=batch(1),
        builds=[build(1, "run-b", status="failed")],
        expected=ClaimDecision(submit=batch(1)),
    ),
    "a build with no start time: ours": dict(
        batch=batch(1),
        builds=[build(1, "run-b", started=None)],
        expected=ClaimDecision(submit=batch(1)),
    ),
    "built after planning by a run of ours in flight: not counted, ours": dict(
        batch=batch(1),
        builds=[build(1, "run-flying")],
        runs=KnownRuns(in_flight={"run-flying"}),
        expected=ClaimDecision(submit=batch(1)),
    ),
    "a built day in the middle splits the batch: first piece now, the rest back": dict(
        batch=batch(1, 2, 3, 4, 5),
        builds=[build(3, "run-b")],
        expected=ClaimDecision(
            submit=batch(1, 2), counted={d(3): "run-b"}, back_to_lane=(batch(4, 5),)
        ),
    ),
    "a mix: counted, later and a gap; ours first, then the later day": dict(
        batch=batch(1, 2, 3, 4, 5, 6),
        dispatches=[dispatch(4, at=NOW - timedelta(seconds=2))],
        builds=[build(2, "run-b")],
        expected=ClaimDecision(
            submit=batch(1),
            later=batch(4),
            counted={d(2): "run-b"},
            back_to_lane=(batch(3), batch(5, 6), batch(4)),
        ),
    ),
    "an adopted run holds the lane: all our pieces go back": dict(
        batch=batch(1, 2, 3),
        dispatches=[dispatch(2, run="run-a")],
        expected=ClaimDecision(adopt={"run-a": batch(2)}, back_to_lane=(batch(1), batch(3))),
    ),
    "adopting two different runs": dict(
        batch=batch(1, 2, 3, 4),
        dispatches=[
            dispatch(1, run="run-a"),
            dispatch(2, run="run-a"),
            dispatch(3, run="run-b", by="orchestrator-third"),
            dispatch(4, run="run-ended"),
        ],
        runs=KnownRuns(looked_up={"run-a": False, "run-b": False, "run-ended": True}),
        expected=ClaimDecision(
            adopt={"run-a": batch(1, 2), "run-b": batch(3)}, back_to_lane=(batch(4),)
        ),
    ),
    "everything counted or adopted: nothing to submit, nothing back": dict(
        batch=batch(1, 2),
        dispatches=[dispatch(1, run="run-a")],
        builds=[build(2, "run-b")],
        expected=ClaimDecision(adopt={"run-a": batch(1)}, counted={d(2): "run-b"}),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_claim_decision(case):
    decision = decide_claim(
        SID,
        case["batch"],
        {(SID, r.ds): r for r in case.get("dispatches", [])},
        {(SID, r.ds): r for r in case.get("builds", [])},
        orchestrator_run_id=ME,
        planned_at=PLANNED,
        now=NOW,
        runs=case.get("runs", KnownRuns()),
    )
    assert decision == case["expected"]


def test_days_of_another_store_are_not_read():
    other_store = DispatchRecord(
        store_id="in-mumbai",
        ds=d(1),
        attempt=1,
        idempotency_key="k",
        flow_run_id="run-x",
        orchestrator_run_id=OTHER,
        submitted_at=NOW,
    )
    decision = decide_claim(
        SID,
        batch(1),
        {("in-mumbai", d(1)): other_store},
        {},
        orchestrator_run_id=ME,
        planned_at=PLANNED,
        now=NOW,
        runs=KnownRuns(),
    )
    assert decision == ClaimDecision(submit=batch(1))


ATTEMPTS = {
    "never dispatched: 1": dict(days=batch(1), expected=1),
    "dispatched here with attempt 2: 3": dict(days=batch(1), dispatched_here={1: 2}, expected=3),
    "dispatched here wins over the ledger": dict(
        days=batch(1),
        dispatches=[dispatch(1, run="r", attempt=5)],
        dispatched_here={1: 1},
        expected=2,
    ),
    "ledger dispatch whose run ended: the next attempt": dict(
        days=batch(1),
        dispatches=[dispatch(1, run="r", attempt=2)],
        runs=KnownRuns(looked_up={"r": True}),
        expected=3,
    ),
    "ledger dispatch whose run built before planning: the next attempt": dict(
        days=batch(1),
        dispatches=[dispatch(1, run="r", attempt=2)],
        runs=KnownRuns(known_at_plan={"r"}),
        expected=3,
    ),
    "ledger dispatch whose run was never looked up: taken to exist": dict(
        days=batch(1),
        dispatches=[dispatch(1, run="r", attempt=2)],
        expected=3,
    ),
    "ledger dispatch whose run does not exist: the same attempt (same key)": dict(
        days=batch(1),
        dispatches=[dispatch(1, run="r", attempt=2)],
        runs=KnownRuns(looked_up={"r": None}),
        expected=2,
    ),
    "ledger dispatch without a run: the same attempt": dict(
        days=batch(1),
        dispatches=[dispatch(1, attempt=4)],
        expected=4,
    ),
    "several days: the highest any needs": dict(
        days=batch(1, 2, 3),
        dispatches=[dispatch(2, run="r", attempt=2), dispatch(3, attempt=1)],
        dispatched_here={1: 1},
        expected=3,
    ),
}


@pytest.mark.parametrize("case", ATTEMPTS.values(), ids=list(ATTEMPTS))
def test_submit_attempt(case):
    attempt = submit_attempt(
        SID,
        case["days"],
        {(SID, r.ds): r for r in case.get("dispatches", [])},
        {(SID, d(n)): a for n, a in case.get("dispatched_here", {}).items()},
        case.get("runs", KnownRuns()),
    )
    assert attempt == case["expected"]


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (KnownRuns(), {"run-a", "run-b", "run-c", "run-d"}),
        (KnownRuns(in_flight={"run-a"}), {"run-b", "run-c", "run-d"}),
        (KnownRuns(ended_here={"run-b"}), {"run-a", "run-c", "run-d"}),
        # Found ended before: not again. Found live (False) or missing (None): read again.
        (KnownRuns(looked_up={"run-c": True}), {"run-a", "run-b", "run-d"}),
        (
            KnownRuns(looked_up={"run-c": False, "run-d": None}),
            {"run-a", "run-b", "run-c", "run-d"},
        ),
    ],
)
def test_runs_to_look_up(runs, expected):
    dispatches = [
        dispatch(1, run="run-a"),
        dispatch(2, run="run-b"),
        dispatch(3, run="run-c"),
        dispatch(4, run="run-d"),
        dispatch(5),  # no run: nothing to look up
    ]
    assert runs.to_look_up({(SID, r.ds): r for r in dispatches}) == expected
