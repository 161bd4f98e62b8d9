"""`clickstream doctor` against Prefect's test harness, through the real CLI (a subprocess).

The harness runs no scheduler and no worker, so each test builds its situation through the
API: deployments with schedules, the runs the scheduler would have made (the server's own
``POST /deployments/{id}/schedule``, the code path the scheduler service uses, so the runs are
auto-scheduled and record their schedule), a worker heartbeat, the pool and dbt-global. Every
test starts from none of this project's flows, deployments or runs, a new work pool and its
own ledger, so the order does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from clickstream import settings
from clickstream.adapters import ledger
from clickstream.names import (
    CATCH_UP_DEPLOYMENT,
    CATCH_UP_FLOW_NAME,
    DBT_FLOW_NAME,
    GLOBAL_LIMIT_NAME,
    ORCHESTRATOR_DEPLOYMENT,
    ORCHESTRATOR_FLOW_NAME,
    WORK_POOL,
)

BIN = Path(sys.executable).parent
FLOWS = (DBT_FLOW_NAME, ORCHESTRATOR_FLOW_NAME, CATCH_UP_FLOW_NAME)


def api(fn):
    from prefect.client.orchestration import get_client

    async def go():
        async with get_client() as client:
            return await fn(client)

    return asyncio.run(go())


def doctor(*args: str, api_url: str | None = None) -> tuple[int, str]:
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": api_url or PREFECT_API_URL.value(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "COLUMNS": "250",
    }
    proc = subprocess.run(
        [str(BIN / "clickstream"), "doctor", *args],
        env=env,
        cwd=str(settings.project_dir()),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


async def _reset(client) -> None:
    """None of our flows (their deployments and runs go with them), a new empty pool."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.exceptions import ObjectNotFound

    from clickstream.adapters.prefect_api import ensure_global_limit, ensure_work_pool

    for flow in await client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=FLOWS))):
        await client.delete_flow(flow.id)
    with contextlib.suppress(ObjectNotFound):
        await client.delete_work_pool(WORK_POOL)
    await ensure_work_pool(client, None)
    await ensure_global_limit(client, 4)


@pytest.fixture
def clean(harness, isolated_state):
    api(_reset)
    yield
    api(_reset)  # later modules may expect dbt-global


async def deploy(client, flow: str, name: str, schedule=None, *, paused=False, params=None):
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    flow_id = await client.create_flow_from_name(flow)
    schedules = [DeploymentScheduleCreate(schedule=schedule, active=True)] if schedule else None
    dep_id = await client.create_deployment(
        flow_id=flow_id,
        name=name,
        work_pool_name=WORK_POOL,
        schedules=schedules,
        paused=paused,
        parameters=params or {},
    )
    return dep_id


async def schedule_runs(client, dep_id, **body) -> None:
    """What the scheduler service does for a deployment (defaults: the server's min_runs...)."""
    resp = await client.request(
        "POST", "/deployments/{id}/schedule", path_params={"id": dep_id}, json=body
    )
    resp.raise_for_status()


async def scheduled_runs(client, dep_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))
    )


