"""A warm-forked run killed by the OOM killer's signal is Crashed by the worker at once.

A real Prefect server and process worker (with its warm server) from clickstream.local.stack,
serving a one-flow project in tmp_path whose run sleeps; no bootstrap, so no zombie
automation exists: only the worker's own exit-status check can mark the run Crashed.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from clickstream.local.stack import Stack, StackConfig, client_env, free_port
from clickstream.names import WORK_POOL
from tests.support.stack import E2EStack, assert_logs_clean, read_run, wait_for

PREFECT_YAML = f"""\
name: warm-e2e
prefect-version: 3.8.8
build: null
push: null
deployments:
  - name: sleepy
    entrypoint: sleepy.py:sleepy
    work_pool:
      name: {WORK_POOL}
      work_queue_name: default
      job_variables:
        command: python -m clickstream.launch
"""
SLEEPY = """\
import time

from prefect import flow


@flow(name="warm-e2e-sleepy")
def sleepy(seconds: float = 300) -> None:
    time.sleep(seconds)
"""


async def _pool_exists(client) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        await client.read_work_pool(WORK_POOL)
    except ObjectNotFound:
        return False
    return True


def test_a_sigkilled_warm_run_is_crashed_by_the_worker_at_once(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "prefect.yaml").write_text(PREFECT_YAML)
    (project / "sleepy.py").write_text(SLEEPY)
    cfg = StackConfig(
        state_dir=tmp_path / "state", project_dir=project, port=free_port(), scheduler=False
    )
    stack = Stack(cfg)
    env = {**os.environ, **client_env(cfg), "COLUMNS": "250"}
    handle = E2EStack(cfg, stack, env)
    warm_log = Path(stack.logs) / "warm-1.log"
    try:
        stack.up()
        wait_for(
            lambda: warm_log.exists() and "warm server ready" in warm_log.read_text(),
            timeout=180,
            interval=0.5,
            what="the warm server to finish preloading",
        )
        wait_for(
            lambda: handle.api(_pool_exists),
            timeout=60,
            interval=0.5,
            what="the worker to create its pool",
        )
        handle.prefect("deploy", "--all", timeout=300, check=True)

        async def trigger(client):
            dep = await client.read_deployment_by_name("warm-e2e-sleepy/sleepy")
            return (await client.create_flow_run_from_deployment(dep.id)).id

        # An edit to the checkout while this runs (someone working in it) makes the warm
        # server stale: that run goes cold by design and the next one is warm again.
        for _attempt in range(3):
            servers = warm_log.read_text().count("warm server ready")
            run_id = handle.api(trigger)
            outcome = wait_for(
                lambda run_id=run_id: re.search(
                    rf"forked pid (\d+) for flow run {run_id}|refused flow run {run_id}.*",
                    warm_log.read_text(),
                ),
                timeout=120,
                interval=0.5,
                what="the worker to start the run through the warm server",
            )
            if outcome.group(1):
                break
            assert "stale code" in outcome.group(0), outcome.group(0)
            wait_for(
                lambda n=servers: warm_log.read_text().count("warm server ready") > n,
                timeout=180,
                interval=0.5,
                what="the fresh warm server",
            )
        else:
            raise AssertionError("the code kept changing: no run was forked warm")
        pid = int(outcome.group(1))
        wait_for(
            lambda: read_run(handle, run_id).state_type.value == "RUNNING",
            timeout=60,
            interval=0.5,
            what="the forked run to report Running",
        )
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)  # what the OOM killer does
        crashed = wait_for(
            lambda: (r := read_run(handle, run_id)).state_type.value == "CRASHED" and r,
            timeout=30,
            interval=0.25,
            what="the worker to mark the run Crashed",
        )
        assert time.monotonic() - killed_at < 15
        assert re.search(r"status code:? -9\b", crashed.state.message or ""), crashed.state.message
    finally:
        stack.down()
    assert_logs_clean(stack)
