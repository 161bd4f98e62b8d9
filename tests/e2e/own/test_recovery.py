"""Faults that need their own stack: a worker and its run killed mid-dbt, a server restart.

The stack here runs with a 60 s dbt-global lease (the server's minimum) and a 60 s zombie
threshold (production defaults: 120 s and 90 s) so that recovery fits in a test; the mechanisms are the same.
"""

from __future__ import annotations

import os
import signal
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest

from clickstream.adapters import ledger
from clickstream.local.stack import process_alive
from clickstream.names import GLOBAL_LIMIT_NAME, ZOMBIE_AUTOMATION_NAME
from tests.support.invariants import dbt_overlap, max_overlap
from tests.support.runs import partition, run_partitions, runs_in
from tests.support.stack import (
    every_dbt_slot_held,
    generate,
    parent_run_id,
    read_run,
    start_e2e_stack,
    state_of,
    wait_for,
)

LEASE_SECONDS = 60  # the server's minimum
ZOMBIE_AFTER_SECONDS = 60
RUN_TIMEOUT_SECONDS = 60  # production default 3600


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    handle = start_e2e_stack(
        tmp_path_factory.mktemp("recovery") / "state",
        extra_env={
            "CLICKSTREAM_DBT_SLOT_LEASE_SECONDS": str(LEASE_SECONDS),
            "CLICKSTREAM_DBT_RUN_TIMEOUT_SECONDS": str(RUN_TIMEOUT_SECONDS),
        },
        zombie_after_seconds=ZOMBIE_AFTER_SECONDS,
    )
    try:
        generate(handle, date(2026, 10, 1), date(2026, 10, 8))
        today = date.today()
        generate(handle, today - timedelta(days=9), today + timedelta(days=1))
        yield handle
    finally:
        handle.down()


def slots_in_use(handle) -> dict[str, int]:
    """Active slots of dbt-global and of every store deployment's ENQUEUE limit."""

    async def go(client):
        limits = await client.read_global_concurrency_limits(limit=200)
        return {
            gcl.name: gcl.active_slots
            for gcl in limits
            if gcl.name == GLOBAL_LIMIT_NAME or gcl.name.startswith("deployment:")
        }

    return handle.api(go)


def deployment_paused(handle, name: str) -> bool:
    async def go(client):
        return (await client.read_deployment_by_name(f"clickstream-dbt-run/{name}")).paused

    return handle.api(go)


