"""Several days per child run (days_per_run), end to end on the shared stack.

The first test doubles as the small load run of `make test`: 3 stores x 9 days at four days
per run, sampled every second while it runs (the 8 x 30 load run is in `make bench`). The
one-day-per-run path is what every other end-to-end test drives.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import duckdb

from clickstream.core.states import OVERSUBSCRIBE
from tests.support.invariants import dbt_overlap, max_overlap
from tests.support.scenarios import DATABASES, MART_COLUMNS, Profile, utcnow
from tests.support.stack import (
    DBT_GLOBAL_LIMIT,
    child_runs,
    every_dbt_slot_held,
    parent_run_id,
    queue_sample,
    read_run,
    state_of,
    wait_for,
)

STORES = ("au-sydney", "in-mumbai", "us-flagship")
DAYS = [date(2026, 9, 1) + timedelta(days=n) for n in range(9)]


def run_days(run) -> list[date]:
    p = run.parameters
    first = date.fromisoformat(p["ds"])
    last = date.fromisoformat(p["ds_end"]) if p.get("ds_end") else first
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def runs_since(e2e, since):
    return [r for r in e2e.api(lambda c: child_runs(c, since)) if r.parameters.get("ds")]


def marts(p: Profile, days) -> dict:
    return {s: p.mart(s, days) for s in STORES}


def day_by_day_reference(landing: Path, days: list[date], scratch: Path, monkeypatch) -> dict:
    """The marts a days_per_run 1 build of the same landing data gives: every (store, day)
    built on its own with dbt (in this process, into a scratch warehouse)."""
    from dbt.cli.main import dbtRunner

    from clickstream import settings
    from clickstream.adapters.dbt.command import dbt_build_args
    from clickstream.adapters.warehouse import release_dbt_duckdb
    from clickstream.core.partition_spec import spec_environment
    from clickstream.core.stores import load_registry
    from clickstream.core.windows import partition_windows

    warehouse = scratch / "warehouse"
    warehouse.mkdir(parents=True)
    monkeypatch.setenv("CLICKSTREAM_WAREHOUSE_DIR", str(warehouse))
    registry = load_registry()
    try:
        for sid in STORES:
            store = registry.get(sid)
            args = dbt_build_args(
                store,
                landing_dir=landing,
                project_dir=settings.dbt_project_dir(),
                target_path=scratch / "target" / sid,
            )
            for ds in days:
                for key, value in spec_environment(
                    store, partition_windows(store.timezone, [ds])
                ).items():
                    monkeypatch.setenv(key, value)
                result = dbtRunner().invoke([*args, "--quiet"])
                assert result.success, (sid, ds, result.exception)
    finally:
        release_dbt_duckdb()
    out = {}
    for sid in STORES:
        con = duckdb.connect(str(warehouse / f"{DATABASES[sid]}.duckdb"), read_only=True)
        try:
            cur = con.execute(
                f"select {MART_COLUMNS} from clickstream.clickstream_daily order by ds"
            )
            names = [d[0] for d in cur.description]
            out[sid] = {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        finally:
            con.close()
    return out


def test_four_days_per_run_holds_the_limits_and_equals_day_by_day_builds(
    e2e, tmp_path, monkeypatch
):
    from clickstream.adapters import ledger

    p = Profile(e2e)
    first, last = DAYS[0], DAYS[-1]

    # 1. 3 stores x 9 days at four days per run, sampled every second while it runs.
    since = utcnow()
    out = e2e.cli(
        "backfill", "--start", str(first), "--end", str(last), "--reprocess", "all",
        "--days-per-run", "4", "--no-follow", check=True,
    )  # fmt: skip
    parent = parent_run_id(out.stdout)

    max_waiting = max_in_flight = 0
    deadline = time.monotonic() + 600
    while not read_run(e2e, parent).state.is_final():
        assert time.monotonic() < deadline, "the backfill did not finish in 10 minutes"
        waiting, in_flight = queue_sample(e2e)
        max_waiting, max_in_flight = max(max_waiting, waiting), max(max_in_flight, in_flight)
        time.sleep(1)
    assert read_run(e2e, parent).state.type.value == "COMPLETED"
    batches = runs_since(e2e, since)
    assert len(batches) == 9
    assert sorted(len(run_days(r)) for r in batches) == [1, 1, 1, 4, 4, 4, 4, 4, 4]
    per_partition = Counter((r.parameters["store_id"], d) for r in batches for d in run_days(r))
    assert len(per_partition) == 27 and set(per_partition.values()) == {1}  # every day once
    assert {r.state_type.value for r in batches} == {"COMPLETED"}
    for r in batches:
        days, sid = run_days(r), r.parameters["store_id"]
        label = str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"
        assert r.name == f"backfill-{sid}-{label}-a1"
        assert set(r.tags) >= {"backfill", sid, f"ds:{label}"}
        assert r.parameters["dbt_mode"] == "lean"
        assert r.parent_task_run_id is not None  # linked to the orchestrator (as_subflow)
    max_parallel = OVERSUBSCRIBE * DBT_GLOBAL_LIMIT
    by_store = defaultdict(list)
    for r in batches:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    assert all(max_overlap(v) == 1 for v in by_store.values())  # one run per store
    assert max_overlap([(r.start_time, r.end_time) for r in batches]) <= max_parallel
    assert max_waiting <= max_parallel and max_in_flight <= max_parallel  # a shallow queue
    with state_of(e2e):
        builds = ledger.read_builds(STORES, first, last)
    assert len(builds) == 27  # one ledger row per day, not per run
    assert all(b.work_started_at and b.work_ended_at for b in builds.values())
    assert dbt_overlap(builds.values()) <= DBT_GLOBAL_LIMIT  # dbt never above dbt-global
    for b in builds.values():
        assert b.status == "completed" and b.fingerprint and b.fingerprint.startswith("v2:")
    assert len({b.flow_run_id for b in builds.values()} & {str(r.id) for r in batches}) == 9

    # 2. The same rows as building every day on its own, and as an independent recount.
    reference = day_by_day_reference(p.landing, DAYS, tmp_path, monkeypatch)
    assert marts(p, DAYS) == reference  # row by row, every column
    for sid in STORES:
        p.assert_rows_match_recount(sid, DAYS)

    # 3. Resubmitting creates nothing.
    since = utcnow()
    again = e2e.cli("backfill", "--start", str(first), "--end", str(last), "--days-per-run", "4")
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    assert runs_since(e2e, since) == []


def test_a_failing_day_fails_its_whole_batch_and_failed_repairs_it(e2e):
    from clickstream.adapters import ledger
    from clickstream.core.stores import load_registry
    from clickstream.local.synthetic import add_bad_events

    store, first, last = "us-flagship", date(2026, 9, 24), date(2026, 9, 27)
    with state_of(e2e):
        bad = add_bad_events(load_registry().get(store), date(2026, 9, 26))
    out = e2e.cli(
        "backfill", "--start", str(first), "--end", str(last), "--stores", store,
        "--days-per-run", "4", "--max-attempts", "1", "--reprocess", "failed",
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    days = [first + timedelta(days=n) for n in range(4)]
    assert "4 failed: " + ", ".join(f"{store} {d}" for d in days) in out.stdout + out.stderr
    with state_of(e2e):
        builds = ledger.read_builds([store], first, last)
    assert {b.status for b in builds.values()} == {"failed"} and len(builds) == 4
    assert all(
        "accepted_values_stg_clickstream__events_event_type" in b.error for b in builds.values()
    )
    bad.unlink()
    since = utcnow()
    fixed = e2e.cli(
        "backfill", "--start", str(first), "--end", str(last), "--stores", store,
        "--days-per-run", "4", "--reprocess", "failed",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    (repair,) = runs_since(e2e, since)
    assert run_days(repair) == days
    with state_of(e2e):
        assert {b.status for b in ledger.read_builds([store], first, last).values()} == {
            "completed"
        }


def test_a_batch_never_builds_a_day_an_in_flight_run_is_building(e2e):
    import re
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from clickstream.adapters import ledger

    store, first, last, busy = "in-mumbai", date(2026, 9, 15), date(2026, 9, 20), date(2026, 9, 17)

    def artifacts_of(run_id):
        async def go(client):
            return await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )

        return e2e.api(go)

    # Every dbt-global slot is held here until the backfill has planned, so the single-day run
    # is still in flight (running, waiting for a slot) when the orchestrator looks: otherwise
    # on a fast machine it could finish first and the test would prove nothing.
    with every_dbt_slot_held(e2e):
        single = e2e.prefect(
            "deployment", "run", f"clickstream-dbt-run/{store}", "-p", f"ds={busy}", check=True
        )
        single_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", single.stdout).group(1))
        wait_for(
            lambda: read_run(e2e, single_id).state_type.value == "RUNNING",
            timeout=240,
            what="the single-day run to start (and wait for a dbt slot)",
        )
        since = utcnow()
        out = e2e.cli(
            "backfill", "--start", str(first), "--end", str(last), "--stores", store,
            "--days-per-run", "4", "--reprocess", "all", "--no-follow", check=True,
        )  # fmt: skip
        parent = parent_run_id(out.stdout)
        wait_for(lambda: artifacts_of(parent), timeout=240, what="the backfill's plan")
        assert read_run(e2e, single_id).state_type.value == "RUNNING"  # in flight at planning
    wait_for(lambda: read_run(e2e, parent).state.is_final(), timeout=600, what="the backfill")
    assert read_run(e2e, parent).state_type.value == "COMPLETED", read_run(e2e, parent).state
    created = runs_since(e2e, since)
    built = Counter(d for r in created for d in run_days(r))
    assert busy not in built  # adopted, not rebuilt
    assert sorted(built) == [d for d in (first + timedelta(days=n) for n in range(6)) if d != busy]
    assert max(built.values()) == 1
    assert sorted(run_days(r)[0] for r in created) == [first, busy + timedelta(days=1)]

    run = wait_for(lambda: (r := read_run(e2e, single_id)).state.is_final() and r, timeout=300)
    assert run.state_type.value == "COMPLETED"
    with state_of(e2e):
        rec = ledger.read_builds([store], busy, busy)[(store, busy)]
    assert rec.flow_run_id == str(single_id)  # built once, by the run that was in flight
