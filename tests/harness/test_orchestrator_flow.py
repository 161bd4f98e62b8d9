"""The orchestrator flows' planning and artifacts under Prefect's test harness.

No worker: partitions are built by running the store flow in this process, and the
orchestrators run as dry runs (plan, grid and table artifacts, nothing submitted). What a
user would see is read back from the API: the run's state message and its artifacts.
Expected states come from what the test did (built, deleted, landed late), not from the
planner's own rules.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from clickstream.adapters import ledger
from clickstream.core.stores import load_registry
from clickstream.local.synthetic import generate
from tests.support.builders import write_events

pytestmark = pytest.mark.usefixtures("harness")

DAYS = [date(2026, 9, 10) + timedelta(days=n) for n in range(4)]
STORES = ["in-mumbai", "us-flagship"]


def api(fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def artifacts(run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    arts = api(
        lambda c: c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    )
    return {a.key: a.data for a in arts if a.key}


def table_states(run_id, prefix: str = "backfill") -> dict[tuple[str, date], dict]:
    rows = json.loads(artifacts(run_id)[f"{prefix}-partitions"])
    return {(r["store_id"], date.fromisoformat(r["ds"])): r for r in rows}


def backfill(**params):
    from flows.backfill import clickstream_backfill

    state = asyncio.run(
        clickstream_backfill(
            start_date=DAYS[0], end_date=DAYS[-1], stores=STORES, return_state=True, **params
        )
    )
    return state, state.state_details.flow_run_id


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every (store, day) of DAYS built once, in lean mode, by the store flow."""
    from clickstream.adapters.prefect_api import ensure_global_limit
    from flows.clickstream_dbt import clickstream_dbt_run

    root = tmp_path_factory.mktemp("orchestrator-flow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLICKSTREAM_STATE_DIR", str(root))
        for var in (
            "CLICKSTREAM_LEDGER_URL",
            "CLICKSTREAM_WAREHOUSE_DIR",
            "CLICKSTREAM_LANDING_DIR",
        ):
            mp.delenv(var, raising=False)
        reg = load_registry()
        generate([reg.get(s) for s in STORES], DAYS[0] - timedelta(days=1), DAYS[-1], 800)
        api(lambda c: ensure_global_limit(c, 2))
        for sid in STORES:
            st = clickstream_dbt_run(
                store_id=sid, ds=DAYS[0], ds_end=DAYS[-1], dbt_mode="lean", return_state=True
            )
            assert st.is_completed(), st.message
        yield root


def test_dry_run_plans_and_publishes_a_grid_of_every_partition(built):
    st, run_id = backfill(reprocess="all", days_per_run=3, dry_run=True)
    assert st.is_completed()
    assert "Dry run" in st.message and "8 to run under policy 'all' in 4 child run(s)" in st.message
    assert "warehouse check: 2 store(s) read" in st.message
    rows = table_states(run_id)
    assert len(rows) == 8
    assert {r["state"] for r in rows.values()} == {"completed"}
    assert {r["note"] for r in rows.values()} == {"would run"}
    # days_per_run 3 over four days: a run of three days, then one of a single day
    assert rows[("us-flagship", DAYS[0])]["run_days"] == f"{DAYS[0]}..{DAYS[2]}"
    assert rows[("us-flagship", DAYS[3])]["run_days"] == str(DAYS[3])
    grid = artifacts(run_id)["backfill-grid"]
    cells = [line for line in grid.splitlines() if line.startswith("| 2026-")]
    assert len(cells) == 4 and "".join(cells).count("🔵") == 8  # every cell: would run


def test_nothing_to_do_when_everything_is_built(built):
    st, run_id = backfill()
    assert st.is_completed() and "Nothing to do" in st.message
    assert "8 partitions: 8 completed" in st.message


