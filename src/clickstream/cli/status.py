"""``clickstream status``: the status grid of a range, from the ledger and Prefect."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from clickstream.cli.common import DateOpt, split_ids, validate_locally
from clickstream.cli.errors import console, reports_errors, run_api
from clickstream.core.requests import BackfillRequest, ResolvedRequest


@reports_errors
def status(
    start: DateOpt,
    end: DateOpt,
    stores: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """Print the status grid for a range, from the ledger and Prefect."""
    request = BackfillRequest(
        start_date=start.date(),
        end_date=end.date(),
        stores=split_ids(stores),
        allow_large_backfill=True,
    )
    validate_locally(request, check_dbt_project=False)
    run_api(_status(request))


def request_for_status(resolved: ResolvedRequest) -> BackfillRequest:
    """The range a run covered, as a request for its status grid (any size)."""
    return BackfillRequest(
        start_date=resolved.start_date,
        end_date=resolved.end_date,
        stores=tuple(s.store_id for s in resolved.stores),
        allow_large_backfill=True,
    )


async def _status(request: BackfillRequest) -> None:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await print_status(request, client)


async def print_status(request: BackfillRequest, client) -> None:
    """Print the grid (stores x dates), its summary, the warehouse note and the legend."""
    from clickstream.core import grid
    from clickstream.pipelines.backfill.snapshot import plan

    resolved, snapshot, _ = await plan(request, client=client, for_status=True)
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
