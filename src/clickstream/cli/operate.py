"""``clickstream unstick`` and ``doctor``: free a store's stuck runs; say why nothing ran."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from clickstream.cli.errors import console, fail, reports_errors, run_api
from clickstream.core.stores import load_registry


@reports_errors
def unstick(
    store: Annotated[str, typer.Argument(help="Store id (its deployment name).")],
    older_than_minutes: Annotated[
        int,
        typer.Option(min=0, help="Running/Pending/Cancelling runs in that state longer than this."),
    ] = 60,
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every non-terminal run of the store, any age (Scheduled, "
            "AwaitingConcurrencySlot, Paused too).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs; change nothing.")] = False,
) -> None:
    """Cancel a store's stuck runs (force) so its ENQUEUE slot frees; show dbt-global slots."""
    from datetime import timedelta

    chosen = load_registry().get(store)  # unknown: error listing the known ones, no network
    code = run_api(_unstick(chosen.store_id, timedelta(minutes=older_than_minutes), all_, dry_run))
    raise typer.Exit(code)


async def _unstick(store_id: str, older_than, include_all: bool, dry_run: bool) -> int:
    from datetime import UTC

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from clickstream.names import DBT_FLOW_NAME
    from clickstream.pipelines.operate.unstick import (
        cancel_runs,
        global_limit_summary,
        read_store_runs,
        select_stuck_runs,
    )

    async with get_client() as client:
        try:
            dep = await client.read_deployment_by_name(f"{DBT_FLOW_NAME}/{store_id}")
        except ObjectNotFound:
            fail(f"deployment {DBT_FLOW_NAME}/{store_id} does not exist; run `make deploy`")
        now = datetime.now(UTC)
        runs = select_stuck_runs(
            await read_store_runs(client, dep.id), now, older_than, include_all=include_all
        )
        what = "non-terminal" if include_all else f"stuck (> {older_than})"
        if not runs:
            console.print(f"{store_id}: no {what} runs")
        else:
            table = Table("flow run", "id", "state", "since (UTC)", "age", "ds", title=what)
            for r in runs:
                age = str(r.age).split(".")[0] if r.age is not None else "?"
                since = r.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if r.since else "?"
                table.add_row(r.name, r.id, r.state_name, since, age, r.ds or "")
            console.print(table)
        code = 0
        if runs and dry_run:
            console.print(f"dry run: would cancel {len(runs)} run(s) of {store_id}")
        elif runs:
            outcome = await cancel_runs(
                client, runs, f"Cancelled by `clickstream unstick {store_id}` (operator)"
            )
            for r in runs:
                console.print(f"{r.name} ({r.id}): {outcome[r.id]}")
            bad = [i for i, o in outcome.items() if o not in ("cancelled", "gone")]
            code = 1 if bad else 0
            console.print(
                f"{store_id}: {len(runs) - len(bad)}/{len(runs)} run(s) cancelled; "
                "any ENQUEUE slot they held on the deployment is released"
                if not bad
                else f"{store_id}: {len(bad)} run(s) could not be cancelled"
            )
        console.print(await global_limit_summary(client))
        return code


@reports_errors
def doctor(
    late_after_minutes: Annotated[
        int,
        typer.Option(
            min=0, help="A Scheduled run due longer ago than this (and not started) is late."
        ),
    ] = 5,
    worker_heartbeat_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            help="A worker is live if it sent a heartbeat this recently (it sends one every 30 s).",
        ),
    ] = 90,
) -> None:
    """Why did nothing run? Scheduler, late runs, workers, dbt-global, paused stores (exit 1 on a problem)."""
    from datetime import timedelta

    code = run_api(
        _doctor(timedelta(minutes=late_after_minutes), timedelta(seconds=worker_heartbeat_seconds))
    )
    raise typer.Exit(code)


async def _doctor(late_after, worker_alive_within) -> int:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from clickstream.core.health import diagnose
    from clickstream.pipelines.operate.doctor import read_health_input

    async with get_client() as client:
        await client.api_healthcheck()
        inp = await read_health_input(
            client, late_after=late_after, worker_alive_within=worker_alive_within
        )
    report = diagnose(inp)
    console.print(f"Prefect API {PREFECT_API_URL.value()}, {inp.now:%Y-%m-%d %H:%M:%S} UTC")
    table = Table(
        "deployment",
        "schedule",
        "next run (UTC)",
        "next run (store time)",
        "kept",
        "latest",
        "state",
        title="schedules",
    )
    for row in report.schedules:
        table.add_row(
            row.deployment,
            row.schedule,
            f"{row.next_run:%Y-%m-%d %H:%M:%S}" if row.next_run else "none",
            row.next_run_local or "",
            str(row.kept_runs),
            f"{row.latest:%Y-%m-%d %H:%M}" if row.latest else "",
            row.note if row.note != "ok" else "[green]ok[/]",
        )
    console.print(table)
    for line in report.ok:
        console.print(f"[green]ok:[/] {line}", soft_wrap=True)
    for problem in report.problems:
        console.print(f"[bold red]error:[/] {problem.message}", soft_wrap=True)
    if report.healthy:
        console.print("[bold green]healthy[/]")
        return 0
    console.print(f"[bold red]{len(report.problems)} problem(s)[/]")
    return 1
