"""A backfill stops only the runs it created (issue 22, points 2 and 5).

Cancelling a backfill, or its child timeout, never reaches a run it adopted from another
trigger; and a store whose deployment has another run in flight (a regular run) gets no child
until that run ends. Dates 2026-03-25 .. 03-30 are used by no other test module.
"""

from __future__ import annotations

import time
from datetime import date
from uuid import UUID

from tests.support.runs import runs_in
from tests.support.scenarios import parse_status
from tests.support.stack import every_dbt_slot_held, parent_run_id, read_run, state_of, wait_for

ORCHESTRATOR = "clickstream-backfill/backfill-orchestrator"


def _logs(e2e, run_id: UUID) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def go(client):
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
        return [entry.message for entry in logs]

    return e2e.api(go)


def _logged(e2e, run_id: UUID, needle: str) -> bool:
    return any(needle in m for m in _logs(e2e, run_id))


def _backfill(e2e, store: str, first: date, last: date, *extra: str) -> UUID:
    out = e2e.cli(
        "backfill",
        "--start",
        str(first),
        "--end",
        str(last),
        "--stores",
        store,
        "--no-follow",
        *extra,
        check=True,
    )
    return parent_run_id(out.stdout)


def _only_running_child(e2e, first: date, last: date):
    runs = runs_in(e2e, first, last)
    return runs[0] if len(runs) == 1 and runs[0].state_type.value == "RUNNING" else None


def _final(e2e, run_id: UUID, timeout: float = 300):
    return wait_for(
        lambda: (r := read_run(e2e, run_id)).state.is_final() and r,
        timeout=timeout,
        interval=2,
        what=f"run {run_id} to end",
    )


def _grid(e2e, store: str, first: date, last: date) -> dict[date, str]:
    out = e2e.cli("status", "--start", str(first), "--end", str(last), "--stores", store)
    assert out.returncode == 0, out.stdout + out.stderr
    return parse_status(out.stdout)


def _ledger(e2e, store: str, first: date, last: date):
    from clickstream.adapters import ledger

    with state_of(e2e):
        return {k[1]: b for k, b in ledger.read_builds([store], first, last).items()}


def test_cancelling_a_backfill_leaves_the_run_it_adopted_going(e2e):
    store, day, other_day = "us-flagship", date(2026, 3, 25), date(2026, 3, 26)
    with every_dbt_slot_held(e2e):
        a = _backfill(e2e, store, day, day)
        a_child = wait_for(
            lambda: _only_running_child(e2e, day, day),
            timeout=240,
            what="A's child to start and wait for a dbt slot",
        )
        # B plans while A's child is in flight: it adopts the run for `day`, and its lane
        # for the store stays busy, so `other_day` waits.
        b = _backfill(e2e, store, day, other_day)
        wait_for(
            lambda: _logged(e2e, b, f"adopting in-flight run {a_child.id}"),
            timeout=240,
            interval=2,
            what="B to adopt A's child",
        )

        async def cancel_b(client):
            from prefect.states import Cancelling

            await client.set_flow_run_state(b, Cancelling(), force=True)  # as the UI does

        e2e.api(cancel_b)
        assert _final(e2e, b, timeout=180).state_type.value == "CANCELLED"
        time.sleep(5)  # room for a wrong cancellation to land
        # Still in flight, untouched by B's cancellation.
        assert read_run(e2e, a_child.id).state_type.value == "RUNNING"
    child = _final(e2e, a_child.id)
    assert child.state_type.value == "COMPLETED", child.state.message
    parent_a = _final(e2e, a)
    assert parent_a.state_type.value == "COMPLETED", parent_a.state.message
    # B dispatched nothing: its lane was busy with the adopted run until it was cancelled.
    assert [r.id for r in runs_in(e2e, day, other_day)] == [a_child.id]
    builds = _ledger(e2e, store, day, other_day)
    assert set(builds) == {day}
    assert builds[day].status == "completed" and builds[day].flow_run_id == str(a_child.id)
    assert _grid(e2e, store, day, other_day) == {day: "completed", other_day: "missing"}


