"""``clickstream stack``: a local Prefect server and process workers (make up / make down)."""

from __future__ import annotations

from typing import Annotated

import typer

from clickstream.cli.errors import console, fail, reports_errors

app = typer.Typer(help="A local Prefect server and process workers (make up / make down).")


@app.command("up")
@reports_errors
def stack_up(
    port: Annotated[int, typer.Option(envvar="CLICKSTREAM_PORT")] = 4200,
    profile: Annotated[str, typer.Option(help="sqlite | postgres")] = "sqlite",
    workers: Annotated[int | None, typer.Option(help="Default 1 (sqlite) / 2 (postgres).")] = None,
) -> None:
    """Start a Prefect server on 127.0.0.1 and process workers; PIDs under .clickstream/stack."""
    from clickstream.local.stack import PROFILES, Stack, StackConfig

    if profile not in PROFILES:
        fail(f"profile must be one of {', '.join(PROFILES)}")
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
        fail("a stack is already recorded under .clickstream/stack; run `make down` first")
    try:
        stack.up()
    except (RuntimeError, TimeoutError) as exc:
        stack.down()
        fail(str(exc))
    console.print(
        f"Prefect server {cfg.ui_url} ({profile}), {workers} worker(s); logs in {stack.logs}"
    )
    console.print(f"export PREFECT_API_URL={cfg.api_url}")
    for key, value in extra.items():
        console.print(f"export {key}={value}")


@app.command("down")
@reports_errors
def stack_down() -> None:
    """Stop the recorded server and workers by PID (TERM, then KILL)."""
    from clickstream.local.stack import Stack, StackConfig

    stopped = Stack(StackConfig()).down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
