"""Operating the deployed system: the zombie-run automation and unsticking a store.

- ``ensure_zombie_automation``: run by ``clickstream bootstrap``. Flow runs started by a worker
  send a ``prefect.flow-run.heartbeat`` event every 30 s (``PREFECT_RUNNER_HEARTBEAT_FREQUENCY``
  in the worker's environment). A proactive automation expects the next heartbeat (or a
  terminal state event) within ``after_seconds`` of the last one, for each flow run of our two
  flows, and otherwise moves the run to Crashed: a run whose process or machine died stops
  holding its store's ENQUEUE slot, and the orchestrator sees it as ended and retries it.
- ``select_stuck_runs`` / ``read_store_runs`` / ``cancel_runs``: ``clickstream unstick STORE``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound

from clickstream.deployments import CATCH_UP_FLOW_NAME, DBT_FLOW_NAME, ORCHESTRATOR_FLOW_NAME
from clickstream.prefect_ops import GLOBAL_LIMIT_NAME, NON_TERMINAL, read_non_terminal_runs
from clickstream.store_run import dbt_slot_lease_seconds

# --- zombie runs ------------------------------------------------------------------------------
ZOMBIE_AUTOMATION_NAME = "clickstream-crash-zombie-flow-runs"
DEFAULT_ZOMBIE_AFTER_SECONDS = 90  # three missed heartbeats at 30 s
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# A run that ends sends one of these instead of its next heartbeat: no false alarm.
TERMINAL_EVENTS = tuple(
    f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")
)
WATCHED_FLOWS = (DBT_FLOW_NAME, ORCHESTRATOR_FLOW_NAME, CATCH_UP_FLOW_NAME)


def zombie_automation(after_seconds: int = DEFAULT_ZOMBIE_AFTER_SECONDS) -> AutomationCore:
    """The documented "detect zombie flows" recipe, limited to this project's two flows."""
    return AutomationCore(
        name=ZOMBIE_AUTOMATION_NAME,
        description=(
            f"Crash runs of {', '.join(WATCHED_FLOWS)} that sent no heartbeat for "
            f"{after_seconds}s (process or machine died). Managed by `clickstream bootstrap`."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *TERMINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "flow", "prefect.resource.name": list(WATCHED_FLOWS)}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {after_seconds}s: the flow run's process is gone "
                    f"(marked Crashed by the {ZOMBIE_AUTOMATION_NAME} automation)."
                ),
            )
        ],
    )


def _normalize(value: Any) -> Any:
    """JSON-comparable form: sets/lists of strings sorted, dicts recursively normalized."""
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalize(v) for v in value]
        if all(isinstance(v, str) for v in items):
            return sorted(items)
        return items
    return value


def automation_definition(automation: AutomationCore) -> dict[str, Any]:
    """The fields that define an automation (no id, no timestamps)."""
    data = automation.model_dump(
        mode="json",
        include={
            "name",
            "description",
            "enabled",
            "trigger",
            "actions",
            "actions_on_trigger",
            "actions_on_resolve",
        },
    )
    return _normalize(data)


async def ensure_zombie_automation(
    client: PrefectClient, after_seconds: int = DEFAULT_ZOMBIE_AFTER_SECONDS
) -> str:
    """Create, keep or update the zombie automation; returns a one-line summary."""
    wanted = zombie_automation(after_seconds)
    existing = [
        a
        for a in await client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME)
        if a.name == ZOMBIE_AUTOMATION_NAME
    ]
    if not existing:
        await client.create_automation(wanted)
        return (
            f"created automation {ZOMBIE_AUTOMATION_NAME!r} "
            f"(crash runs with no heartbeat for {after_seconds}s)"
        )
    keep, *extra = existing  # newest first; extras come from concurrent bootstraps
    for dup in extra:
        await client.delete_automation(dup.id)
    removed = f"; removed {len(extra)} duplicate(s)" if extra else ""
    if automation_definition(keep) == automation_definition(wanted):
        return f"automation {ZOMBIE_AUTOMATION_NAME!r} ({after_seconds}s) unchanged{removed}"
    await client.update_automation(keep.id, wanted)
    return f"updated automation {ZOMBIE_AUTOMATION_NAME!r} (now {after_seconds}s){removed}"


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
        f"({dbt_slot_lease_seconds():.0f} s after the last renewal, "
        "CLICKSTREAM_DBT_SLOT_LEASE_SECONDS; the server reclaims expired leases every 15 s)."
    )
