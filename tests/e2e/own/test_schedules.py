"""The product runs on its own: the schedules in prefect.yaml fire (issue 19).

A real `prefect server` with its scheduler on (the one stack in `make test` that has it),
`prefect deploy --all`, a process worker, on SQLite and on the Postgres profile. Every
active schedule of prefect.yaml gets its upcoming runs within one scheduler loop, at the
times zoneinfo gives and with the schedule's parameters; a store's scheduled tick and the
nightly catch-up's scheduled run, brought forward, run through the worker and build what
they should (rows equal to the independent recount); missed ticks after an outage build the
day once; `clickstream doctor` finds nothing wrong.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from clickstream.adapters.warehouse import pg_url
from clickstream.local.postgres import drop_database, ensure_database, postgres_reachable
from tests.support.scenarios import Profile
from tests.support.schedules import (
    LOOP_SECONDS,
    a_scheduled_store_run_builds_its_day,
    missed_ticks_run_once,
    schedules_create_their_runs,
    the_nightly_catch_up_runs_from_its_schedule,
)
from tests.support.stack import generate, start_e2e_stack, wait_for


def _data(handle) -> None:
    today = date.today()
    generate(handle, today - timedelta(days=9), today + timedelta(days=1))


@pytest.fixture(scope="module")
def sqlite_scheduled(tmp_path_factory):
    started = datetime.now(UTC)
    handle = start_e2e_stack(tmp_path_factory.mktemp("scheduled") / "state", scheduler=True)
    try:
        _data(handle)
        yield Profile(handle), started
    finally:
        handle.down()


@pytest.fixture(scope="module")
def postgres_scheduled(tmp_path_factory):
    ok, why = postgres_reachable()
    if not ok:
        pytest.skip(why)
    suffix = uuid.uuid4().hex[:8]
    warehouse_db, prefect_db = f"clickstream_sched_{suffix}", f"prefect_sched_{suffix}"
    ensure_database(warehouse_db)
    ensure_database(prefect_db)
    env = {
        "CLICKSTREAM_DBT_TARGET": "postgres",
        "CLICKSTREAM_PG_DATABASE": warehouse_db,
        "CLICKSTREAM_LEDGER_URL": pg_url(warehouse_db),
    }
    handle = None
    started = datetime.now(UTC)
    try:
        handle = start_e2e_stack(
            tmp_path_factory.mktemp("pg-scheduled") / "state",
            profile="postgres",
            extra_env=env,
            database_url=pg_url(prefect_db, "asyncpg"),
            scheduler=True,
        )
        _data(handle)
        yield Profile(handle, target="postgres", env=env), started
    finally:
        if handle is not None:
            handle.down()
        drop_database(warehouse_db)
        drop_database(prefect_db)


def _prove_schedules(profile: Profile, started: datetime, store_id: str) -> None:
    upcoming = schedules_create_their_runs(profile.handle, started)
    a_scheduled_store_run_builds_its_day(profile, upcoming, store_id)
    the_nightly_catch_up_runs_from_its_schedule(profile, upcoming)


def test_every_schedule_fires_and_its_runs_build_on_sqlite(sqlite_scheduled):
    _prove_schedules(*sqlite_scheduled, store_id="us-flagship")


def test_missed_ticks_after_an_outage_build_the_day_once(sqlite_scheduled):
    missed_ticks_run_once(sqlite_scheduled[0], "au-sydney")


@pytest.mark.postgres
def test_every_schedule_fires_and_its_runs_build_on_postgres(postgres_scheduled):
    _prove_schedules(*postgres_scheduled, store_id="in-mumbai")


def test_doctor_is_healthy_on_a_stack_whose_scheduler_works(sqlite_scheduled):
    """Whatever ran before on this stack (runs brought forward use up upcoming runs), a live
    scheduler tops every schedule up within a loop, and the doctor then finds nothing wrong."""
    profile, _ = sqlite_scheduled

    last = {}

    def healthy():
        out = last["out"] = profile.handle.cli("doctor")
        return out if out.returncode == 0 else None

    try:
        out = wait_for(healthy, timeout=2 * LOOP_SECONDS + 30, interval=5, what="a healthy doctor")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; last doctor report:\n{last['out'].stdout}{last['out'].stderr}"
        ) from None
    for name in ("nightly-catch-up", "us-flagship", "in-mumbai", "au-sydney"):
        assert name in out.stdout


def test_the_server_vacuums_ended_flow_runs_after_a_week(sqlite_scheduled):
    """What the README promises about retention, read from the running server."""
    import json
    import urllib.request

    api = sqlite_scheduled[0].handle.cfg.api_url
    with urllib.request.urlopen(f"{api}/admin/settings", timeout=10) as resp:
        settings = json.load(resp)
    vacuum = settings["server"]["services"]["db_vacuum"]
    assert set(vacuum["enabled"]) == {"events", "flow_runs"}
    assert vacuum["retention_period"] in (7 * 86400, 7 * 86400.0, "P7D")
    assert settings["server"]["events"]["retention_period"] in (7 * 86400, 7 * 86400.0, "P7D")