async def healthy_setup(client, *, heartbeat=True) -> dict[str, list]:
    """us-flagship (interval), the nightly catch-up (cron), the orchestrator (no schedule),
    their scheduled runs and a live worker; returns each scheduled deployment's runs."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    store = await deploy(
        client,
        DBT_FLOW_NAME,
        "us-flagship",
        IntervalSchedule(interval=timedelta(hours=1)),
        params={"store_id": "us-flagship"},
    )
    nightly = await deploy(
        client, CATCH_UP_FLOW_NAME, CATCH_UP_DEPLOYMENT, CronSchedule(cron="15 3 * * *")
    )
    await deploy(client, ORCHESTRATOR_FLOW_NAME, ORCHESTRATOR_DEPLOYMENT)
    for dep_id in (store, nightly):
        await schedule_runs(client, dep_id)
    if heartbeat:
        await client.send_worker_heartbeat(work_pool_name=WORK_POOL, worker_name="doctor-worker")
    return {
        "us-flagship": await scheduled_runs(client, store),
        CATCH_UP_DEPLOYMENT: await scheduled_runs(client, nightly),
    }


def test_healthy_lists_the_next_run_of_each_schedule(clean):
    runs = api(healthy_setup)
    # What the 3.8.8 scheduler records on its runs, and what the doctor counts per schedule.
    for dep_runs in runs.values():
        assert len(dep_runs) >= 3
        for r in dep_runs:
            assert r.auto_scheduled and r.created_by.type == "SCHEDULE" and r.created_by.id
    code, out = doctor()
    assert code == 0, out
    assert "healthy" in out and "error:" not in out, out
    store_next = min(r.next_scheduled_start_time for r in runs["us-flagship"])
    nightly_next = min(r.next_scheduled_start_time for r in runs[CATCH_UP_DEPLOYMENT])
    assert nightly_next.astimezone(UTC).strftime("%H:%M") == "03:15"
    for name, nxt in (
        (f"{DBT_FLOW_NAME}/us-flagship", store_next),
        (f"{CATCH_UP_FLOW_NAME}/{CATCH_UP_DEPLOYMENT}", nightly_next),
    ):
        (line,) = [ln for ln in out.splitlines() if name in ln]
        assert nxt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") in line, (name, out)
    local = store_next.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M")
    assert f"{local} America/New_York" in out, out  # us-flagship's zone, from stores/
    assert "live worker(s) (doctor-worker)" in out, out
    assert f"{ORCHESTRATOR_FLOW_NAME}/{ORCHESTRATOR_DEPLOYMENT}: no schedule" in out, out


def test_scheduler_off_is_an_error_naming_the_schedule(clean):
    from prefect.client.schemas.schedules import IntervalSchedule

    async def setup(client):
        dep_id = await deploy(
            client,
            DBT_FLOW_NAME,
            "in-mumbai",
            IntervalSchedule(interval=timedelta(minutes=30)),
            params={"store_id": "in-mumbai"},
        )
        await client.send_worker_heartbeat(work_pool_name=WORK_POOL, worker_name="w")
        dep = await client.read_deployment(dep_id)
        return dep.schedules[0].id, dep_id

    schedule_id, dep_id = api(setup)
    code, out = doctor()
    assert code == 1, out
    assert "the scheduler is not keeping runs ahead: it may be dead" in out, out
    assert f"{DBT_FLOW_NAME}/in-mumbai schedule every 0:30:00 (id {schedule_id})" in out, out
    assert "0 future auto-scheduled run(s), fewer than 3" in out, out

    # A scheduler that died after making one run: an upcoming run shows, still an error.
    api(lambda c: schedule_runs(c, dep_id, min_runs=1, max_runs=1, min_time=0))
    code, out = doctor()
    assert code == 1, out
    assert "1 future auto-scheduled run(s), fewer than 3" in out, out


def test_no_live_worker_is_an_error_naming_the_pool(clean):
    api(lambda c: healthy_setup(c, heartbeat=False))
    code, out = doctor()
    assert code == 1, out
    assert f"work pool {WORK_POOL} has no live worker" in out, out
    assert "1 problem(s)" in out, out


def test_missing_dbt_global_is_an_error_naming_the_limit(clean):
    async def setup(client):
        await healthy_setup(client)
        await client.delete_global_concurrency_limit_by_name(GLOBAL_LIMIT_NAME)

    api(setup)
    code, out = doctor()
    assert code == 1, out
    assert f"global concurrency limit {GLOBAL_LIMIT_NAME} does not exist" in out, out
    assert "1 problem(s)" in out, out


def test_store_left_paused_by_a_killed_orchestrator(clean):
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.states import Crashed, Running

    gone = str(uuid.uuid4())  # an orchestrator run that no longer exists

    async def setup(client):
        await healthy_setup(client)
        orch = await client.read_deployment_by_name(
            f"{ORCHESTRATOR_FLOW_NAME}/{ORCHESTRATOR_DEPLOYMENT}"
        )
        killed = await client.create_flow_run_from_deployment(orch.id)
        await client.set_flow_run_state(killed.id, Running(), force=True)
        await client.set_flow_run_state(killed.id, Crashed(message="SIGKILL"), force=True)
        ids = {}
        for store in ("au-sydney", "in-mumbai"):
            ids[store] = await deploy(
                client,
                DBT_FLOW_NAME,
                store,
                IntervalSchedule(interval=timedelta(minutes=30)),
                paused=True,  # the orchestrator's pause_deployment, as recorded below
                params={"store_id": store},
            )
        return killed, ids

    killed, ids = api(setup)
    ledger.record_pause(str(ids["au-sydney"]), "au-sydney", str(killed.id))
    ledger.record_pause(str(ids["in-mumbai"]), "in-mumbai", gone)
    code, out = doctor()
    assert code == 1, out
    assert (
        f"store au-sydney: schedule left paused by ended run {killed.name} ({killed.id}, "
        f"Crashed); the next backfill or catch-up run resumes it, or `prefect deployment resume "
        f"{DBT_FLOW_NAME}/au-sydney`"
    ) in out, out
    assert f"store in-mumbai: schedule left paused by ended run {gone} (it no longer exists)" in (
        out
    ), out
    # Paused deployments have no auto-scheduled runs (pausing deletes them): not a scheduler
    # problem, the pause is the problem.
    assert "not keeping runs ahead" not in out and "2 problem(s)" in out, out


def test_unreachable_api_is_exit_2():
    code, out = doctor(api_url="http://127.0.0.1:9/api")
    assert code == 2, out
    assert "cannot reach the Prefect API at http://127.0.0.1:9/api" in out, out
