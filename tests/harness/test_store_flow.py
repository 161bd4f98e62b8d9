"""The per-store dbt flow's body end to end under Prefect's test harness.

Real dbt on real DuckDB files, a real (temporary) Prefect API with the strict `dbt-global`
limit, the real ledger; no worker (the harness runs the flow in this process). What is
asserted comes from the API (task runs, logs, events, states), the ledger and the warehouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from clickstream.adapters import ledger
from clickstream.core.stores import load_registry
from clickstream.local.synthetic import add_bad_events, generate

pytestmark = pytest.mark.usefixtures("harness")

STORE = "us-flagship"
DAYS = [date(2026, 10, 1) + timedelta(days=n) for n in range(8)]
EPD = 1500


def api(fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def ensure_limit(limit: int = 2) -> None:
    from clickstream.adapters.prefect_api import ensure_global_limit

    api(lambda c: ensure_global_limit(c, limit))


def task_runs(run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return api(
        lambda c: c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    )


def eventually(fn, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        time.sleep(0.5)


def log_lines(run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = api(
        lambda c: c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    )
    return [entry.message for entry in logs]


def asset_events(run_id) -> dict[str, str]:
    """asset key -> event name, for the asset events related to this flow run."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    page = api(
        lambda c: c.read_events(
            filter=EventFilter(
                event=EventNameFilter(prefix=["prefect.asset.materialization."]),
                related=EventRelatedFilter(
                    resources_in_roles=[(f"prefect.flow-run.{run_id}", "flow-run")]
                ),
            ),
            limit=50,
        )
    )
    return {e.resource.id: e.event for e in page.events}


def all_asset_events(run_id, models: int = 3) -> dict[str, str]:
    """The run's asset events once one per model has arrived (events reach the server
    asynchronously, so the first read may hold only some of them)."""
    return eventually(
        lambda: found if len(found := asset_events(run_id)) >= models else None,
        f"{models} asset events",
    )


def dbt_node_names() -> set[str]:
    """What dbt itself lists for the store's build selection (independent of prefect-dbt)."""
    from dbt.cli.main import dbtRunner

    from clickstream import settings

    res = dbtRunner().invoke(
        [
            "ls",
            "--project-dir",
            str(settings.dbt_project_dir()),
            "--profiles-dir",
            str(settings.dbt_project_dir()),
            "--select",
            "+clickstream_daily",
            "--resource-types",
            "model",
            "test",
            "unit_test",
            "--output",
            "json",
            "--output-keys",
            "resource_type",
            "name",
            "--quiet",
        ]
    )
    import json

    return {f"{n['resource_type']} {n['name']}" for n in (json.loads(x) for x in res.result)}


def mart(store_id: str) -> list[tuple]:
    from clickstream.adapters.warehouse import duckdb_path

    store = load_registry().get(store_id)
    con = duckdb.connect(str(duckdb_path(store)))
    try:
        return con.execute("select * from clickstream.clickstream_daily order by ds").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store-flow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLICKSTREAM_STATE_DIR", str(root))
        mp.delenv("CLICKSTREAM_LEDGER_URL", raising=False)
        mp.delenv("CLICKSTREAM_WAREHOUSE_DIR", raising=False)
        mp.delenv("CLICKSTREAM_LANDING_DIR", raising=False)
        generate([load_registry().get(STORE)], DAYS[0] - timedelta(days=1), DAYS[-1], EPD)
        ensure_limit()
        yield root


def run(**params):
    from flows.clickstream_dbt import clickstream_dbt_run

    state = clickstream_dbt_run(store_id=STORE, return_state=True, **params)
    return state, state.state_details.flow_run_id


def test_full_mode_makes_a_task_per_dbt_node_and_asset_events(state):
    st, run_id = run(ds=DAYS[0])
    assert st.is_completed(), st.message
    tasks = task_runs(run_id)
    names = {t.name for t in tasks}
    assert names == dbt_node_names()
    assert len(tasks) == len(names) >= 10
    assert {t.state_type.value for t in tasks} == {"COMPLETED"}
    events = all_asset_events(run_id)
    assert {k.rsplit("/", 1)[-1]: v for k, v in events.items()} == {
        "stg_clickstream__events": "prefect.asset.materialization.succeeded",
        "int_clickstream__sessions": "prefect.asset.materialization.succeeded",
        "clickstream_daily": "prefect.asset.materialization.succeeded",
    }
    rec = ledger.read_builds([STORE])[(STORE, DAYS[0])]
    assert rec.status == "completed" and rec.flow_run_id == str(run_id) and rec.mart_rows == 1