def test_a_mart_row_deleted_behind_the_ledgers_back_is_missing(built):
    from clickstream.adapters.warehouse import duckdb_path

    store = load_registry().get("in-mumbai")
    victim = DAYS[1]
    con = duckdb.connect(str(duckdb_path(store)))
    try:
        con.execute("delete from clickstream.clickstream_daily where ds = ?", [victim])
    finally:
        con.close()
    assert ledger.read_builds(["in-mumbai"])[("in-mumbai", victim)].status == "completed"
    st, run_id = backfill(dry_run=True)
    rows = table_states(run_id)
    assert rows[("in-mumbai", victim)]["state"] == "missing"
    assert rows[("in-mumbai", victim)]["note"] == "would run"
    others = {k: r["state"] for k, r in rows.items() if k != ("in-mumbai", victim)}
    assert set(others.values()) == {"completed"}
    # Rebuild it, then it is completed again.
    from flows.clickstream_dbt import clickstream_dbt_run

    assert clickstream_dbt_run(
        store_id="in-mumbai", ds=victim, dbt_mode="lean", return_state=True
    ).is_completed()
    _, run_id = backfill(dry_run=True)
    assert table_states(run_id)[("in-mumbai", victim)]["state"] == "completed"


def test_late_data_in_the_lookback_makes_the_next_day_stale(built):
    """An event in the last hour of D-1 is read by D's build: D is stale, D-1 too."""
    tz = ZoneInfo("America/New_York")
    d = DAYS[2]
    midnight = datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    from clickstream import settings

    write_events(
        settings.landing_dir(),
        d - timedelta(days=1),
        "late-lookback.parquet",
        [("late-lookback-1", midnight - timedelta(minutes=15), datetime(2030, 1, 1), "u-late")],
    )
    _, run_id = backfill(reprocess="stale", dry_run=True)
    rows = table_states(run_id)
    stale = {k for k, r in rows.items() if r["state"] == "stale"}
    assert stale == {("us-flagship", d - timedelta(days=1)), ("us-flagship", d)}
    assert {k for k, r in rows.items() if r["note"] == "would run"} == stale


def test_a_store_being_built_keeps_the_ledgers_word_and_is_named(built):
    from clickstream.adapters.warehouse import store_lock

    store = load_registry().get("in-mumbai")
    with store_lock(store, exclusive=True, wait_seconds=1):  # as a running build holds it
        st, run_id = backfill(dry_run=True)
    assert (
        "not checked, the ledger's word kept: in-mumbai (a build holds its warehouse file)"
        in st.message
    )
    grid = artifacts(run_id)["backfill-grid"]
    assert "in-mumbai (a build holds its warehouse file)" in grid


def _created_nothing_since(before: dict) -> None:
    """No child run and no dispatch row appeared since ``before`` (from _what_exists)."""
    assert _what_exists() == before


def _what_exists() -> dict:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = api(
        lambda c: c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-dbt-run"]))
        )
    )
    return {
        "store runs": sorted(str(r.id) for r in runs),
        "dispatches": ledger.read_latest_dispatches(),
        "builds": {k: (b.status, b.flow_run_id) for k, b in ledger.read_builds(STORES).items()},
    }


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"end_date": DAYS[0] - timedelta(days=2)}, "before start_date"),
        ({"max_parallel": 99}, "exceeds 2 x the dbt-global limit 2"),
    ],
)
def test_bad_input_fails_the_run_before_anything_is_created(built, params, words):
    """Checks that need the registry, the server's dbt-global limit or today's date: the
    orchestrator's body ends the run Failed before any artifact, ledger row or child run."""
    from flows.backfill import clickstream_backfill

    before = _what_exists()
    base = {"start_date": DAYS[0], "end_date": DAYS[-1], "stores": STORES}
    if words is None:  # every active store: au-sydney has no data, but is in range
        st = asyncio.run(
            clickstream_backfill(**{**base, **params}, dry_run=True, return_state=True)
        )
        assert st.is_completed() and "3 stores" in st.message, st.message
        return
    st = asyncio.run(clickstream_backfill(**{**base, **params}, return_state=True))
    assert st.is_failed()
    assert "invalid backfill request" in st.message and words in st.message
    assert artifacts(st.state_details.flow_run_id) == {}
    _created_nothing_since(before)


