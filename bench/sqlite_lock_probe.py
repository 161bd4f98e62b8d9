"""Probe for "database is locked" on a stack's SQLite Prefect server (README, Operating).

Amplifies what a demo backfill does on the trigger path: five clients for ``SECONDS``
(default 60) post heartbeat events of 40 flow runs the zombie automation watches (so every
event is evaluated by ``triggers.reactive_evaluation``), batches of logs, and flow runs with
their state changes. Prints the request batches each client got served and the failed API
calls; afterwards count ``database is locked`` in the stack's ``logs/server.log``.

    export CLICKSTREAM_STATE_DIR=$(mktemp -d) PREFECT_SERVER_ANALYTICS_ENABLED=false
    PORT=$(.venv/bin/python -c 'from clickstream.local.stack import free_port; print(free_port())')
    export PREFECT_API_URL=http://127.0.0.1:$PORT/api
    .venv/bin/clickstream stack up --port $PORT && .venv/bin/clickstream bootstrap
    .venv/bin/python -m bench.sqlite_lock_probe $PREFECT_API_URL 60
    .venv/bin/clickstream stack down; grep -c "database is locked" $CLICKSTREAM_STATE_DIR/logs/*.log
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx

ERRORS: list[tuple] = []


def _now() -> str:
    return datetime.now(UTC).isoformat()


def heartbeat(run_id: str, flow_id: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "occurred": _now(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
        "related": [
            {
                "prefect.resource.id": f"prefect.flow.{flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": "clickstream-dbt-run",
            }
        ],
        "payload": {},
    }


async def post(client: httpx.AsyncClient, url: str, **kw) -> httpx.Response:
    for _ in range(5):
        try:
            resp = await client.post(url, **kw)
        except httpx.TransportError as exc:
            ERRORS.append(("transport", repr(exc)))
            continue
        if resp.status_code >= 300:
            ERRORS.append((resp.status_code, resp.text[:200]))
        return resp
    raise RuntimeError("server unreachable")


async def events(client, api: str, stop: float, runs: list[str], flow_id: str) -> int:
    n = 0
    while time.monotonic() < stop:
        await post(client, f"{api}/events", json=[heartbeat(r, flow_id) for r in runs[n % 4 :: 4]])
        n += 1
        await asyncio.sleep(0.05)
    return n


async def logs(client, api: str, stop: float) -> int:
    n = 0
    while time.monotonic() < stop:
        batch = [
            {"name": "probe", "level": 20, "message": "x" * 200, "timestamp": _now()}
            for _ in range(50)
        ]
        await post(client, f"{api}/logs/", json=batch)
        n += 1
    return n


async def flow_runs(client, api: str, stop: float) -> int:
    flow = (await post(client, f"{api}/flows/", json={"name": "probe-flow"})).json()["id"]
    n = 0
    while time.monotonic() < stop:
        resp = await post(client, f"{api}/flow_runs/", json={"flow_id": flow})
        if resp.status_code >= 300:
            continue
        run_id = resp.json()["id"]
        for state in ("PENDING", "RUNNING", "COMPLETED"):
            await post(
                client,
                f"{api}/flow_runs/{run_id}/set_state",
                json={"state": {"type": state}, "force": True},
            )
        n += 1
    return n


async def main(api: str, seconds: float) -> None:
    stop = time.monotonic() + seconds
    runs = [str(uuid.uuid4()) for _ in range(40)]
    flow_id = str(uuid.uuid4())
    async with httpx.AsyncClient(timeout=120) as client:
        served = await asyncio.gather(
            events(client, api, stop, runs, flow_id),
            events(client, api, stop, runs, flow_id),
            logs(client, api, stop),
            flow_runs(client, api, stop),
            flow_runs(client, api, stop),
        )
    print(f"batches served {served} (total {sum(served)}); failed calls {len(ERRORS)}")
    for err in ERRORS[:5]:
        print("  ", err)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60))
