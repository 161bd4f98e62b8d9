"""Schedule pauses: store deployments an orchestrator paused, so they are always resumed."""

from __future__ import annotations

from sqlalchemy import delete, select

from clickstream.adapters.ledger.engine import _retrying, _upsert, engine, utcnow
from clickstream.adapters.ledger.schema import schedule_pauses


def record_pause(deployment_id: str, store_id: str, paused_by: str) -> None:
    _upsert(
        schedule_pauses,
        {
            "deployment_id": deployment_id,
            "store_id": store_id,
            "paused_by": paused_by,
            "paused_at": utcnow(),
        },
        ["deployment_id"],
    )


def read_pauses() -> list[dict]:
    with engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(schedule_pauses)).mappings().all()]


def clear_pause(deployment_id: str) -> None:
    def run():
        with engine().begin() as conn:
            conn.execute(
                delete(schedule_pauses).where(schedule_pauses.c.deployment_id == deployment_id)
            )

    _retrying(run)
