"""The real client: the Prefect UI in headless Chromium, and the deployments it starts.

- The backfill orchestrator's typed form (date pickers, store multi-select, days_per_run) starts
  a backfill with exactly those parameters.
- A regular store run (dbt_mode full) has one Prefect task run per dbt node, through the API
  and on its run page.
- The nightly catch-up deployment runs from its schedule's parameters (the test stack's
  scheduler is off, so the test creates the run the scheduler would).

Playwright's Python package drives Debian's /usr/bin/chromium (installed by .ci/run); no
browser is downloaded. Screenshots go to artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from clickstream import settings
from tests.support.runs import orchestrator_runs
from tests.support.stack import child_runs, read_run, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = settings.project_dir() / "artifacts" / "ui"
CATCH_UP = "clickstream-catch-up/nightly-catch-up"


@contextlib.contextmanager
def _chromium():
    """A page of headless Debian Chromium (skips when it is not installed)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (bash .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.set_default_timeout(30000)
            yield page
        finally:
            browser.close()


def _wait_final(e2e, run_id, timeout: float, what: str):
    return wait_for(
        lambda: (r := read_run(e2e, run_id)).state.is_final() and r,
        timeout=timeout,
        interval=2,
        what=what,
    )


def _task_runs(e2e, run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def go(client):
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )

    return e2e.api(go)


def _artifact(e2e, run_id, key: str):
    """The newest artifact ``key`` of a flow run (the final grid replaces the plan grid)."""

    async def go(client):
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            ArtifactFilterKey,
        )
        from prefect.client.schemas.sorting import ArtifactSort

        (art,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                key=ArtifactFilterKey(any_=[key]),
            ),
            limit=1,
            sort=ArtifactSort.CREATED_DESC,
        )
        return art

    return e2e.api(go)


# -- the orchestrator's run form ----------------------------------------------------------------
def _prop(page, name: str):
    """A form field by its label: ``name`` (required) or ``name (Optional)``."""
    label = page.locator(".schema-form-property__label").filter(
        has_text=re.compile(rf"^{re.escape(name)}( \(Optional\))?$")
    )
    return page.locator(".schema-form-property", has=label).first


def _pick_date(page, name: str, day: date) -> None:
    """Required date field: a plain date picker (no type toggle to click first)."""
    prop = _prop(page, name)
    assert prop.get_by_role("button", name="date", exact=True).count() == 0, "type toggle shown"
    prop.locator(".p-date-button__control").click()
    picker = page.locator(".p-date-picker").last
    picker.wait_for()
    for _ in range(24):  # walk the calendar to the target month
        month = picker.locator(".p-date-picker__title-month").inner_text().strip()
        year = int(picker.locator(".p-date-picker__title-year").inner_text().strip())
        shown = (year, list(calendar.month_name).index(month))
        if shown == (day.year, day.month):
            break
        arrow = (
            ".p-calendar-header__before"
            if shown > (day.year, day.month)
            else ".p-calendar-header__after"
        )
        picker.locator(f"{arrow} button").click()
    picker.locator(".p-calendar-date-picker__date--in-month").get_by_text(
        str(day.day), exact=True
    ).first.click()
    page.get_by_role("button", name="Apply", exact=True).click()
    from playwright.sync_api import expect

    # The field re-renders after Apply; wait for it (bounded) rather than read it at once.
    expect(prop.locator(".p-date-button__value")).not_to_have_text("Select date", timeout=15_000)


def _pick_stores(page, stores: list[str]) -> None:
    prop = _prop(page, "stores")
    prop.get_by_role("button", name="list", exact=True).click()
    control = prop.locator(".p-select-button__control")
    control.click()
    for sid in stores:
        option = page.locator(".p-select-option", has_text=sid).first
        if not option.is_visible():
            control.press("ArrowDown")  # the list opens on the keyboard, not on a click
        option.click()
    page.keyboard.press("Escape")
    page.get_by_text("Parameters", exact=True).click()  # click outside: the list closes


def _set_integer(page, name: str, value: int) -> None:
    box = _prop(page, name).locator("input[type=number]")
    box.fill(str(value))
    assert box.input_value() == str(value)


