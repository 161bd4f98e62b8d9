"""``clickstream data``: synthetic clickstream source data (landing Parquet files)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from clickstream.cli.common import DateOpt, split_ids
from clickstream.cli.errors import console, fail, reports_errors
from clickstream.core.stores import load_registry

app = typer.Typer(help="Synthetic clickstream source data (landing Parquet files).")


@app.command("generate")
@reports_errors
def data_generate(
    start: DateOpt,
    end: DateOpt,
    stores: Annotated[list[str] | None, typer.Option(help="Store ids (default: all).")] = None,
    events_per_day: Annotated[int, typer.Option(min=0)] = 5000,
    seed: int = 42,
) -> None:
    """Land deterministic synthetic events as Parquet for stores x local dates."""
    from clickstream.local.synthetic import generate

    registry = load_registry()
    ids = split_ids(stores) or tuple(registry.ids)
    chosen = [registry.get(i) for i in ids]  # an unknown id: RegistryError naming the known ones
    if end < start:
        fail(f"end {end.date()} is before start {start.date()}")
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


@app.command("add-late-events")
@reports_errors
def data_add_late(
    store: str, ds: Annotated[datetime, typer.Argument(formats=["%Y-%m-%d"])], n: int = 50
) -> None:
    """Land late-arriving events for one partition (it becomes stale)."""
    from clickstream.local.synthetic import add_late_events

    path = add_late_events(load_registry().get(store), ds.date(), n)
    console.print(f"wrote {n} late events to {path}")
