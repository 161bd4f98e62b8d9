"""Small async wrappers over the Prefect API used by bootstrap, the orchestrator and the CLI.

Every call that the orchestrator makes while a backfill is running goes through
``with_api_retries`` so a restarting server (or a transient 5xx) is ridden out with backoff
instead of crashing the backfill.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from clickstream.names import DBT_FLOW_NAME, GLOBAL_LIMIT_NAME, WORK_POOL

DEFAULT_GLOBAL_LIMIT = 4
NON_TERMINAL = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.CANCELLING,
    StateType.PAUSED,
]
TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = (httpx.TransportError, httpx.HTTPStatusError, OSError)


async def with_api_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_wait_seconds: float = 600.0,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> T:
    """Retry transient API failures (connection refused, 5xx, 429) with capped backoff."""
    logger = logger or log
    delay, waited = 0.5, 0.0
    while True:
        try:
            return await fn()
        except TRANSIENT as exc:
            if isinstance(exc, httpx.HTTPStatusError):
                code = exc.response.status_code
                if code < 500 and code != 429:
                    raise
            if waited >= max_wait_seconds:
                raise
            logger.warning(
                "Prefect API unavailable during %s (%s); retrying in %.1fs", what, exc, delay
            )
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 15.0)


async def read_global_limit(client: PrefectClient, name: str = GLOBAL_LIMIT_NAME) -> int | None:
    try:
        gcl = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None
    return gcl.limit if gcl.active else None


async def ensure_global_limit(
    client: PrefectClient, limit: int, name: str = GLOBAL_LIMIT_NAME
) -> str:
    """Create or update the limit; returns what happened (for the bootstrap summary)."""
    try:
        current = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit)
            )
            return f"created global concurrency limit {name!r} = {limit}"
        except ObjectAlreadyExists:  # created by a concurrent bootstrap
            current = await client.read_global_concurrency_limit_by_name(name)
    if current.limit == limit and current.active:
        return f"global concurrency limit {name!r} = {limit} (unchanged)"
    await client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
    )
    return f"updated global concurrency limit {name!r}: {current.limit} -> {limit}"


async def ensure_work_pool(
    client: PrefectClient, pool_limit: int | None, name: str = WORK_POOL
) -> str:
    from prefect.workers.process import ProcessWorker

    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        try:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    concurrency_limit=pool_limit,
                )
            )
            return f"created process work pool {name!r} (concurrency limit {pool_limit})"
        except ObjectAlreadyExists:
            pool = await client.read_work_pool(name)
    if pool.concurrency_limit != pool_limit:
        await client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=pool_limit))
        return f"work pool {name!r}: concurrency limit {pool.concurrency_limit} -> {pool_limit}"
    return f"work pool {name!r} exists (concurrency limit {pool_limit})"


async def read_flow_runs_by_id(
    client: PrefectClient, ids: Iterable[str | UUID]
) -> dict[str, FlowRun]:
    ids = [UUID(str(i)) for i in ids]
    out: dict[str, FlowRun] = {}
    for n in range(0, len(ids), 200):
        chunk = ids[n : n + 200]
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
        out.update({str(r.id): r for r in runs})
    return out


async def read_non_terminal_runs(
    client: PrefectClient,
    *,
    flow_filter: FlowFilter | None = None,
    deployment_filter=None,
) -> list[FlowRun]:
    """Every scheduled/pending/running/cancelling/paused run matching the filters (paged)."""
    runs: list[FlowRun] = []
    offset = 0
    while True:
        page = await client.read_flow_runs(
            flow_filter=flow_filter,
            deployment_filter=deployment_filter,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=NON_TERMINAL))
            ),
            limit=200,
            offset=offset,
        )
        runs.extend(page)
        if len(page) < 200:
            return runs
        offset += 200


async def read_active_store_runs(client: PrefectClient) -> list[FlowRun]:
    """Non-terminal runs of the per-store dbt flow (any deployment, any trigger)."""
    return await read_non_terminal_runs(
        client, flow_filter=FlowFilter(name=FlowFilterName(any_=[DBT_FLOW_NAME]))
    )


async def read_active_deployment_runs(
    client: PrefectClient, deployment_ids: Iterable[UUID]
) -> list[FlowRun]:
    """Non-terminal runs of these deployments, whoever created them (regular runs too)."""
    ids = list(deployment_ids)
    if not ids:
        return []
    return await read_non_terminal_runs(
        client, deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids))
    )


async def store_deployment_ids(client: PrefectClient, names: Iterable[str]) -> dict[str, UUID]:
    names = list(names)
    deps = await client.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)),
        flow_filter=FlowFilter(name=FlowFilterName(any_=[DBT_FLOW_NAME])),
    )
    return {d.name: d.id for d in deps}