def test_lean_mode_makes_no_task_and_logs_each_node(state):
    st, run_id = run(ds=DAYS[1], ds_end=DAYS[3], dbt_mode="lean")
    assert st.is_completed(), st.message
    assert task_runs(run_id) == []
    lines = eventually(
        lambda: [x for x in log_lines(run_id) if x.startswith("model clickstream_daily: success")],
        "the node result lines",
    )
    assert lines
    text = "\n".join(log_lines(run_id))
    for node in dbt_node_names():
        assert f"{node}: " in text, node
    events = all_asset_events(run_id)
    assert len(events) == 3 and set(events.values()) == {"prefect.asset.materialization.succeeded"}
    # The build let go of the store's DuckDB file: another process can open it at once.
    from clickstream.adapters.warehouse import duckdb_path

    path = duckdb_path(load_registry().get(STORE))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import duckdb; duckdb.connect({str(path)!r}, read_only=True).close()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    # One ledger row per day, each with its own fingerprint and counts.
    builds = ledger.read_builds([STORE], DAYS[1], DAYS[3])
    assert sorted(k[1] for k in builds) == DAYS[1:4]
    assert {b.flow_run_id for b in builds.values()} == {str(run_id)}
    assert len({b.fingerprint for b in builds.values()}) == 3
    rows = {r[1]: r for r in mart(STORE)}
    for (_, ds), b in builds.items():
        assert (b.events, b.sessions) == (rows[ds][2], rows[ds][3])


@pytest.mark.parametrize("mode", ["full", "lean"])
def test_a_failing_node_fails_the_run_and_is_named(state, mode):
    ds = DAYS[4] if mode == "full" else DAYS[5]
    bad = add_bad_events(load_registry().get(STORE), ds)
    try:
        st, run_id = run(ds=ds, dbt_mode=mode)
    finally:
        bad.unlink()
    assert st.is_failed()
    assert "accepted_values_stg_clickstream__events_event_type" in st.message
    assert "test " in st.message and ": fail" in st.message
    rec = ledger.read_builds([STORE])[(STORE, ds)]
    assert rec.status == "failed" and rec.flow_run_id == str(run_id)
    assert "accepted_values_stg_clickstream__events_event_type" in rec.error
    if mode == "full":
        failed = [t.name for t in task_runs(run_id) if t.state_type.value == "FAILED"]
        assert any("accepted_values_stg_clickstream__events_event_type" in n for n in failed)


def test_strict_about_the_dbt_global_limit(state):
    from prefect.exceptions import ObjectNotFound

    async def drop(client):
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name("dbt-global")

    api(drop)
    try:
        st, run_id = run(ds=DAYS[6], dbt_mode="lean")
    finally:
        ensure_limit()
    assert st.is_failed()
    assert "dbt-global" in st.message
    assert ledger.read_builds([STORE])[(STORE, DAYS[6])].status == "failed"
    assert (STORE, DAYS[6]) not in {(STORE, r[1]) for r in mart(STORE)}


def test_bad_days_fail_before_anything_is_built(state):
    before = ledger.read_builds([STORE])
    st, _ = run(ds=DAYS[2], ds_end=DAYS[1], dbt_mode="lean")
    assert st.is_failed() and "ds_end 2026-10-02 is before ds 2026-10-03" in st.message
    st, _ = run(ds=date(2025, 12, 31), dbt_mode="lean")
    assert st.is_failed() and "before us-flagship's earliest date 2026-01-01" in st.message
    st, _ = run(ds=DAYS[0], ds_end=DAYS[0] + timedelta(days=40), dbt_mode="lean")
    assert st.is_failed() and "at most 31" in st.message
    assert ledger.read_builds([STORE]) == before


def test_full_refresh_rebuilds_every_known_day_and_loses_nothing(state):
    # Make sure a few days are built, then note their rows.
    st, _ = run(ds=DAYS[1], ds_end=DAYS[3], dbt_mode="lean")
    assert st.is_completed(), st.message
    before = {r[1]: r for r in mart(STORE)}
    known = {k[1] for k, b in ledger.read_builds([STORE]).items()}
    assert known >= set(DAYS[1:4])
    st, run_id = run(ds=DAYS[7], full_refresh=True, dbt_mode="lean")
    assert st.is_completed(), st.message
    after = {r[1]: r for r in mart(STORE)}
    # Every day the ledger knew (failed ones included: rebuilt from the fixed source) plus
    # the requested day, with rows equal to per-partition builds of the same data.
    assert set(after) == known | {DAYS[7]}
    for ds, row in before.items():
        assert after[ds] == row, ds
    builds = ledger.read_builds([STORE])
    assert {b.flow_run_id for b in builds.values()} == {str(run_id)}
    assert {b.status for b in builds.values()} == {"completed"}
    # Asked for an early day, a full refresh still rebuilds the later days it knows.
    st, again = run(ds=DAYS[0], full_refresh=True, dbt_mode="lean")
    assert st.is_completed(), st.message
    rows = {r[1]: r for r in mart(STORE)}
    assert {ds: rows[ds] for ds in after} == after and DAYS[0] in rows
    assert {b.flow_run_id for b in ledger.read_builds([STORE]).values()} == {str(again)}
