"""prefect.yaml integrity: every store has its deployment, limits are in place, entrypoints load."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from clickstream import settings
from clickstream.core.stores import load_registry
from clickstream.deploy.prefect_yaml import check_prefect_yaml, synced_text
from clickstream.names import (
    CATCH_UP_DEPLOYMENT,
    CATCH_UP_ENTRYPOINT,
    DBT_ENTRYPOINT,
    ORCHESTRATOR_DEPLOYMENT,
    ORCHESTRATOR_ENTRYPOINT,
)


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(settings.prefect_yaml_path().read_text())


def test_every_store_has_a_single_flight_deployment(doc):
    deps = {d["name"]: d for d in doc["deployments"]}
    for store in load_registry():
        dep = deps[store.store_id]
        assert dep["entrypoint"] == DBT_ENTRYPOINT
        assert dep["concurrency_limit"] == {
            "limit": 1,
            "collision_strategy": store.collision_strategy,
        }
        assert dep["parameters"] == {"store_id": store.store_id}
        assert dep["work_pool"]["name"] == "local-work-pool"
        (sched,) = dep["schedules"]
        assert sched["interval"] == store.schedule_interval_seconds == 1800
        assert store.store_id in dep["tags"]


def test_backfill_on_demand_and_catch_up_nightly(doc):
    deps = {d["name"]: d for d in doc["deployments"]}
    orch = deps[ORCHESTRATOR_DEPLOYMENT]
    assert orch["entrypoint"] == ORCHESTRATOR_ENTRYPOINT
    assert not orch.get("schedules")  # a person runs it, with dates
    nightly = deps[CATCH_UP_DEPLOYMENT]
    assert nightly["entrypoint"] == CATCH_UP_ENTRYPOINT
    assert nightly["work_pool"]["name"] == "local-work-pool"
    (sched,) = nightly["schedules"]
    assert sched["cron"] == "15 3 * * *" and sched["timezone"] == "UTC" and sched["active"]
    assert sched["parameters"] == {"lookback_days": 7, "days_per_run": 7}


def test_schedule_parameters_fit_the_catch_up_flow(doc, monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(settings.project_dir())
    flow = load_flow_from_entrypoint(CATCH_UP_ENTRYPOINT)
    (sched,) = {d["name"]: d for d in doc["deployments"]}[CATCH_UP_DEPLOYMENT]["schedules"]
    assert flow.validate_parameters(sched["parameters"])["lookback_days"] == 7


def test_check_passes_and_sync_is_idempotent():
    reg = load_registry()
    assert check_prefect_yaml(reg).ok, check_prefect_yaml(reg).problems
    text = settings.prefect_yaml_path().read_text()
    assert synced_text(text, reg) == text


def test_check_detects_drift(tmp_path, monkeypatch):
    """A store file added without `stores sync`, or a hand-edited limit, fails the check."""
    stores = tmp_path / "stores"
    shutil.copytree(settings.stores_dir(), stores)
    (stores / "de-berlin.yaml").write_text(
        "store_id: de-berlin\ndisplay_name: Berlin\ndatabase: de_berlin\n"
        "timezone: Europe/Berlin\nearliest_ds: 2026-01-01\n"
    )
    monkeypatch.setenv("CLICKSTREAM_STORES_DIR", str(stores))
    reg = load_registry()
    result = check_prefect_yaml(reg)
    assert not result.ok
    assert any("de-berlin" in p for p in result.problems)

    # sync fixes it; then breaking the limit by hand is caught
    pf = tmp_path / "prefect.yaml"
    pf.write_text(synced_text(settings.prefect_yaml_path().read_text(), reg))
    assert check_prefect_yaml(reg, pf).ok
    pf.write_text(pf.read_text().replace("*single_flight_enqueue", "{limit: 2}", 1))
    assert not check_prefect_yaml(reg, pf).ok


def test_cli_check_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "stores", "check"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("entrypoint", "name"),
    [
        (DBT_ENTRYPOINT, "clickstream-dbt-run"),
        (ORCHESTRATOR_ENTRYPOINT, "clickstream-backfill"),
        (CATCH_UP_ENTRYPOINT, "clickstream-catch-up"),
    ],
)
def test_entrypoints_load(entrypoint, name, monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(settings.project_dir())
    assert load_flow_from_entrypoint(entrypoint).name == name


def test_orchestrator_form_is_typed_and_described(monkeypatch):
    """The Prefect UI builds the run form from this schema: pickers, selects, descriptions."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(settings.project_dir())
    flow = load_flow_from_entrypoint(ORCHESTRATOR_ENTRYPOINT)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    props = schema["properties"]
    for name in (
        "start_date",
        "end_date",
        "stores",
        "reprocess",
        "order",
        "days_per_run",
        "max_parallel",
        "max_attempts",
        "pause_store_schedules",
        "dry_run",
    ):
        assert props[name].get("description"), f"{name} has no description"
    # Required dates: the form shows plain date pickers, not "date / None" choices.
    assert set(schema["required"]) >= {"start_date", "end_date"}
    for name in ("start_date", "end_date"):
        assert props[name].get("format") == "date" and "anyOf" not in props[name], props[name]
    assert props["days_per_run"]["type"] == "integer" and props["days_per_run"]["default"] == 1
    assert "retry" in props["days_per_run"]["description"]
    text = yaml.safe_dump(props)
    for sid in load_registry().ids:
        assert sid in text  # multi-select of known stores
    for policy in ("missing", "failed", "stale", "all"):
        assert policy in text


def test_store_form_keeps_full_dbt_mode_for_people(monkeypatch):
    """A person clicking Run on a store deployment gets per-node tasks; backfills ask for lean."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(settings.project_dir())
    flow = load_flow_from_entrypoint(DBT_ENTRYPOINT)
    props = parameter_schema(flow.fn).model_dump_for_openapi()["properties"]
    assert props["dbt_mode"]["default"] == "full"
    assert set(props["dbt_mode"]["enum"]) == {"full", "lean"}
    assert "select" not in props  # a partial selection could leave a ✅ day with stale rows
    assert "Nothing already built is lost" in props["full_refresh"]["description"]
