"""``clickstream``: every operator action in one command-line tool."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clickstream import settings
from clickstream.core.requests import BackfillInputError, BackfillRequest, CatchUpRequest
from clickstream.core.stores import RegistryError, load_registry

app = typer.Typer(
    help="Per-store clickstream aggregations on Prefect + dbt: stores, data, backfills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stores_app = typer.Typer(help="The store registry (stores/*.yaml) and its deployments.")
data_app = typer.Typer(help="Synthetic clickstream source data (landing Parquet files).")
stack_app = typer.Typer(help="A local Prefect server and process workers (make up / make down).")
app.add_typer(stores_app, name="stores")
app.add_typer(data_app, name="data")
app.add_typer(stack_app, name="stack")

console = Console()
err = Console(stderr=True)

DateOpt = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _registry():
    try:
        return load_registry()
    except RegistryError as exc:
        _fail(str(exc))


def _split(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return tuple(out)


# --- stores -------------------------------------------------------------------------------
@stores_app.command("list")
def stores_list() -> None:
    """Show the registry."""
    table = Table("store_id", "display name", "database", "timezone", "active", "earliest_ds")
    for s in _registry():
        table.add_row(
            s.store_id, s.display_name, s.database, s.timezone, str(s.active), str(s.earliest_ds)
        )
    console.print(table)


@stores_app.command("sync")
def stores_sync() -> None:
    """Regenerate the store deployments in prefect.yaml from stores/*.yaml."""
    from clickstream.deploy.prefect_yaml import synced_text

    registry = _registry()
    path = settings.prefect_yaml_path()
    text = path.read_text(encoding="utf-8")
    try:
        new = synced_text(text, registry)
    except ValueError as exc:
        _fail(str(exc))
    if new == text:
        console.print(f"prefect.yaml already matches {len(registry)} stores")
        return
    path.write_text(new, encoding="utf-8")
    console.print(f"prefect.yaml: store deployments regenerated for {len(registry)} stores")


@stores_app.command("check")
def stores_check() -> None:
    """Fail when prefect.yaml and stores/ disagree (run by `make test`)."""
    from clickstream.deploy.prefect_yaml import check_prefect_yaml

    result = check_prefect_yaml(_registry())
    if not result.ok:
        _fail("\n".join(result.problems), code=1)
    console.print("prefect.yaml matches stores/")


# --- data ---------------------------------------------------------------------------------
@data_app.command("generate")
def data_generate(
    start: DateOpt,
    end: DateOpt,
    stores: Annotated[list[str] | None, typer.Option(help="Store ids (default: all).")] = None,
    events_per_day: Annotated[int, typer.Option(min=0)] = 5000,
    seed: int = 42,
) -> None:
    """Land deterministic synthetic events as Parquet for stores x local dates."""
    from clickstream.local.synthetic import generate

    registry = _registry()
    ids = _split(stores) or tuple(registry.ids)
    try:
        chosen = [registry.get(i) for i in ids]
    except RegistryError as exc:
        _fail(str(exc))
    if end < start:
        _fail(f"end {end.date()} is before start {start.date()}")
    summary = generate(chosen, start.date(), end.date(), events_per_day, seed=seed)
    console.print(
        f"landed {summary.rows:,} events in {summary.files} files for {len(chosen)} stores "
        f"({summary.seconds:.1f}s)"
    )
    from clickstream.adapters.warehouse import dbt_target, pg_dsn

    if dbt_target() == "postgres":
        from clickstream.local.synthetic import load_postgres

        rows = load_postgres(chosen, start.date(), end.date(), pg_dsn())
        console.print(f"loaded {rows:,} rows into raw.events at {pg_dsn()}")


@data_app.command("add-late-events")
def data_add_late(
    store: str, ds: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"])], n: int = 50
) -> None:
    """Land late-arriving events for one partition (it becomes stale)."""
    from clickstream.local.synthetic import add_late_events

    path = add_late_events(_registry_get(store), ds.date(), n)
    console.print(f"wrote {n} late events to {path}")


def _registry_get(store_id: str):
    try:
        return _registry().get(store_id)
    except RegistryError as exc:
        _fail(str(exc))


# --- local stack --------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(
    port: Annotated[int, typer.Option(envvar="CLICKSTREAM_PORT")] = 4200,
    profile: Annotated[str, typer.Option(help="sqlite | postgres")] = "sqlite",
    workers: Annotated[int | None, typer.Option(help="Default 1 (sqlite) / 2 (postgres).")] = None,
) -> None:
    """Start a Prefect server on 127.0.0.1 and process workers; PIDs under .clickstream/stack."""
    from clickstream.local.stack import PROFILES, Stack, StackConfig

    if profile not in PROFILES:
        _fail(f"profile must be one of {', '.join(PROFILES)}")
    workers = workers or (2 if profile == "postgres" else 1)
    db_url, extra = None, {}
    if profile == "postgres":
        from clickstream.local.postgres import (
            postgres_env_defaults,
            prefect_database_url,
            prepare_postgres,
        )

        prepare_postgres()
        db_url = prefect_database_url()
        extra = postgres_env_defaults()
    cfg = StackConfig(
        port=port, profile=profile, workers=workers, database_url=db_url, extra_env=extra
    )
    stack = Stack(cfg)
    if stack.pids():
        _fail("a stack is already recorded under .clickstream/stack; run `make down` first")
    try:
        stack.up()
    except (RuntimeError, TimeoutError) as exc:
        stack.down()
        _fail(str(exc))
    console.print(
        f"Prefect server {cfg.ui_url} ({profile}), {workers} worker(s); logs in {stack.logs}"
    )
    console.print(f"export PREFECT_API_URL={cfg.api_url}")
    for key, value in extra.items():
        console.print(f"export {key}={value}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the recorded server and workers by PID (TERM, then KILL)."""
    from clickstream.local.stack import Stack, StackConfig

    stopped = Stack(StackConfig()).down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


# --- server setup -------------------------------------------------------------------------
@app.command()
def bootstrap(
    dbt_global_limit: Annotated[
        int, typer.Option(min=1, help="Slots of the dbt-global concurrency limit.")
    ] = 4,
    pool_limit: Annotated[
        int | None,
        typer.Option(
            help="Optional concurrency limit on the whole work pool (counts orchestrators too)."
        ),
    ] = None,
    zombie_after_seconds: Annotated[
        int,
        typer.Option(
            min=60,
            help="Crash a flow run after this many seconds without a heartbeat (sent every 30 s).",
        ),
    ] = 90,
) -> None:
    """Idempotently create the work pool, the dbt-global limit and the zombie-run automation."""
    from prefect.client.orchestration import get_client

    from clickstream.adapters.prefect_api import ensure_global_limit, ensure_work_pool
    from clickstream.pipelines.operate.bootstrap import ensure_zombie_automation

    async def go():
        async with get_client() as client:
            await client.api_healthcheck()
            return [
                await ensure_work_pool(client, pool_limit),
                await ensure_global_limit(client, dbt_global_limit),
                await ensure_zombie_automation(client, zombie_after_seconds),
            ]

    for line in _run_api(go()):
        console.print(line)


def _run_api(coro):
    from prefect.settings import PREFECT_API_URL

    try:
        return asyncio.run(coro)
    except (OSError, ConnectionError) as exc:
        _fail(f"cannot reach the Prefect API at {PREFECT_API_URL.value()}: {exc}")
    except Exception as exc:
        if type(exc).__name__ in {"ConnectError", "ConnectTimeout", "ReadTimeout"}:
            _fail(f"cannot reach the Prefect API at {PREFECT_API_URL.value()}: {exc}")
        raise


# --- backfill -----------------------------------------------------------------------------
def _validate_locally(request: BackfillRequest | CatchUpRequest) -> None:
    """What needs no server, first: bad input never waits on the network (plan() retries the
    API for minutes); the server-side checks (dbt-global limit, deployments) follow."""
    from clickstream.core.requests import resolve_request

    try:
        resolve_request(request, load_registry(), global_limit=None, check_limit=False)
    except (BackfillInputError, RegistryError) as exc:
        _fail(str(exc))


@app.command()
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
    max_attempts: int = 2,
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
        stores=_split(stores),
        reprocess=reprocess,
        order=order,
        days_per_run=days_per_run,
        max_parallel=max_parallel,
        max_attempts=max_attempts,
        allow_large_backfill=allow_large,
    )
    params = {
        "start_date": request.start_date.isoformat(),
        "end_date": request.end_date.isoformat(),
        "stores": list(request.stores) or None,
        "reprocess": reprocess,
        "order": order,
        "days_per_run": days_per_run,
        "max_parallel": max_parallel,
        "max_attempts": max_attempts,
        "pause_store_schedules": pause_schedules,
        "dry_run": dry_run,
        "allow_large_backfill": allow_large,
    }
    code = _run_api(_trigger_and_follow(orchestrator_full_name(), request, params, follow))
    raise typer.Exit(code)


@app.command("catch-up")
def catch_up(
    lookback_days: Annotated[int, typer.Option(min=1)] = 7,
    stores: Annotated[list[str] | None, typer.Option()] = None,
    days_per_run: Annotated[int, typer.Option(help="Consecutive days per child run.")] = 1,
    dry_run: bool = False,
    follow: bool = True,
) -> None:
    """Run the nightly catch-up now (last N complete local days, missing + failed + stale)."""
    from clickstream.names import catch_up_full_name

    request = CatchUpRequest(
        stores=_split(stores),
        lookback_days=lookback_days,
        days_per_run=days_per_run,
    )
    params = {
        "lookback_days": lookback_days,
        "stores": list(request.stores) or None,
        "days_per_run": days_per_run,
        "dry_run": dry_run,
    }
    raise typer.Exit(_run_api(_trigger_and_follow(catch_up_full_name(), request, params, follow)))


async def _trigger_and_follow(
    deployment: str, request: BackfillRequest | CatchUpRequest, params: dict, follow: bool
) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from clickstream.adapters.prefect_api import TERMINAL
    from clickstream.pipelines.backfill.report import flow_run_url
    from clickstream.pipelines.backfill.snapshot import plan

    _validate_locally(request)
    async with get_client() as client:
        # Same validation as the flow, before anything is created.
        try:
            resolved, snapshot, selected = await plan(request, client=client)
        except BackfillInputError as exc:
            _fail(str(exc))
        except RegistryError as exc:
            _fail(str(exc))
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
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("starting", total=100)
            while True:
                run = await client.read_flow_run(parent.id)
                arts = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[parent.id])
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
                    break
                await asyncio.sleep(1.0)
        message = run.state.message if run.state else ""
        await _print_status(request_for_status(request, resolved), client)
        ok = run.state_type is not None and run.state_type.value == "COMPLETED"
        (console if ok else err).print(f"orchestrator {run.state_name}: {message}")
        return 0 if ok else 1


def request_for_status(request: BackfillRequest | CatchUpRequest, resolved) -> BackfillRequest:
    return BackfillRequest(
        start_date=resolved.start_date,
        end_date=resolved.end_date,
        stores=tuple(s.store_id for s in resolved.stores),
        allow_large_backfill=True,
    )


@app.command()
def status(
    start: DateOpt,
    end: DateOpt,
    stores: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """Print the status grid for a range, from the ledger and Prefect."""
    request = BackfillRequest(
        start_date=start.date(),
        end_date=end.date(),
        stores=_split(stores),
        allow_large_backfill=True,
    )
    _validate_locally(request)
    _run_api(_status(request))


async def _status(request: BackfillRequest) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await _print_status(request, client)


async def _print_status(request: BackfillRequest, client) -> None:
    from clickstream.core import grid
    from clickstream.pipelines.backfill.snapshot import plan

    try:
        resolved, snapshot, _ = await plan(request, client=client, for_status=True)
    except BackfillInputError as exc:
        _fail(str(exc))
    stores = [s.store_id for s in resolved.stores]
    states = {k: str(v) for k, v in snapshot.states.items()}
    table = Table("ds", *stores, title="clickstream partitions")
    dates = sorted({k[1] for k in states})
    for row in grid.grid_rows(states, stores, dates):
        table.add_row(*row)
    console.print(table)
    console.print(grid.summarize(states))
    console.print(snapshot.warehouse_note())
    console.print(f"Legend: {grid.legend()}")


# --- operating --------------------------------------------------------------------------
@app.command()
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

    chosen = _registry_get(store)  # unknown store: error listing the known ones, no network
    code = _run_api(_unstick(chosen.store_id, timedelta(minutes=older_than_minutes), all_, dry_run))
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
            _fail(f"deployment {DBT_FLOW_NAME}/{store_id} does not exist; run `make deploy`")
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


@app.command()
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

    code = _run_api(
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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