def test_worker_killed_mid_dbt_then_everything_recovers(rec):
    """The worker's machine dies mid-dbt: worker, orchestrator and child all SIGKILLed.

    The zombie automation marks both runs Crashed (while another backfill runs), the worker restarts, resubmitting the
    backfill completes the partition and resumes the schedule the dead run had paused, and
    no concurrency slot stays taken past its lease."""
    ds = date(2026, 10, 2)
    store = "us-flagship"
    # A heavier partition so the kill lands while dbt holds the slot.
    rec.cli(
        "data", "generate", "--start", str(ds), "--end", str(ds), "--stores", store,
        "--events-per-day", "400000", check=True,
    )  # fmt: skip
    backfill = ["backfill", "--start", str(ds), "--end", str(ds), "--stores", store]
    out = rec.cli(*backfill, "--pause-schedules", "--no-follow", check=True)
    parent = parent_run_id(out.stdout)
    wait_for(
        lambda: slots_in_use(rec).get(GLOBAL_LIMIT_NAME, 0) >= 1,
        timeout=240,
        interval=0.25,
        what="the child to take its dbt-global slot",
    )
    assert deployment_paused(rec, store)
    (child,) = runs_in(rec, ds, ds)
    # Every run of this worker is forked from its warm server: killing both process
    # groups is the machine going away (nothing gets to clean up).
    pids = rec.stack.pids()
    os.killpg(pids["worker-1"], signal.SIGKILL)
    os.killpg(pids["warm-1"], signal.SIGKILL)
    for name in ("worker-1", "warm-1"):  # gone, as on a machine that died (not just dying)
        wait_for(lambda pid=pids[name]: not process_alive(pid), timeout=30, what=f"{name} gone")
    rec.stack.start_worker(1)
    assert rec.stack.wait_warm(1)  # the machine is back: runs fork warm again
    # Another backfill runs while the automation waits out the dead runs' heartbeats: on
    # SQLite its events, logs and states are written while trigger evaluation writes its
    # buckets (where "database is locked" used to come from). The automation must still
    # fire, and the log watch at the module's end finds no traceback in the server log.
    busy_day = date(2026, 10, 1)
    busy = rec.cli(
        "backfill", "--start", str(busy_day), "--end", str(busy_day),
        "--stores", "au-sydney,in-mumbai", "--no-follow", check=True,
    )  # fmt: skip
    busy_parent = parent_run_id(busy.stdout)

    for run_id in (child.id, parent):
        crashed = wait_for(
            lambda run_id=run_id: (r := read_run(rec, run_id)).state_type.value == "CRASHED" and r,
            timeout=ZOMBIE_AFTER_SECONDS + 120,
            what="the zombie automation to mark the killed runs Crashed",
        )
        assert ZOMBIE_AUTOMATION_NAME in (crashed.state.message or "")
    assert deployment_paused(rec, store)  # left paused by the dead orchestrator
    wait_for(lambda: read_run(rec, busy_parent).state.is_final(), timeout=420, what="busy run")
    assert read_run(rec, busy_parent).state_type.value == "COMPLETED"
    assert {r.state_type.value for r in runs_in(rec, busy_day, busy_day)} == {"COMPLETED"}

    again = rec.cli(*backfill)  # the operator (or the nightly catch-up) runs it again
    assert again.returncode == 0, again.stdout + again.stderr
    runs = runs_in(rec, ds, ds)
    assert sorted(r.state_type.value for r in runs) == ["COMPLETED", "CRASHED"]
    with state_of(rec):
        assert ledger.read_builds([store], ds, ds)[(store, ds)].status == "completed"
    assert not deployment_paused(rec, store)
    # Neither the store's ENQUEUE slot nor the dead run's dbt-global slot stays taken.
    wait_for(
        lambda: not any(slots_in_use(rec).values()),
        timeout=LEASE_SECONDS + 60,
        what=f"every slot to be free (dbt-global lease {LEASE_SECONDS}s)",
    )


def test_server_restart_mid_backfill_orchestrator_rides_it_out(rec):
    start, end = date(2026, 10, 4), date(2026, 10, 6)
    stores = "au-sydney,in-mumbai"
    out = rec.cli(
        "backfill", "--start", str(start), "--end", str(end), "--stores", stores,
        "--max-attempts", "3", "--no-follow", check=True,
    )  # fmt: skip
    parent = parent_run_id(out.stdout)
    wait_for(
        lambda: any(r.state_type.value == "COMPLETED" for r in runs_in(rec, start, end)),
        timeout=240,
        what="a first child to complete",
    )
    rec.stack.stop("server")  # SIGTERM, bounded wait, SIGKILL
    rec.stack.start_server()

    wait_for(lambda: read_run(rec, parent).state.is_final(), timeout=420, what="orchestrator")
    assert read_run(rec, parent).state_type.value == "COMPLETED"
    runs = runs_in(rec, start, end)
    completed = Counter(partition(r) for r in runs if r.state_type.value == "COMPLETED")
    assert len(completed) == 6 and set(completed.values()) == {1}, completed
    with state_of(rec):
        builds = ledger.read_builds(["au-sydney", "in-mumbai"], start, end)
    assert {b.status for b in builds.values()} == {"completed"} and len(builds) == 6
    wait_for(
        lambda: not any(slots_in_use(rec).values()),
        timeout=LEASE_SECONDS + 60,
        what="every slot to be free after the restart (filesystem lease storage)",
    )


