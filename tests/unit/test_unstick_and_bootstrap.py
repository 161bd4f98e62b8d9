"""Which runs `clickstream unstick` selects, and the zombie automation bootstrap creates (no server)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

from prefect.client.schemas.objects import StateType

from clickstream.names import ZOMBIE_AUTOMATION_NAME
from clickstream.pipelines.operate.bootstrap import (
    HEARTBEAT_EVENT,
    TERMINAL_EVENTS,
    automation_definition,
    zombie_automation,
)
from clickstream.pipelines.operate.unstick import select_stuck_runs

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BIN = Path(sys.executable).parent


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


BIN = Path(sys.executable).parent


def run(state: StateType, name: str, minutes_ago: float | None, ds: str = "2026-11-01"):
    ts = NOW - timedelta(minutes=minutes_ago) if minutes_ago is not None else None
    return SimpleNamespace(
        id=uuid4(),
        name=f"run-{name}",
        state_type=state,
        state_name=name,
        state=SimpleNamespace(timestamp=ts) if ts else None,
        start_time=None,
        created=None,
        parameters={"store_id": "us-flagship", "ds": ds},
    )


RUNS = [
    run(StateType.RUNNING, "Running", 120),
    run(StateType.RUNNING, "Running", 30),  # younger than the threshold
    run(StateType.PENDING, "Pending", 61),
    run(StateType.CANCELLING, "Cancelling", 600),
    run(StateType.SCHEDULED, "AwaitingConcurrencySlot", 300),
    run(StateType.SCHEDULED, "Scheduled", 5),
    run(StateType.PAUSED, "Paused", 500),
    run(StateType.COMPLETED, "Completed", 900),
    run(StateType.CRASHED, "Crashed", 900),
    run(StateType.RUNNING, "Running", None),  # no timestamp: age unknown, never by default
]


def test_select_stuck_runs_default_is_old_running_pending_cancelling():
    got = select_stuck_runs(RUNS, NOW, timedelta(minutes=60))
    assert [(r.state_name, int(r.age.total_seconds() // 60)) for r in got] == [
        ("Cancelling", 600),
        ("Running", 120),
        ("Pending", 61),
    ]
    assert all(r.ds == "2026-11-01" for r in got)


def test_select_stuck_runs_threshold_is_strict():
    assert select_stuck_runs([run(StateType.RUNNING, "Running", 60)], NOW, timedelta(hours=1)) == []
    assert len(select_stuck_runs([run(StateType.RUNNING, "Running", 60)], NOW, timedelta(0))) == 1


def test_select_stuck_runs_all_includes_every_non_terminal_run():
    got = select_stuck_runs(RUNS, NOW, timedelta(minutes=60), include_all=True)
    assert sorted(r.state_name for r in got) == sorted(
        [
            "Running",
            "Running",
            "Running",
            "Pending",
            "Cancelling",
            "AwaitingConcurrencySlot",
            "Scheduled",
            "Paused",
        ]
    )
    assert not {"Completed", "Crashed"} & {r.state_name for r in got}
    assert got[-1].since is None  # unknown age sorts last


def test_zombie_automation_definition():
    a = zombie_automation(90)
    t = a.trigger
    assert a.name == ZOMBIE_AUTOMATION_NAME and a.enabled
    assert t.posture.value == "Proactive"
    assert t.after == {HEARTBEAT_EVENT}
    # Terminal events count as "seen": a run that ends normally is never crashed.
    assert t.expect == {HEARTBEAT_EVENT, *TERMINAL_EVENTS}
    assert t.for_each == {"prefect.resource.id"}
    assert t.within == timedelta(seconds=90) and t.threshold == 1
    assert set(t.match_related["prefect.resource.name"]) == {
        "clickstream-dbt-run",
        "clickstream-backfill",
        "clickstream-catch-up",
    }
    (action,) = a.actions
    assert action.type == "change-flow-run-state"
    assert action.state == StateType.CRASHED and "heartbeat" in action.message
    # The comparison used for idempotency sees a changed window.
    assert automation_definition(zombie_automation(90)) == automation_definition(a)
    assert automation_definition(zombie_automation(120)) != automation_definition(a)
