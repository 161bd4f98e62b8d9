"""``clickstream bootstrap``: the server setup (work pool, dbt-global limit, zombie automation)."""

from __future__ import annotations

from typing import Annotated

import typer

from clickstream.cli.errors import console, reports_errors, run_api


@reports_errors
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

    for line in run_api(go()):
        console.print(line)