def test_nightly_catch_up_overlapping_a_cli_backfill(rec):
    """The nightly schedule fires while an operator's backfill covers the same days."""
    today = date.today()
    start, end = today - timedelta(days=4), today - timedelta(days=2)

    async def fire_nightly(client):
        # What the scheduler does at 03:15 UTC: a run of the orchestrator deployment with
        # the schedule's parameters (the test stack runs with the scheduler off).
        dep = await client.read_deployment_by_name("clickstream-catch-up/nightly-catch-up")
        (schedule,) = dep.schedules
        run = await client.create_flow_run_from_deployment(
            dep.id,
            parameters=dict(schedule.parameters),
            idempotency_key=f"scheduled {dep.id} {schedule.id} {today}",
        )
        return run.id, dict(schedule.parameters)

    out = rec.cli("backfill", "--start", str(start), "--end", str(end), "--no-follow", check=True)
    cli_parent = parent_run_id(out.stdout)
    nightly, params = rec.api(fire_nightly)
    assert params == {"lookback_days": 7, "days_per_run": 7}
    for run_id in (cli_parent, nightly):
        wait_for(lambda r=run_id: read_run(rec, r).state.is_final(), timeout=600, what="runs")
        assert read_run(rec, run_id).state_type.value == "COMPLETED"

    runs = runs_in(rec, today - timedelta(days=9), today)
    per_partition = Counter(k for r in runs for k in run_partitions(r))
    assert set(per_partition.values()) == {1}, per_partition  # nothing built twice
    assert {r.state_type.value for r in runs} == {"COMPLETED"}
    # Both triggers together covered the CLI's days for every store, once.
    for store in ("au-sydney", "in-mumbai", "us-flagship"):
        for n in range((end - start).days + 1):
            assert (store, start + timedelta(days=n)) in per_partition
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    assert all(max_overlap(v) == 1 for v in by_store.values())
    with state_of(rec):
        builds = ledger.read_builds(None, today - timedelta(days=9), today)
    assert dbt_overlap(builds.values()) <= 2


def test_stuck_run_is_bounded_by_its_timeout_and_frees_the_store_queue(rec):
    """A store run that can never proceed (here: every dbt-global slot is held elsewhere)
    ends at its timeout instead of holding the store's ENQUEUE slot forever; the store's
    next run, queued behind it, then runs."""
    store = "in-mumbai"
    first, second = date(2026, 10, 7), date(2026, 10, 8)

    def create_run(ds: date):
        async def go(client):
            dep = await client.read_deployment_by_name(f"clickstream-dbt-run/{store}")
            return (
                await client.create_flow_run_from_deployment(dep.id, parameters={"ds": str(ds)})
            ).id

        return rec.api(go)

    with every_dbt_slot_held(rec, lease_seconds=600):
        stuck = create_run(first)
        wait_for(
            lambda: read_run(rec, stuck).state_type.value == "RUNNING",
            timeout=120,
            what="the first run to start (and wait for a dbt slot)",
        )
        # Only now the second: ENQUEUE is not FIFO, so created together either could go first.
        queued = create_run(second)
        ended = wait_for(
            lambda: (r := read_run(rec, stuck)).state.is_final() and r,
            timeout=RUN_TIMEOUT_SECONDS + 90,
            what="the stuck run to hit its timeout",
        )
        assert ended.state_type.value == "FAILED", ended.state
        assert "timed out" in (ended.state.message or "").lower() or ended.state.name == "TimedOut"
        assert not read_run(rec, queued).state.is_final()  # still queued behind it, not lost
    done = wait_for(
        lambda: (r := read_run(rec, queued)).state.is_final() and r,
        timeout=240,
        what="the queued run of the same store to run",
    )
    assert done.state_type.value == "COMPLETED", done.state
