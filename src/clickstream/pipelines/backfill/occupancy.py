"""Runs of a store's deployment that this orchestrator did not create but must wait for.

A deployment's concurrency limit of 1 admits one run: a child created beside a regular run
(no ``ds``) or another trigger's run of other days would queue behind it (ENQUEUE) or be
cancelled at once (CANCEL_NEW, "Deployment concurrency limit reached."). Right before
dispatching, the store deployments' runs in flight are read; core.in_flight decides which
occupy the lane.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun

from clickstream.adapters.prefect_api import read_active_deployment_runs, with_api_retries
from clickstream.core.in_flight import occupies_deployment

NOT_OURS = "waited for, never cancelled or timed out by this backfill"


async def runs_occupying(
    client: PrefectClient,
    deployments: Mapping[str, UUID],
    store_ids: Iterable[str],
    known: Collection[str],
    logger,
) -> list[tuple[str, FlowRun]]:
    """(store, run) for each run of these stores' deployments, not in ``known`` (the runs the
    orchestrator waits for or saw end), that holds its deployment's concurrency slot or takes
    it next. Each is logged: the lane waits for it, without counting days for it."""
    by_deployment = {deployments[sid]: sid for sid in store_ids if sid in deployments}
    if not by_deployment:
        return []
    runs = await with_api_retries(
        lambda: read_active_deployment_runs(client, by_deployment),
        what="reading the store deployments' runs in flight",
        logger=logger,
    )
    now = datetime.now(UTC)
    found: list[tuple[str, FlowRun]] = []
    for run in runs:
        sid = by_deployment.get(run.deployment_id) if run.deployment_id else None
        if sid is None or str(run.id) in known:
            continue
        if not occupies_deployment(run.state_type.value, run.expected_start_time, now):
            continue
        found.append((sid, run))
        logger.info(
            "%s: run %s (%s, %s) of its deployment holds the deployment's concurrency slot or "
            "takes it next; waiting for it before dispatching (%s)",
            sid,
            run.id,
            run.name,
            run.state_name or run.state_type.value,
            NOT_OURS,
        )
    return found
