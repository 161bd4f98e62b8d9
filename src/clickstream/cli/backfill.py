"""``clickstream backfill`` and ``catch-up``: validate, trigger the deployment, follow the run."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from clickstream.cli.common import DateOpt, split_ids, validate_locally
from clickstream.cli.errors import console, err, reports_errors, run_api
from clickstream.cli.status import print_status, request_for_status
from clickstream.core.requests import BackfillRequest, CatchUpRequest
from clickstream.core.states import MAX_ATTEMPTS, MAX_CHILD_TIMEOUT_MINUTES, MAX_LOOKBACK_DAYS


@reports_errors
def backfill(
    start: DateOpt,
    end: DateOpt,
    stores: Annotated[
        list[str] | None, typer.Option(help="Store ids, repeat or comma-separate (default: all).")
    ] = None,
    reprocess: Annotated[
        str, typer.Option(help="missing | failed | stale | all (each includes the previous).")
    ] = "missing",
    order: Annotated[str, typer.Option(help="oldest_first | newest_first")] = "oldest_first",
    days_per_run: Annotated[
        int,
        typer.Option(
            help="Consecutive days one child run builds (1-31): raise it for large backfills."
        ),
    ] = 1,
    max_parallel: Annotated[
        int | None,
        typer.Option(help="Child runs at once (default and maximum: 2 x the dbt-global limit)."),
    ] = None,
    max_attempts: Annotated[int, typer.Option(help=f"Tries per partition (1-{MAX_ATTEMPTS}).")] = 2,
    child_timeout_minutes: Annotated[
        int,
        typer.Option(
            help=f"Cancel and retry a child run in flight longer than this "
            f"(1-{MAX_CHILD_TIMEOUT_MINUTES})."
        ),
    ] = 60,
    pause_schedules: Annotated[
        bool, typer.Option(help="Pause the stores' regular schedules while it runs.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Plan and show the grid; submit nothing.")] = False,
    allow_large: Annotated[bool, typer.Option(help="Allow > 20,000 partitions.")] = False,
    follow: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
) -> None:
    """Trigger the deployed backfill orchestrator and follow it with a progress bar."""
    from clickstream.names import orchestrator_full_name

    request = BackfillRequest(
        start_date=start.date(),
        end_date=end.date(),
        stores=split_ids(stores),
        reprocess=reprocess,  # type: ignore[arg-type]  # resolve_request names a bad one
        order=order,  # type: ignore[arg-type]
        days_per_run=days_per_run,
        max_parallel=max_parallel,
        max_attempts=max_attempts,
        child_timeout_minutes=child_timeout_minutes,
        allow_large_backfill=allow_large,
    )
    params = {
        "start_date": start.date().isoformat(),
        "end_date": end.date().isoformat(),
        "stores": list(request.stores) or None,
        "reprocess": reprocess,
        "order": order,
        "days_per_run": days_per_run,
        "max_parallel": max_parallel,
        "max_attempts": max_attempts,
        "pause_store_schedules": pause_schedules,
        "dry_run": dry_run,
        "allow_large_backfill": allow_large,
        "child_timeout_minutes": child_timeout_minutes,
    }
    code = run_api(_trigger_and_follow(orchestrator_full_name(), request, params, follow))
    raise typer.Exit(code)


@reports_errors
def catch_up(
    lookback_days: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_LOOKBACK_DAYS,
            help="Complete local days to look back over (about ten years at most: older "
            "days are a backfill's job).",
        ),
    ] = 7,
    stores: Annotated[list[str] | None, typer.Option()] = None,
    days_per_run: Annotated[int, typer.Option(help="Consecutive days per child run.")] = 1,
    dry_run: bool = False,
    follow: bool = True,
) -> None:
    """Run the nightly catch-up now (last N complete local days, missing + failed + stale)."""
    from clickstream.names import catch_up_full_name

    request = CatchUpRequest(
        stores=split_ids(stores),
        lookback_days=lookback_days,
        days_per_run=days_per_run,
    )
    params = {
        "lookback_days": lookback_days,
        "stores": list(request.stores) or None,
        "days_per_run": days_per_run,
        "dry_run": dry_run,
    }
    raise typer.Exit(run_api(_trigger_and_follow(catch_up_full_name(), request, params, follow)))


async def _trigger_and_follow(
    deployment: str, request: BackfillRequest | CatchUpRequest, params: dict, follow: bool
) -> int:
    """Validate (locally, then as the flow will), trigger the deployment, follow the run's
    progress artifact until it ends, then print its grid. Returns the exit code."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from clickstream.pipelines.backfill.report import flow_run_url
    from clickstream.pipelines.backfill.snapshot import plan

    validate_locally(request)
    async with get_client() as client:
        # Same validation as the flow, before anything is created.
        resolved, snapshot, selected = await plan(request, client=client)
        console.print(
            f"{resolved.partition_count} partitions in range, {len(selected)} to run "
            f"(policy {resolved.reprocess}), {len(snapshot.in_flight_runs)} in flight; "
            f"{snapshot.warehouse_note()}"
        )
        params = {k: v for k, v in params.items() if v is not None}
        parent = await run_deployment(deployment, parameters=params, timeout=0)
        console.print(f"orchestrator run [bold]{parent.name}[/]: {flow_run_url(str(parent.id))}")
        if not follow:
            return 0
        run = await _follow(client, parent.id)
        message = run.state.message if run.state else ""
        await print_status(request_for_status(resolved), client)
        ok = run.state_type is not None and run.state_type.value == "COMPLETED"
        (console if ok else err).print(f"orchestrator {run.state_name}: {message}")
        return 0 if ok else 1


async def _follow(client, flow_run_id):
    """A progress bar fed by the run's progress artifact, until the run is terminal; the run."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from clickstream.adapters.prefect_api import TERMINAL

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting", total=100)
        while True:
            run = await client.read_flow_run(flow_run_id)
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
            prog = [a for a in arts if a.type == "progress"]
            if prog:
                progress.update(
                    task,
                    completed=float(prog[0].data or 0),
                    description=prog[0].description or "running",
                )
            else:
                progress.update(task, description=f"{run.state_name}")
            if run.state_type in TERMINAL:
                return run
            await asyncio.sleep(1.0)
