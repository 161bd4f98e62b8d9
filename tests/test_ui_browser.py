"""The real client: the Prefect UI in headless Chromium starts a backfill through the typed form.

Playwright's Python package drives Debian's /usr/bin/chromium (installed by .ci/run); no
browser is downloaded. Screenshots go to artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from pathlib import Path

import pytest

from clickstream import paths
from tests.e2e_stack import child_runs, wait_for
from tests.test_e2e_backfill import orchestrator_runs

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = paths.project_dir() / "artifacts" / "ui"


def _prop(page, name: str):
    label = page.locator(".schema-form-property__label", has_text=f"{name} (")
    return page.locator(".schema-form-property", has=label).first


def _pick_date(page, name: str, day: date) -> None:
    prop = _prop(page, name)
    prop.get_by_role("button", name="date", exact=True).click()
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
    assert prop.locator(".p-date-button__value").inner_text() != "Select date"


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


def test_ui_form_starts_the_backfill_with_exactly_those_parameters(e2e):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (bash .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    today = date.today()
    start, end = today - timedelta(days=5), today - timedelta(days=4)
    stores = ["in-mumbai", "us-flagship"]

    async def orchestrator_id(client):
        dep = await client.read_deployment_by_name("clickstream-backfill/backfill-orchestrator")
        return dep.id

    dep_id = e2e.api(orchestrator_id)
    before = {r.id for r in orchestrator_runs(e2e)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{e2e.cfg.ui_url}/deployments/deployment/{dep_id}/run")
            page.wait_for_selector("text=start_date (")
            _pick_date(page, "start_date", start)
            _pick_date(page, "end_date", end)
            _pick_stores(page, stores)
            page.screenshot(path=str(SHOTS / "custom-run-form.png"), full_page=True)
            page.get_by_role("button", name="Submit", exact=True).click()
            # The UI leaves the form (to the deployment or the new run) once the run exists.
            page.wait_for_url(lambda url: not url.endswith("/run"), timeout=60000)

            new = wait_for(
                lambda: [r for r in orchestrator_runs(e2e) if r.id not in before],
                timeout=60,
                what="the UI to create the orchestrator run",
            )
            (run,) = new
            assert run.parameters["start_date"] == start.isoformat()
            assert run.parameters["end_date"] == end.isoformat()
            assert sorted(run.parameters["stores"]) == stores

            async def read(client):
                return await client.read_flow_run(run.id)

            done = wait_for(
                lambda: (r := e2e.api(read)).state.is_final() and r, timeout=600, what="the run"
            )
            assert done.state_type.value == "COMPLETED", done.state.message
            kids = [
                r
                for r in e2e.api(child_runs)
                if r.parameters.get("ds") in {start.isoformat(), end.isoformat()}
                and r.parameters["store_id"] in stores
            ]
            assert len(kids) == 4 and {k.state_type.value for k in kids} == {"COMPLETED"}

            async def grid_artifact(client):
                from prefect.client.schemas.filters import (
                    ArtifactFilter,
                    ArtifactFilterFlowRunId,
                    ArtifactFilterKey,
                )
                from prefect.client.schemas.sorting import ArtifactSort

                (art,) = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                        key=ArtifactFilterKey(any_=["backfill-grid"]),
                    ),
                    limit=1,
                    sort=ArtifactSort.CREATED_DESC,
                )
                return art

            art = e2e.api(grid_artifact)
            # The final grid: 2 stores x 2 days completed.
            assert "4 partitions: 4 completed" in art.data
            assert art.data.count("| ✅ | ✅ |") == 2
            page.goto(f"{e2e.cfg.ui_url}/artifacts/artifact/{art.id}")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(SHOTS / "status-grid-artifact.png"), full_page=True)
            assert page.get_by_text("4 partitions: 4 completed").count() >= 1, "grid not shown"
        finally:
            browser.close()
