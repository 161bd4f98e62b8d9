"""Pausing the stores' regular schedules during a backfill, and resuming them, also after a
killed orchestrator (the ledger records every pause).
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound

from clickstream.adapters import ledger
from clickstream.adapters.prefect_api import (
    TERMINAL,
    read_flow_runs_by_id,
    store_deployment_ids,
    with_api_retries,
)


async def pause_schedules(client: PrefectClient, store_ids: list[str], owner: str, logger):
    """Pause the stores' regular schedules; returns the deployment ids to resume later."""
    ids = await store_deployment_ids(client, store_ids)
    paused: list[UUID] = []
    for name, dep_id in ids.items():
        dep = await client.read_deployment(dep_id)
        if dep.paused:
            continue  # someone else paused it; leave it as found
        ledger.record_pause(str(dep_id), name, owner)
        await client.pause_deployment(dep_id)
        paused.append(dep_id)
        logger.info("paused the regular schedule of %s", name)
    return paused


async def resume_schedules(client: PrefectClient, deployment_ids: list[UUID], logger) -> None:
    for dep_id in deployment_ids:
        await with_api_retries(
            lambda dep_id=dep_id: client.resume_deployment(dep_id),
            what="resuming a store schedule",
            logger=logger,
        )
        ledger.clear_pause(str(dep_id))
        logger.info("resumed the regular schedule of deployment %s", dep_id)


async def resume_orphaned_pauses(client: PrefectClient, logger) -> None:
    """Resume schedules paused by an orchestrator run that has since ended (e.g. killed)."""
    pauses = ledger.read_pauses()
    if not pauses:
        return
    ids = {p["paused_by"] for p in pauses if _is_uuid(p["paused_by"])}
    owners = await read_flow_runs_by_id(client, ids) if ids else {}
    for p in pauses:
        owner = owners.get(p["paused_by"])
        if owner is None or owner.state_type in TERMINAL:
            logger.warning(
                "resuming %s's schedule left paused by ended run %s", p["store_id"], p["paused_by"]
            )
            try:
                await resume_schedules(client, [UUID(p["deployment_id"])], logger)
            except ObjectNotFound:  # the deployment is gone: nothing left to resume
                ledger.clear_pause(p["deployment_id"])


def _is_uuid(value: str) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True