def test_a_short_child_timeout_does_not_time_out_an_adopted_run(e2e):
    from prefect.deployments import run_deployment

    store, day = "us-flagship", date(2026, 3, 27)
    with every_dbt_slot_held(e2e):
        a = _backfill(e2e, store, day, day)
        a_child = wait_for(
            lambda: _only_running_child(e2e, day, day),
            timeout=240,
            what="A's child to start and wait for a dbt slot",
        )

        async def start_b(client):  # the UI's run form: child_timeout_minutes is a parameter
            run = await run_deployment(
                ORCHESTRATOR,
                parameters={
                    "start_date": str(day),
                    "end_date": str(day),
                    "stores": [store],
                    "child_timeout_minutes": 1,  # the least the form allows
                },
                timeout=0,
            )
            return run.id

        b = e2e.api(start_b)
        # B adopts A's child and, past its timeout of 1 minute, says it will not time it out.
        wait_for(
            lambda: _logged(e2e, b, "adopted runs are not timed out by this backfill"),
            timeout=240,
            interval=2,
            what="B to find the adopted run past its child timeout",
        )
        time.sleep(5)  # room for a wrong cancellation to land
        assert read_run(e2e, a_child.id).state_type.value == "RUNNING"
    child = _final(e2e, a_child.id)
    assert child.state_type.value == "COMPLETED", child.state.message
    parent_a, parent_b = _final(e2e, a), _final(e2e, b)
    assert parent_a.state_type.value == "COMPLETED", parent_a.state.message
    assert parent_b.state_type.value == "COMPLETED", parent_b.state.message
    assert "1/1 partitions completed (0 child run(s) created)" in parent_b.state.message
    assert [r.id for r in runs_in(e2e, day, day)] == [a_child.id]
    builds = _ledger(e2e, store, day, day)
    assert builds[day].status == "completed" and builds[day].flow_run_id == str(a_child.id)
    assert _grid(e2e, store, day, day) == {day: "completed"}


def test_a_regular_run_of_the_store_occupies_its_lane(e2e):
    from prefect.deployments import run_deployment

    store, first, last = "in-mumbai", date(2026, 3, 29), date(2026, 3, 30)

    async def start_regular(client):  # a regular run: the deployment's parameters, no ds
        run = await run_deployment(f"clickstream-dbt-run/{store}", timeout=0)
        return run.id

    with every_dbt_slot_held(e2e):
        regular = e2e.api(start_regular)
        wait_for(
            lambda: read_run(e2e, regular).state_type.value == "RUNNING",
            timeout=240,
            what="the regular run to start and wait for a dbt slot",
        )
        b = _backfill(e2e, store, first, last, "--max-attempts", "1")
        wait_for(
            lambda: _logged(e2e, b, f"run {regular} (") and _logged(e2e, b, "waiting for it"),
            timeout=240,
            interval=2,
            what="the backfill to wait for the regular run",
        )
        time.sleep(5)  # a child created beside the regular run would appear by now
        assert runs_in(e2e, first, last) == []
        assert read_run(e2e, regular).state_type.value == "RUNNING"
    reg = _final(e2e, regular)
    assert reg.state_type.value == "COMPLETED", reg.state.message
    parent = _final(e2e, b, timeout=600)
    assert parent.state_type.value == "COMPLETED", parent.state.message
    assert "2/2 partitions completed" in parent.state.message
    children = runs_in(e2e, first, last)
    assert len(children) == 2  # one per day, first attempt each
    assert {r.state_type.value for r in children} == {"COMPLETED"}
    assert all(r.created >= reg.end_time for r in children)  # none while the regular run lasted
    builds = _ledger(e2e, store, first, last)
    assert {d: b.status for d, b in builds.items()} == {first: "completed", last: "completed"}
    assert {b.flow_run_id for b in builds.values()} == {str(r.id) for r in children}
    assert _grid(e2e, store, first, last) == {first: "completed", last: "completed"}
