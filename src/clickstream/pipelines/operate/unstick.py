"""`clickstream unstick STORE`: select a store's stuck runs and force them Cancelled so its
ENQUEUE slot frees; report the dbt-global slots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from clickstream import settings
from clickstream.adapters.prefect_api import NON_TERMINAL, read_non_terminal_runs
from clickstream.names import GLOBAL_LIMIT_NAME

# --- unstick ----------------------------------------------------------------------------------
STUCK_TYPES = frozenset({StateType.RUNNING, StateType.PENDING, StateType.CANCELLING})


@dataclass(frozen=True)
class StuckRun:
    id: str
    name: str
    state_type: str
    state_name: str
    since: datetime | None
    age: timedelta | None
    ds: str | None


def _since(run: FlowRun) -> datetime | None:
    state = getattr(run, "state", None)
    ts = getattr(state, "timestamp", None) if state is not None else None
    return ts or getattr(run, "start_time", None) or getattr(run, "created", None)


def select_stuck_runs(
    runs: Iterable[FlowRun],
    now: datetime,
    older_than: timedelta,
    *,
    include_all: bool = False,
) -> list[StuckRun]:
    """Runs to unstick, oldest state first.

    Default: Running / Pending / Cancelling for longer than ``older_than`` (time since the run
    entered its current state). ``include_all``: every non-terminal run (Scheduled,
    AwaitingConcurrencySlot, Paused too), whatever its age.
    """
    out: list[StuckRun] = []
    for run in runs:
        stype = run.state_type
        if stype is None or stype not in NON_TERMINAL:
            continue
        since = _since(run)
        age = now - since if since is not None else None
        if not include_all:
            if stype not in STUCK_TYPES:
                continue
            if age is None or age <= older_than:
                continue
        out.append(
            StuckRun(
                id=str(run.id),
                name=run.name or "",
                state_type=stype.value,
                state_name=run.state_name or stype.value.title(),
                since=since,
                age=age,
                ds=str((run.parameters or {}).get("ds") or "") or None,
            )
        )
    out.sort(key=lambda r: (r.since is None, r.since or now))
    return out


async def read_store_runs(client: PrefectClient, deployment_id) -> list[FlowRun]:
    """Every non-terminal run of one store deployment."""
    return await read_non_terminal_runs(
        client, deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


async def cancel_runs(
    client: PrefectClient, runs: Iterable[StuckRun], message: str
) -> dict[str, str]:
    """Force each run to Cancelled (frees its deployment concurrency slot). id -> outcome."""
    from prefect.states import Cancelled

    out: dict[str, str] = {}
    for run in runs:
        try:
            result = await client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
        except ObjectNotFound:
            out[run.id] = "gone"
            continue
        except Exception as exc:  # noqa: BLE001 - report per run, keep going
            out[run.id] = f"error: {exc}"
            continue
        state = result.state
        out[run.id] = (
            "cancelled"
            if state is not None and state.type == StateType.CANCELLED
            else f"{result.status.value}: {result.details}"
        )
    return out


async def global_limit_summary(client: PrefectClient, name: str = GLOBAL_LIMIT_NAME) -> str:
    try:
        gcl = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return f"{name!r} limit does not exist (run `clickstream bootstrap`)"
    return (
        f"{name!r}: {gcl.active_slots}/{gcl.limit} slots active"
        f"{'' if gcl.active else ' (limit inactive)'}. A slot held by a killed dbt process is "
        "not freed by unstick: it returns when its lease expires "
        f"({settings.get().dbt_slot_lease_seconds:.0f} s after the last renewal, "
        "CLICKSTREAM_DBT_SLOT_LEASE_SECONDS; the server reclaims expired leases every 15 s)."
    )
