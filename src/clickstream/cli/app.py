"""The ``clickstream`` Typer app: the command groups and top-level commands wired together."""

from __future__ import annotations

import typer

from clickstream.cli import backfill, bootstrap, data, operate, stack, status, stores

app = typer.Typer(
    help="Per-store clickstream aggregations on Prefect + dbt: stores, data, backfills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stores.app, name="stores")
app.add_typer(data.app, name="data")
app.add_typer(stack.app, name="stack")
app.command()(bootstrap.bootstrap)
app.command()(backfill.backfill)
app.command("catch-up")(backfill.catch_up)
app.command()(status.status)
app.command()(operate.unstick)
app.command()(operate.doctor)
