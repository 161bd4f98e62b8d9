"""Shared fixtures, tiers and process groups. The stack end-to-end tests use lives in
tests/support/stack.py."""

from __future__ import annotations

import os

# No telemetry from anything the tests start; no internet here anyway.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A test that talks to Prefect must name its server; never start a hidden ephemeral one.
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")

import pytest  # noqa: E402

# Tiers come from the directory a test lives in (one meaning each; README, "Tests"):
TIERS: dict[str, tuple[str, ...]] = {
    "unit": (),  # no server, no harness, no dbt build, no forked servers
    "slow": ("slow",),  # real dbt builds, forked servers; no Prefect server
    "harness": ("harness",),  # flow bodies on prefect_test_harness
    "e2e": ("e2e",),  # a real Prefect server + process worker
    "browser": ("browser", "e2e"),  # the Prefect UI in Chromium, on the shared stack
    "bench": ("bench",),  # the benchmark's smoke run (make bench-smoke)
}

# `make test` runs pytest in two processes (pytest-xdist, `-n 2`). Tests that share an
# expensive fixture run in one process, and the two biggest groups start first, one in each
# process: the shared end-to-end stack (tests/e2e/shared and the browser test, which drives
# the UI of that stack), and the modules with stacks of their own (tests/e2e/own: mostly
# waiting on leases, the zombie automation, the scheduler and second workers). The harness
# modules share one harness server. Everything else follows, a file at a time, wherever a
# process is free. (xdist's own `--dist loadgroup` does not group under pytest 9: its
# marker-to-node-id rewrite no longer takes effect.)
GROUP_OF_DIRECTORY = {
    ("e2e", "shared"): "shared-stack",
    ("browser",): "shared-stack",
    ("e2e", "own"): "own-stacks",
    ("harness",): "harness",
}
GROUP_ORDER = {"shared-stack": 0, "own-stacks": 1, "harness": 2}


def _parts(nodeid: str) -> tuple[str, ...]:
    path = nodeid.split("::", 1)[0]
    parts = tuple(path.split("/"))
    return parts[1:] if parts and parts[0] == "tests" else parts


def xdist_group(nodeid: str) -> str:
    parts = _parts(nodeid)
    for n in (2, 1):
        group = GROUP_OF_DIRECTORY.get(parts[:n])
        if group is not None and len(parts) > n:
            return group
    return "/".join(parts)  # a module on its own


def tier(nodeid: str) -> str:
    parts = _parts(nodeid)
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(
            f"{nodeid}: every test lives in a tier directory ({', '.join(TIERS)})"
        )
    return parts[0]


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in TIERS[tier(item.nodeid)]:
            item.add_marker(name)
    items.sort(key=lambda item: GROUP_ORDER.get(xdist_group(item.nodeid), len(GROUP_ORDER)))


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    config.option.loadscopereorder = False  # keep the order above
    return GroupScheduling(config, log)


@pytest.fixture
def isolated_state(tmp_path, monkeypatch):
    """Point every piece of local state (ledger, landing, warehouse) at a temp folder."""
    state = tmp_path / "state"
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(state))
    monkeypatch.delenv("CLICKSTREAM_LEDGER_URL", raising=False)
    monkeypatch.delenv("CLICKSTREAM_LANDING_DIR", raising=False)
    monkeypatch.delenv("CLICKSTREAM_WAREHOUSE_DIR", raising=False)
    return state


@pytest.fixture(scope="session")
def harness():
    """Prefect's test harness: a temporary SQLite API server for this pytest session.

    For flow-level tests that need a Prefect API but no worker, schedule or lease service
    (the harness runs no scheduler, late-runs, repossessor or cancellation-cleanup services).
    Everything this process runs through Prefect talks to it while the session lasts.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def e2e(tmp_path_factory):
    """One real stack for every end-to-end test of the session (server, worker, deploy, data).

    Tests use disjoint date ranges so they do not depend on each other's order.
    """
    from datetime import date, timedelta

    from tests.support.stack import generate, start_e2e_stack

    handle = start_e2e_stack(tmp_path_factory.mktemp("e2e") / "state")
    try:
        generate(handle, date(2026, 3, 1), date(2026, 4, 30))
        generate(handle, date(2026, 8, 30), date(2026, 11, 3))
        today = date.today()
        generate(handle, today - timedelta(days=6), today + timedelta(days=1))
        yield handle
    finally:
        handle.down()
