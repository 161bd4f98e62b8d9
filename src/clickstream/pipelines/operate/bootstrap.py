"""What `clickstream bootstrap` creates idempotently besides the pool and dbt-global: the
zombie-run automation (runs whose heartbeats stop are crashed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from clickstream.names import (
    CATCH_UP_FLOW_NAME,
    DBT_FLOW_NAME,
    ORCHESTRATOR_FLOW_NAME,
    ZOMBIE_AUTOMATION_NAME,
)

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