def test_ui_form_starts_the_backfill_with_exactly_those_parameters(e2e):
    # Dates no other end-to-end test builds (the shared stack has data for all of October).
    start, end = date(2026, 10, 26), date(2026, 10, 28)
    stores = ["in-mumbai", "us-flagship"]
    days_per_run = 2

    async def orchestrator_id(client):
        dep = await client.read_deployment_by_name("clickstream-backfill/backfill-orchestrator")
        return dep.id

    dep_id = e2e.api(orchestrator_id)
    before = {r.id for r in orchestrator_runs(e2e)}
    with _chromium() as page:
        page.goto(f"{e2e.cfg.ui_url}/deployments/deployment/{dep_id}/run")
        _prop(page, "start_date").wait_for()
        page.get_by_text("Consecutive days of one store that one child run builds").wait_for()
        _pick_date(page, "start_date", start)
        _pick_date(page, "end_date", end)
        _pick_stores(page, stores)
        _set_integer(page, "days_per_run", days_per_run)
        page.screenshot(path=str(SHOTS / "custom-run-form.png"), full_page=True)
        # Leave the number box first (as a person does): its blur re-renders the form, and a
        # click landing during that re-render can be lost.
        page.get_by_text("Parameters", exact=True).click()
        submit = page.get_by_role("button", name="Submit", exact=True)
        from playwright.sync_api import TimeoutError as PageTimeout
        from playwright.sync_api import expect

        expect(submit).to_be_enabled(timeout=15_000)
        submit.click()

        def created():
            return [r for r in orchestrator_runs(e2e) if r.id not in before]

        # The UI leaves the form (to the deployment or the new run) once the run exists. A
        # click the form swallowed is pressed again, as a person would, but only while no run
        # exists, so a second run is never created.
        for _ in range(3):
            try:
                page.wait_for_url(lambda url: not url.endswith("/run"), timeout=20_000)
                break
            except PageTimeout:
                if created():
                    break
                submit.click()
        new = wait_for(created, timeout=60, what="the UI to create the orchestrator run")
        (run,) = new
        assert run.deployment_id == dep_id
        assert run.parameters["start_date"] == start.isoformat()
        assert run.parameters["end_date"] == end.isoformat()
        assert sorted(run.parameters["stores"]) == stores
        assert run.parameters["days_per_run"] == days_per_run

        done = _wait_final(e2e, run.id, timeout=600, what="the backfill run")
        assert done.state_type.value == "COMPLETED", done.state.message
        assert "6/6 partitions completed (4 child run(s) created)" in done.state.message
        kids = [
            r
            for r in e2e.api(child_runs)
            if r.parameters["store_id"] in stores
            and r.parameters.get("ds")
            and start <= date.fromisoformat(r.parameters["ds"]) <= end
        ]
        # days_per_run=2 over 3 days: (26, 27) and (28) per store, lean (no per-node tasks).
        assert sorted(
            (k.parameters["store_id"], k.parameters["ds"], k.parameters.get("ds_end")) for k in kids
        ) == [
            (sid, ds, ds_end)
            for sid in stores
            for ds, ds_end in (("2026-10-26", "2026-10-27"), ("2026-10-28", None))
        ]
        assert {k.state_type.value for k in kids} == {"COMPLETED"}
        assert {k.parameters["dbt_mode"] for k in kids} == {"lean"}
        assert [len(_task_runs(e2e, k.id)) for k in kids] == [0, 0, 0, 0]

        art = _artifact(e2e, run.id, "backfill-grid")
        # The final grid: 2 stores x 3 days completed.
        assert "6 partitions: 6 completed" in art.data
        assert art.data.count("| ✅ | ✅ |") == 3
        page.goto(f"{e2e.cfg.ui_url}/artifacts/artifact/{art.id}")
        page.get_by_text("6 partitions: 6 completed").first.wait_for()
        page.get_by_text(run.name, exact=True).first.wait_for()  # the side panel's run link
        page.screenshot(path=str(SHOTS / "status-grid-artifact.png"), full_page=True)


# -- a regular store run: one task run per dbt node --------------------------------------------
def _dbt_nodes_built(e2e, store_id: str, since: datetime) -> list[str]:
    """What the store's last dbt build ran, from dbt's own run_results.json and manifest.json
    (the store's private target path), named the way prefect-dbt names its tasks."""
    target = Path(e2e.cfg.state_dir) / "dbt-target" / store_id
    results = json.loads((target / "run_results.json").read_text())
    generated = datetime.fromisoformat(results["metadata"]["generated_at"].replace("Z", "+00:00"))
    assert generated >= since, f"run_results.json is older than the run ({generated})"
    manifest = json.loads((target / "manifest.json").read_text())
    nodes = {**manifest["nodes"], **manifest["unit_tests"]}
    return [
        f"{nodes[r['unique_id']]['resource_type']} {nodes[r['unique_id']]['name']}"
        for r in results["results"]
    ]


