"""Operating against a real server: bootstrap's zombie-run automation and `clickstream unstick`.

Only a Prefect server (no worker, no deploy) on a free 127.0.0.1 port, driven by the real CLI.
(What unstick selects and the automation's definition: tests/unit/test_unstick_and_bootstrap.py.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.objects import StateType

from clickstream import settings
from clickstream.names import ZOMBIE_AUTOMATION_NAME
from clickstream.pipelines.operate.bootstrap import (
    HEARTBEAT_EVENT,
    automation_definition,
    zombie_automation,
)

BIN = Path(sys.executable).parent


# --- against a real server --------------------------------------------------------------------
def _cli(env, *args):
    proc = subprocess.run(
        [str(BIN / "clickstream"), *args],
        env=env,
        cwd=str(settings.project_dir()),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_bootstrap_automation_and_unstick_against_real_server(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyOptions
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Pending, Running

    from clickstream.local.stack import Stack, StackConfig, client_env, free_port
    from tests.support.stack import assert_logs_clean

    cfg = StackConfig(state_dir=tmp_path / "state", port=free_port(), workers=0, scheduler=False)
    stack = Stack(cfg)
    env = {**os.environ, **client_env(cfg), "COLUMNS": "250"}

    def api(fn):
        async def go():
            with temporary_settings({PREFECT_API_URL: cfg.api_url}):
                async with get_client() as client:
                    return await fn(client)

        return asyncio.run(go())

    try:
        stack.start_server()
        # 1. bootstrap creates, updates a changed window, then leaves it alone.
        code, out = _cli(env, "bootstrap", "--zombie-after-seconds", "120")
        assert code == 0, out
        assert f"created automation {ZOMBIE_AUTOMATION_NAME!r}" in out
        code, out = _cli(env, "bootstrap")
        assert code == 0 and "updated automation" in out and "now 90s" in out, out
        code, out = _cli(env, "bootstrap")
        assert code == 0 and "(90s) unchanged" in out, out

        found = api(lambda c: c.read_automations())
        mine = [a for a in found if a.name == ZOMBIE_AUTOMATION_NAME]
        assert len(mine) == 1, [a.name for a in found]
        auto = mine[0]
        assert auto.enabled
        assert automation_definition(auto) == automation_definition(zombie_automation(90))
        assert auto.trigger.posture.value == "Proactive"
        assert auto.trigger.within == timedelta(seconds=90)
        assert auto.trigger.after == {HEARTBEAT_EVENT}
        assert HEARTBEAT_EVENT in auto.trigger.expect
        assert auto.actions[0].type == "change-flow-run-state"
        assert auto.actions[0].state == StateType.CRASHED

        # 2. unstick: a store deployment with ENQUEUE; run A holds the slot, run B waits.
        async def setup(client):
            flow_id = await client.create_flow_from_name("clickstream-dbt-run")
            dep_id = await client.create_deployment(
                flow_id=flow_id,
                name="us-flagship",
                concurrency_limit=1,
                concurrency_options=ConcurrencyOptions(collision_strategy="ENQUEUE"),
            )
            a = await client.create_flow_run_from_deployment(dep_id, parameters={"ds": "x"})
            b = await client.create_flow_run_from_deployment(dep_id)
            assert (await client.set_flow_run_state(a.id, Pending())).state.is_pending()
            await client.set_flow_run_state(a.id, Running())
            rb = await client.set_flow_run_state(b.id, Pending())
            return a.id, b.id, rb.state.name

        a_id, b_id, b_state = api(setup)
        assert b_state == "AwaitingConcurrencySlot"  # the ENQUEUE slot is held by A

        code, out = _cli(env, "unstick", "us-flagship")  # A is seconds old, not > 60 min
        assert code == 0 and "no stuck" in out, out
        code, out = _cli(env, "unstick", "us-flagship", "--older-than-minutes", "0", "--dry-run")
        assert code == 0 and str(a_id) in out and str(b_id) not in out, out
        assert "would cancel 1 run" in out and "'dbt-global': 0/4 slots active" in out, out
        assert api(lambda c: c.read_flow_run(a_id)).state_type == StateType.RUNNING

        code, out = _cli(env, "unstick", "us-flagship", "--older-than-minutes", "0")
        assert code == 0 and f"({a_id}): cancelled" in out and "1/1 run(s) cancelled" in out, out
        a_run = api(lambda c: c.read_flow_run(a_id))
        assert a_run.state_type == StateType.CANCELLED
        assert "clickstream unstick us-flagship" in a_run.state.message
        # The slot is free: B now gets in.
        rb = api(lambda c: c.set_flow_run_state(b_id, Pending()))
        assert rb.state.is_pending(), rb

        code, out = _cli(env, "unstick", "us-flagship", "--all", "--dry-run")
        assert code == 0 and str(b_id) in out and "Pending" in out, out
    finally:
        stack.down()
    assert_logs_clean(stack)