def test_a_session_gap_beyond_the_lookback_fails_the_run_before_anything_is_created(
    built, monkeypatch
):
    """Was refused only inside each dbt run, after dispatch, with retries."""
    import clickstream.pipelines.backfill.snapshot as snapshot
    from flows.backfill import clickstream_backfill

    monkeypatch.setattr(snapshot, "project_vars", lambda *a: {"session_gap_minutes": 90})
    before = _what_exists()
    st = asyncio.run(
        clickstream_backfill(
            start_date=DAYS[0],
            end_date=DAYS[-1],
            stores=STORES,
            reprocess="all",
            return_state=True,
        )
    )
    assert st.is_failed()
    assert "dbt var session_gap_minutes (dbt/dbt_project.yml) is 90 minutes" in st.message
    assert "session lookback of 60 minutes" in st.message
    assert artifacts(st.state_details.flow_run_id) == {}
    _created_nothing_since(before)


UI_BACKFILL = {
    "start_date": DAYS[0].isoformat(),
    "end_date": DAYS[-1].isoformat(),
    "stores": STORES,
}


def test_the_forms_empty_store_list_means_every_active_store(built):
    from flows.backfill import clickstream_backfill

    st = asyncio.run(
        clickstream_backfill(**{**UI_BACKFILL, "stores": []}, dry_run=True, return_state=True)
    )
    assert st.is_completed() and "3 stores" in st.message, st.message


@pytest.mark.parametrize(
    ("flow", "params", "field"),
    [
        ("backfill", {**UI_BACKFILL, "child_timeout_minutes": 0}, "child_timeout_minutes"),
        ("backfill", {**UI_BACKFILL, "days_per_run": 0}, "days_per_run"),
        ("backfill", {**UI_BACKFILL, "days_per_run": 32}, "days_per_run"),
        ("backfill", {**UI_BACKFILL, "max_attempts": 0}, "max_attempts"),
        ("catch_up", {"lookback_days": 1_000_000, "stores": STORES}, "lookback_days"),
        ("catch_up", {"lookback_days": 2, "child_timeout_minutes": 0}, "child_timeout_minutes"),
    ],
)
def test_out_of_range_form_values_fail_the_run_before_anything_is_created(
    built, flow, params, field
):
    """The parameters as the UI sends them (a JSON dict). A run created from a deployment is
    refused by the server (below); one started any other way fails its parameter validation
    before the flow body runs: Failed, the field named, nothing created."""
    from flows.backfill import clickstream_backfill
    from flows.catch_up import clickstream_catch_up

    fn = {"backfill": clickstream_backfill, "catch_up": clickstream_catch_up}[flow]
    before = _what_exists()
    st = asyncio.run(fn(**params, return_state=True))
    assert st.is_failed()
    assert "Validation of flow parameters failed" in st.message and field in st.message
    assert "greater than or equal to" in st.message or "less than or equal to" in st.message
    assert artifacts(st.state_details.flow_run_id) == {}
    _created_nothing_since(before)


def test_the_server_refuses_a_run_from_a_deployment_with_out_of_range_values(built):
    """As `prefect deploy` registers the orchestrator (its parameter schema, enforcement on,
    the default): the server validates a new run's parameters against the schema and answers
    409, so a bad value from the UI or the API never becomes a run."""
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.utilities.callables import parameter_schema

    from flows.backfill import clickstream_backfill
    from flows.catch_up import clickstream_catch_up

    async def go(client):
        refused = {}
        for fn, bad in (
            (clickstream_backfill, {**UI_BACKFILL, "days_per_run": 0}),
            (clickstream_backfill, {**UI_BACKFILL, "child_timeout_minutes": 0}),
            (clickstream_backfill, {**UI_BACKFILL, "max_parallel": 0}),
            (clickstream_catch_up, {"lookback_days": 1_000_000}),
        ):
            flow_id = await client.create_flow_from_name(fn.name)
            dep_id = await client.create_deployment(
                flow_id=flow_id,
                name="schema-check",
                parameter_openapi_schema=parameter_schema(fn).model_dump_for_openapi(),
                enforce_parameter_schema=True,
            )
            try:
                with pytest.raises(PrefectHTTPStatusError) as exc:
                    await client.create_flow_run_from_deployment(dep_id, parameters=bad)
                refused[next(k for k in bad if k not in ("start_date", "end_date", "stores"))] = (
                    exc.value.response.status_code,
                    exc.value.response.json()["detail"],
                )
                runs = await client.read_flow_runs()
                assert not [r for r in runs if r.deployment_id == dep_id]
                # An in-range value is accepted by the same deployment.
                good = {**bad, **{k: 1 for k in bad if k not in UI_BACKFILL}}
                run = await client.create_flow_run_from_deployment(dep_id, parameters=good)
                await client.delete_flow_run(run.id)
            finally:
                await client.delete_deployment(dep_id)
        return refused

    refused = api(go)
    assert set(refused) == {
        "days_per_run",
        "child_timeout_minutes",
        "max_parallel",
        "lookback_days",
    }
    for field, (code, detail) in refused.items():
        assert code == 409, (field, code, detail)
        assert f"Validation failed for field '{field}'" in detail, detail