def test_regular_store_run_has_one_task_run_per_dbt_node(e2e):
    store_id = "au-sydney"

    async def create(client):
        dep = await client.read_deployment_by_name(f"clickstream-dbt-run/{store_id}")
        # What the store's 30-minute schedule creates: the deployment's own parameters only
        # (store_id; ds empty = the store's current local date; dbt_mode full by default).
        return await client.create_flow_run_from_deployment(dep.id)

    created = e2e.api(create)
    assert created.parameters == {"store_id": store_id}
    run = _wait_final(e2e, created.id, timeout=300, what="the regular store run")
    assert run.state_type.value == "COMPLETED", run.state.message

    built = _dbt_nodes_built(e2e, store_id, since=run.start_time)
    kinds = Counter(name.split(" ", 1)[0] for name in built)
    assert kinds == {"model": 3, "test": 11, "unit_test": 1}, kinds
    tasks = _task_runs(e2e, run.id)
    assert len(tasks) == len(built) == 15
    assert sorted(t.name for t in tasks) == sorted(built)
    assert {t.state_type.value for t in tasks} == {"COMPLETED"}

    with _chromium() as page:
        page.goto(f"{e2e.cfg.ui_url}/runs/flow-run/{run.id}")
        page.get_by_text(f"{len(built)} Task runs", exact=True).first.wait_for()
        page.get_by_text("Task Runs", exact=True).click()
        counts = page.locator(".flow-run-task-runs__count")  # "15 Task runs (15 completed)"
        counts.wait_for()
        shown = " ".join(counts.inner_text().split()).lower()
        assert shown == f"{len(built)} task runs ({len(built)} completed)", shown
        for name in built:
            page.get_by_text(name, exact=True).first.wait_for(timeout=10000)
        page.screenshot(path=str(SHOTS / "store-run-task-runs.png"), full_page=True)
        text = page.inner_text("body")
    assert "Completed" in text and "model clickstream_daily" in text
    for name in built:
        assert name in text, name


# -- the nightly catch-up deployment, run from its schedule ------------------------------------
def test_catch_up_deployment_runs_from_its_schedule_parameters(e2e):
    from clickstream.core.stores import load_registry

    async def deployment(client):
        return await client.read_deployment_by_name(CATCH_UP)

    dep = e2e.api(deployment)
    (schedule,) = dep.schedules
    assert schedule.active and schedule.schedule.cron == "15 3 * * *"
    # What prefect.yaml declares is what the deployed schedule carries.
    declared = next(
        d
        for d in yaml.safe_load((settings.project_dir() / "prefect.yaml").read_text())[
            "deployments"
        ]
        if d["name"] == "nightly-catch-up"
    )
    assert schedule.parameters == declared["schedules"][0]["parameters"]
    lookback = schedule.parameters["lookback_days"]

    async def create(client):
        # As the scheduler does: a run of the deployment with the schedule's parameters.
        return await client.create_flow_run_from_deployment(
            dep.id, parameters=dict(schedule.parameters)
        )

    created = e2e.api(create)
    # Every store's last complete days: the shared stack has landing data for the last 6 days
    # only; the oldest day builds from whatever landed (an empty day gets a row of zeros).
    run = _wait_final(e2e, created.id, timeout=900, what="the catch-up run")
    assert run.state_type.value == "COMPLETED", run.state.message
    assert run.deployment_id == dep.id
    assert run.parameters == schedule.parameters
    title = f"Catch-up (last {lookback} complete days)"
    assert re.fullmatch(
        rf"{re.escape(title)}: (\d+)/\1 partitions completed \(\d+ child run\(s\) created\)"
        rf"|Nothing to do: .*",
        run.state.message,
    ), run.state.message

    expected = lookback * len(load_registry().active)
    art = _artifact(e2e, run.id, "catch-up-grid")
    assert f"{expected} partitions: {expected} completed" in art.data, art.data
