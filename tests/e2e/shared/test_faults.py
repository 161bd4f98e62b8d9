"""Cancelling and killing the orchestrator: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import date
from pathlib import Path
from uuid import UUID

from tests.support.runs import orchestrator_runs, partition, runs_in
from tests.support.stack import every_dbt_slot_held, parent_run_id, read_run, wait_for


def _flow_run_pid(run_id: UUID) -> int | None:
    """PID of the process running a flow run (a child of our worker), from its environment."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            return int(proc.name)
    return None


def test_cancelling_the_parent_cancels_children_and_dispatches_nothing_more(e2e):
    start, end = date(2026, 10, 18), date(2026, 10, 20)

    # Every dbt-global slot is held here, so the children the backfill starts stay in flight
    # (running, waiting for a slot) until the cancellation reaches them: on a busy machine a
    # child could otherwise finish first and the test would prove nothing.
    with every_dbt_slot_held(e2e):
        out = e2e.cli(
            "backfill", "--start", str(start), "--end", str(end), "--no-follow", check=True
        )
        parent = parent_run_id(out.stdout)
        wait_for(
            lambda: (
                len([r for r in runs_in(e2e, start, end) if r.state_type.value == "RUNNING"]) == 3
            ),
            timeout=240,
            what="a child run of every store to start (and wait for a dbt slot)",
        )
        e2e.prefect("flow-run", "cancel", str(parent), check=True)
        wait_for(lambda: read_run(e2e, parent).state.is_final(), timeout=120, what="parent to end")
        assert read_run(e2e, parent).state_type.value == "CANCELLED"
        at_cancel = {r.id for r in runs_in(e2e, start, end)}
        wait_for(
            lambda: all(r.state.is_final() for r in runs_in(e2e, start, end)),
            timeout=180,
            what="children to end",
        )
    later = runs_in(e2e, start, end)
    assert {r.id for r in later} == at_cancel  # nothing dispatched after the cancel
    assert len(at_cancel) == 3  # one per store was in flight; the other six never started
    assert {r.state_type.value for r in later} == {"CANCELLED"}


def test_killed_orchestrator_resubmitted_completes_every_partition_once(e2e):
    start, end = date(2026, 10, 9), date(2026, 10, 11)
    stores = "au-sydney,in-mumbai"
    out = e2e.cli(
        "backfill",
        "--start",
        str(start),
        "--end",
        str(end),
        "--stores",
        stores,
        "--no-follow",
        check=True,
    )
    parent = parent_run_id(out.stdout)
    # Kill it mid-backfill: once at least one child finished and others are in flight.
    wait_for(
        lambda: any(r.state_type.value == "COMPLETED" for r in runs_in(e2e, start, end)),
        timeout=300,
        what="a first child to complete",
    )
    pid = wait_for(lambda: _flow_run_pid(parent), timeout=30, what="the orchestrator process")
    os.kill(pid, signal.SIGKILL)

    again = e2e.cli("backfill", "--start", str(start), "--end", str(end), "--stores", stores)
    assert again.returncode == 0, again.stdout + again.stderr

    runs = runs_in(e2e, start, end)
    per_partition = Counter(partition(r) for r in runs)
    assert len(per_partition) == 6
    assert set(per_partition.values()) == {1}, per_partition  # no duplicate child runs
    assert {r.state_type.value for r in runs} == {"COMPLETED"}
    newest = max(orchestrator_runs(e2e), key=lambda r: r.created)
    assert newest.state_type.value == "COMPLETED"
