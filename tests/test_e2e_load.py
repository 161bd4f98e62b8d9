"""Load held: 8 stores x 30 days of tiny partitions through one orchestrator run.

Its own stack on a scratch project with 8 synthetic stores (clickstream.scratch). While the
backfill runs, the test samples Prefect every second: how many child runs wait (Scheduled or
Pending, AwaitingConcurrencySlot included) and how many are in flight. Afterwards it checks
the invariants from the ledger and the run history, and prints the figures (also written to
artifacts/load/figures.json).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import date

import pytest

from bench.analysis import max_overlap
from clickstream import ledger
from clickstream.paths import project_dir
from clickstream.planning import OVERSUBSCRIBE
from clickstream.scratch import make_project, synthetic_stores
from tests.e2e_stack import child_runs, generate, parent_run_id, start_e2e_stack, state_of
from tests.test_e2e_backfill import partition

pytestmark = pytest.mark.e2e

STORES = 8
START, END = date(2026, 9, 1), date(2026, 9, 30)
DBT_GLOBAL = 2  # the machine's cores: more only adds CPU contention
MAX_PARALLEL = OVERSUBSCRIBE * DBT_GLOBAL  # the orchestrator's default


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    project = make_project(root / "project", synthetic_stores(STORES))
    handle = start_e2e_stack(root / "state", project_dir=project, dbt_global_limit=DBT_GLOBAL)
    try:
        generate(handle, START, END, events_per_day=200)
        yield handle
    finally:
        handle.stack.down()


def _sample(handle) -> tuple[int, int]:
    """(waiting, in flight) child runs right now."""

    async def go(client):
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-dbt-run"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
                    )
                )
            ),
            limit=200,
        )
        waiting = sum(1 for r in runs if r.state_type != StateType.RUNNING)
        return waiting, len(runs)

    return handle.api(go)


@pytest.mark.timeout(2400)
def test_8_stores_x_30_days_hold_the_limits_and_finish(load_stack, capsys):
    handle = load_stack
    partitions = STORES * ((END - START).days + 1)
    t0 = time.monotonic()
    out = handle.cli(
        "backfill", "--start", str(START), "--end", str(END), "--no-follow", check=True,
    )  # fmt: skip
    parent = parent_run_id(out.stdout)

    async def parent_state(client):
        return (await client.read_flow_run(parent)).state

    max_waiting = max_in_flight = samples = 0
    deadline = time.monotonic() + 2100
    while time.monotonic() < deadline:
        waiting, in_flight = _sample(handle)
        max_waiting, max_in_flight = max(max_waiting, waiting), max(max_in_flight, in_flight)
        samples += 1
        if handle.api(parent_state).is_final():
            break
        time.sleep(1)
    wall = time.monotonic() - t0
    assert handle.api(parent_state).type.value == "COMPLETED"

    runs = handle.api(child_runs)
    per_partition = Counter(partition(r) for r in runs)
    assert len(per_partition) == partitions
    assert set(per_partition.values()) == {1}, "a partition ran twice"
    assert {r.state_type.value for r in runs} == {"COMPLETED"}
    with state_of(handle):
        builds = ledger.read_builds(start=START, end=END)
    assert len(builds) == partitions
    assert {b.status for b in builds.values()} == {"completed"}

    # One run per store at a time, never more than max_parallel runs, never more than
    # dbt-global dbt builds at once (work intervals recorded inside the slot).
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    per_store_overlap = max(max_overlap(iv) for iv in by_store.values())
    run_overlap = max_overlap([(r.start_time, r.end_time) for r in runs])
    dbt_overlap = max_overlap([(b.work_started_at, b.work_ended_at) for b in builds.values()])
    assert per_store_overlap == 1
    assert run_overlap <= MAX_PARALLEL
    assert dbt_overlap <= DBT_GLOBAL
    # The queue stays shallow: nothing is created ahead of a free lane.
    assert max_waiting <= MAX_PARALLEL
    assert max_in_flight <= MAX_PARALLEL

    figures = {
        "partitions": partitions,
        "stores": STORES,
        "days": (END - START).days + 1,
        "wall_seconds": round(wall, 1),
        "partitions_per_minute": round(partitions / wall * 60, 1),
        "max_queue_depth_waiting": max_waiting,
        "max_in_flight": max_in_flight,
        "max_runs_overlap": run_overlap,
        "max_dbt_overlap": dbt_overlap,
        "max_per_store_overlap": per_store_overlap,
        "samples": samples,
        "max_parallel": MAX_PARALLEL,
        "dbt_global": DBT_GLOBAL,
    }
    out_dir = project_dir() / "artifacts" / "load"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2))
    with capsys.disabled():
        print("\nload figures: " + json.dumps(figures))
