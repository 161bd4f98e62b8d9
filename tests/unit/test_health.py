"""`clickstream doctor`'s decisions (clickstream.health.diagnose), no server.

One healthy situation, then one change per case. Settings are Prefect's defaults written out
(min_runs 3, min_scheduled_time 1 h, loop 60 s), so with the 60 s margin a schedule must have
3 runs the scheduler counts and its latest at or after NOW + 1 h - 2 min = 12:58.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from clickstream.core.health import (
    DeploymentInfo,
    HealthInput,
    LimitInfo,
    OwnerRun,
    PauseRecord,
    RunInfo,
    ScheduleInfo,
    SchedulerSettings,
    WorkerInfo,
    diagnose,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SETTINGS = SchedulerSettings(min_runs=3, min_scheduled_time=timedelta(hours=1), loop_seconds=60)
POOL = "local-work-pool"
HOURLY = ScheduleInfo(id="sched-1", label="every 1:00:00", active=True)
STORE = DeploymentInfo(
    id="dep-1",
    name="clickstream-dbt-run/us-flagship",
    paused=False,
    schedules=(HOURLY,),
    store_id="us-flagship",
    store_active=True,
    timezone="America/New_York",
)
ORCH = DeploymentInfo(id="dep-2", name="clickstream-backfill/backfill-orchestrator", paused=False)


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 11, 22, hh, mm, ss, tzinfo=UTC)


def auto(n: int, due: datetime, *, state="SCHEDULED", name="Scheduled", schedule="sched-1",
         auto_scheduled=True, dep="dep-1") -> RunInfo:  # fmt: skip
    return RunInfo(
        id=f"run-{n}",
        name=f"flow-run-{n}",
        deployment_id=dep,
        state_type=state,
        state_name=name,
        scheduled_time=due,
        expected_start_time=due,
        auto_scheduled=auto_scheduled,
        schedule_id=schedule if auto_scheduled else None,
    )


KEPT = (auto(1, at(12, 30)), auto(2, at(13, 30)), auto(3, at(14, 30)))
HEALTHY = HealthInput(
    now=NOW,
    scheduler=SETTINGS,
    deployments=(STORE, ORCH),
    runs=KEPT,
    pool=POOL,
    pool_exists=True,
    workers=(WorkerInfo("worker-a", "ONLINE", NOW - timedelta(seconds=30)),),
    limit=LimitInfo("dbt-global", exists=True, active=True, limit=4, active_slots=1),
)


def test_healthy():
    report = diagnose(HEALTHY)
    assert report.healthy, report.problems
    (row,) = report.schedules
    assert (row.deployment, row.schedule, row.next_run, row.kept_runs, row.latest) == (
        "clickstream-dbt-run/us-flagship",
        "every 1:00:00",
        at(12, 30),
        3,
        at(14, 30),
    )
    assert row.next_run_local == "2026-11-22 07:30 America/New_York"  # EST, UTC-5
    text = "\n".join(report.ok)
    assert "1 live worker(s) (worker-a)" in text
    assert "dbt-global: 1/4 slots active" in text
    assert "clickstream-backfill/backfill-orchestrator: no schedule" in text


CASES = [
    # (id, change to HEALTHY, expected problem kinds, a piece of each message)
    ("two-runs-ahead", dict(runs=KEPT[:2]), ["scheduler"],
     "clickstream-dbt-run/us-flagship schedule every 1:00:00 (id sched-1): 2 future"),
    ("no-runs", dict(runs=()), ["scheduler"],
     "0 future auto-scheduled run(s), fewer than 3; latest none"),
    ("horizon-short", dict(runs=(auto(1, at(12, 10)), auto(2, at(12, 20)),
                                 auto(3, at(12, 57, 59)))),
     ["scheduler"], "the scheduler is not keeping runs ahead: it may be dead"),
    ("manual-runs-do-not-count",
     dict(runs=tuple(replace(r, auto_scheduled=False, schedule_id=None) for r in KEPT)),
     ["scheduler"], "0 future auto-scheduled run(s)"),
    ("other-schedule-runs-do-not-count",
     dict(runs=tuple(replace(r, schedule_id="sched-9") for r in KEPT)),
     ["scheduler"], "(id sched-1): 0 future"),
    ("late-state", dict(runs=(*KEPT, auto(7, at(11, 59), name="Late"))), ["late"],
     "late run flow-run-7 (run-7) of clickstream-dbt-run/us-flagship: Late, due "
     "2026-11-22 11:59:00 UTC (60 s ago)"),
    ("scheduled-10-min-ago", dict(runs=(*KEPT, auto(8, at(11, 50), auto_scheduled=False))),
     ["late"], "Scheduled, due 2026-11-22 11:50:00 UTC (10 min ago)"),
    ("no-workers", dict(workers=()), ["worker"],
     "work pool local-work-pool has no live worker (no heartbeat in the last 90 s)"),
    ("stale-online-worker",
     dict(workers=(WorkerInfo("worker-a", "ONLINE", NOW - timedelta(seconds=91)),)),
     ["worker"], "last heartbeats: worker-a 91 s ago though still marked ONLINE"),
    ("no-pool", dict(pool_exists=False, workers=()), ["worker"],
     "work pool local-work-pool does not exist"),
    ("limit-missing", dict(limit=LimitInfo("dbt-global", exists=False)), ["limit"],
     "global concurrency limit dbt-global does not exist"),
    ("limit-inactive", dict(limit=LimitInfo("dbt-global", exists=True, active=False, limit=4)),
     ["limit"], "global concurrency limit dbt-global is inactive"),
    ("paused-by-person", dict(deployments=(replace(STORE, paused=True), ORCH), runs=()),
     ["paused"], "store us-flagship: clickstream-dbt-run/us-flagship is paused by a person"),
    ("paused-by-crashed-run",
     dict(deployments=(replace(STORE, paused=True), ORCH), runs=(),
          pauses=(PauseRecord("dep-1", "us-flagship", "orch-1"),),
          owners={"orch-1": OwnerRun("orch-1", "brave-fox", "CRASHED")}),
     ["paused"], "store us-flagship: schedule left paused by ended run brave-fox (orch-1, "
     "Crashed); the next backfill or catch-up run resumes it, or `prefect deployment resume "
     "clickstream-dbt-run/us-flagship`"),
    ("paused-by-vanished-run",
     dict(deployments=(replace(STORE, paused=True), ORCH), runs=(),
          pauses=(PauseRecord("dep-1", "us-flagship", "orch-2"),)),
     ["paused"], "left paused by ended run orch-2 (it no longer exists)"),
    ("ledger-unreadable", dict(ledger_error="OperationalError: connection refused"), ["ledger"],
     "cannot read the ledger, so who paused a store is unknown: OperationalError"),
    ("schedule-inactive-store-active",
     dict(deployments=(replace(STORE, schedules=(replace(HOURLY, active=False),)), ORCH),
          runs=()),
     ["paused"], "store us-flagship: schedule every 1:00:00 (id sched-1) of "
     "clickstream-dbt-run/us-flagship is inactive while the store is active"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "kinds", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_problem(change, kinds, message):
    report = diagnose(replace(HEALTHY, **change))
    assert [p.kind for p in report.problems] == kinds, report.problems
    assert message in report.problems[0].message, report.problems[0].message
    assert not report.healthy


NOT_PROBLEMS = [
    # a run that started 60 s ago left the Scheduled set before the scheduler's next loop
    ("just-started-run-counts", dict(runs=(auto(1, at(11, 59), state="RUNNING", name="Running"),
                                           *KEPT[1:], auto(4, at(15, 30))))),
    ("latest-exactly-at-horizon", dict(runs=(auto(1, at(12, 10)), auto(2, at(12, 20)),
                                             auto(3, at(12, 58))))),
    ("scheduled-4-min-ago-not-late-yet",
     dict(runs=(*KEPT, auto(8, at(11, 56), auto_scheduled=False)))),
    ("awaiting-slot-due-soon", dict(runs=(*KEPT, auto(9, at(12, 0, 30),
                                                       name="AwaitingConcurrencySlot")))),
    ("heartbeat-exactly-90-s-offline",
     dict(workers=(WorkerInfo("worker-a", "OFFLINE", NOW - timedelta(seconds=90)),))),
    ("paused-by-running-orchestrator",
     dict(deployments=(replace(STORE, paused=True), ORCH), runs=(),
          pauses=(PauseRecord("dep-1", "us-flagship", "orch-3"),),
          owners={"orch-3": OwnerRun("orch-3", "calm-owl", "RUNNING")})),
    ("inactive-store-inactive-schedule",
     dict(deployments=(replace(STORE, store_active=False,
                               schedules=(replace(HOURLY, active=False),)), ORCH), runs=())),
]  # fmt: skip


@pytest.mark.parametrize("change", [c[1] for c in NOT_PROBLEMS], ids=[c[0] for c in NOT_PROBLEMS])
def test_not_a_problem(change):
    report = diagnose(replace(HEALTHY, **change))
    assert report.healthy, report.problems


def test_just_started_run_stops_counting_after_the_grace():
    # started 3 min ago: beyond loop (60 s) + margin (60 s), so only 2 runs are kept
    runs = (auto(1, at(11, 57), state="RUNNING", name="Running"), *KEPT[1:])
    report = diagnose(replace(HEALTHY, runs=runs))
    assert [p.kind for p in report.problems] == ["scheduler"]
    assert "2 future auto-scheduled run(s), fewer than 3" in report.problems[0].message


def test_running_orchestrator_pause_is_reported_as_ok():
    report = diagnose(replace(HEALTHY, **NOT_PROBLEMS[5][1]))
    assert any("paused while orchestrator run calm-owl (orch-3) runs" in line for line in report.ok)


def test_a_run_picked_up_early_still_fills_its_slot():
    # The worker prefetches: a run due in 5 s is already Pending; the scheduler will not make
    # another for that slot, so it counts.
    runs = (auto(1, NOW + timedelta(seconds=5), state="PENDING", name="Pending"), *KEPT[1:])
    assert diagnose(replace(HEALTHY, runs=runs)).healthy


def test_a_run_brought_forward_fills_its_future_slot_but_not_a_past_one():

    def brought_forward(slot: datetime) -> RunInfo:
        # ran an hour ago, on an operator's word, for the slot its key names
        return replace(
            auto(1, NOW - timedelta(hours=1), state="COMPLETED", name="Completed"),
            slot_time=slot,
        )

    assert diagnose(replace(HEALTHY, runs=(brought_forward(at(12, 30)), *KEPT[1:]))).healthy
    past = diagnose(replace(HEALTHY, runs=(brought_forward(at(11, 0)), *KEPT[1:])))
    assert [p.kind for p in past.problems] == ["scheduler"]
