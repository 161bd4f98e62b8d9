"""prefect.yaml integrity: every store has its deployment, limits are in place, entrypoints load."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from clickstream import paths
from clickstream.deployments import (
    DBT_ENTRYPOINT,
    ORCHESTRATOR_DEPLOYMENT,
    ORCHESTRATOR_ENTRYPOINT,
    check_prefect_yaml,
    synced_text,
)
from clickstream.registry import load_registry


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(paths.prefect_yaml_path().read_text())


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


def test_orchestrator_has_nightly_catch_up(doc):
    deps = {d["name"]: d for d in doc["deployments"]}
    orch = deps[ORCHESTRATOR_DEPLOYMENT]
    assert orch["entrypoint"] == ORCHESTRATOR_ENTRYPOINT
    (sched,) = orch["schedules"]
    assert "cron" in sched
    assert sched["parameters"]["mode"] == "catch_up"
    assert sched["parameters"]["lookback_days"] == 7


def test_check_passes_and_sync_is_idempotent():
    reg = load_registry()
    assert check_prefect_yaml(reg).ok, check_prefect_yaml(reg).problems
    text = paths.prefect_yaml_path().read_text()
    assert synced_text(text, reg) == text


def test_check_detects_drift(tmp_path, monkeypatch):
    """A store file added without `stores sync`, or a hand-edited limit, fails the check."""
    stores = tmp_path / "stores"
    shutil.copytree(paths.stores_dir(), stores)
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
    pf.write_text(synced_text(paths.prefect_yaml_path().read_text(), reg))
    assert check_prefect_yaml(reg, pf).ok
    pf.write_text(pf.read_text().replace("*single_flight_enqueue", "{limit: 2}", 1))
    assert not check_prefect_yaml(reg, pf).ok


def test_cli_check_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "stores", "check"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("entrypoint", [DBT_ENTRYPOINT, ORCHESTRATOR_ENTRYPOINT])
def test_entrypoints_load(entrypoint, monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(paths.project_dir())
    flow = load_flow_from_entrypoint(entrypoint)
    assert flow.name in ("clickstream-dbt-run", "clickstream-backfill")


def test_orchestrator_form_is_typed_and_described(monkeypatch):
    """The Prefect UI builds the run form from this schema: pickers, selects, descriptions."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(paths.project_dir())
    flow = load_flow_from_entrypoint(ORCHESTRATOR_ENTRYPOINT)
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    props = schema["properties"]
    for name in (
        "start_date",
        "end_date",
        "stores",
        "reprocess",
        "order",
        "max_parallel",
        "max_attempts",
        "pause_store_schedules",
        "dry_run",
    ):
        assert props[name].get("description"), f"{name} has no description"
    text = yaml.safe_dump(props)
    assert "format: date" in text  # date pickers
    for sid in load_registry().ids:
        assert sid in text  # multi-select of known stores
    for policy in ("missing", "failed", "stale", "all"):
        assert policy in text