def test_catch_up_flow_plans_the_last_complete_local_days(built):
    from flows.catch_up import clickstream_catch_up

    st = asyncio.run(
        clickstream_catch_up(lookback_days=2, stores=["in-mumbai"], dry_run=True, return_state=True)
    )
    assert st.is_completed(), st.message
    run_id = st.state_details.flow_run_id
    rows = table_states(run_id, prefix="catch-up")
    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    assert sorted(k[1] for k in rows) == [today - timedelta(days=2), today - timedelta(days=1)]
    assert {r["state"] for r in rows.values()} == {"missing"}
    assert "catch-up-grid" in artifacts(run_id)


# -- schedules a killed orchestrator left paused ------------------------------------------------
def _left_paused_by_a_crashed_orchestrator(store_id: str):
    """A store deployment paused and recorded in the ledger by an orchestrator run that then
    crashed (its process killed before it could resume). Returns the deployment id."""
    from prefect.states import Crashed

    async def go(client):
        flow_id = await client.create_flow_from_name("clickstream-dbt-run")
        found = await client.read_deployments()
        dep = next((d for d in found if d.name == store_id), None)
        dep_id = dep.id if dep else await client.create_deployment(flow_id=flow_id, name=store_id)
        # Any run id the server knows, ended Crashed, stands in for the killed orchestrator.
        run = await client.create_flow_run_from_deployment(dep_id, name="killed orchestrator")
        await client.set_flow_run_state(run.id, Crashed(message="killed"), force=True)
        await client.pause_deployment(dep_id)
        return dep_id, str(run.id)

    dep_id, owner = api(go)
    ledger.record_pause(str(dep_id), store_id, owner)
    return dep_id


def _paused(dep_id) -> bool:
    return api(lambda c: c.read_deployment(dep_id)).paused


def test_a_dry_run_catch_up_resumes_a_schedule_a_killed_orchestrator_left_paused(built):
    from flows.catch_up import clickstream_catch_up

    dep_id = _left_paused_by_a_crashed_orchestrator("us-flagship")
    assert _paused(dep_id) and ledger.read_pauses()
    st = asyncio.run(
        clickstream_catch_up(lookback_days=2, stores=["in-mumbai"], dry_run=True, return_state=True)
    )
    assert st.is_completed() and "Dry run" in st.message
    assert not _paused(dep_id)
    assert ledger.read_pauses() == []


def test_a_nothing_to_do_run_resumes_a_schedule_a_killed_orchestrator_left_paused(built):
    dep_id = _left_paused_by_a_crashed_orchestrator("in-mumbai")
    st, _ = backfill()
    assert st.is_completed() and "Nothing to do" in st.message
    assert not _paused(dep_id)
    assert ledger.read_pauses() == []


def test_bad_input_still_resumes_a_schedule_a_killed_orchestrator_left_paused(built):
    dep_id = _left_paused_by_a_crashed_orchestrator("us-flagship")
    # Bad input the body refuses (an out-of-range number fails the run's parameter
    # validation before the body, and so before this resume: the server refuses such a run
    # from a deployment anyway).
    st, _ = backfill(max_parallel=99)
    assert st.is_failed() and "exceeds 2 x the dbt-global limit" in st.message
    assert not _paused(dep_id)
