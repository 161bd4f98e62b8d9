"""``clickstream stores``: the store registry (stores/*.yaml) and its deployments."""

from __future__ import annotations

import typer
from rich.table import Table

from clickstream import settings
from clickstream.cli.errors import console, fail, reports_errors
from clickstream.core.stores import load_registry

app = typer.Typer(help="The store registry (stores/*.yaml) and its deployments.")


@app.command("list")
@reports_errors
def stores_list() -> None:
    """Show the registry."""
    table = Table("store_id", "display name", "database", "timezone", "active", "earliest_ds")
    for s in load_registry():
        table.add_row(
            s.store_id, s.display_name, s.database, s.timezone, str(s.active), str(s.earliest_ds)
        )
    console.print(table)


@app.command("sync")
@reports_errors
def stores_sync() -> None:
    """Regenerate the store deployments in prefect.yaml from stores/*.yaml."""
    from clickstream.deploy.prefect_yaml import synced_text

    registry = load_registry()
    path = settings.prefect_yaml_path()
    text = path.read_text(encoding="utf-8")
    try:
        new = synced_text(text, registry)
    except ValueError as exc:  # prefect.yaml has no generated block to replace
        fail(str(exc))
    if new == text:
        console.print(f"prefect.yaml already matches {len(registry)} stores")
        return
    path.write_text(new, encoding="utf-8")
    console.print(f"prefect.yaml: store deployments regenerated for {len(registry)} stores")


@app.command("check")
@reports_errors
def stores_check() -> None:
    """Fail when prefect.yaml and stores/ disagree (run by `make test`)."""
    from clickstream.deploy.prefect_yaml import check_prefect_yaml

    result = check_prefect_yaml(load_registry())
    if not result.ok:
        fail("\n".join(result.problems), code=1)
    console.print("prefect.yaml matches stores/")
