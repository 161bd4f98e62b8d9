"""One name per concept on the Prefect side: flows, deployments, entrypoints, the work pool,
the global limit, tags, automations and artifact keys. prefect.yaml, the flows, the CLI and
the docs use these; tests/unit/test_deployments.py checks prefect.yaml against them.

Must not import anything (the bottom of the package, next to :mod:`clickstream.settings`).
"""

from __future__ import annotations

# -- flows and their deployments (prefect.yaml) ----------------------------------------------
DBT_FLOW_NAME = "clickstream-dbt-run"  # one deployment per store, named by its store_id
DBT_ENTRYPOINT = "flows/clickstream_dbt.py:clickstream_dbt_run"
ORCHESTRATOR_FLOW_NAME = "clickstream-backfill"
ORCHESTRATOR_DEPLOYMENT = "backfill-orchestrator"
ORCHESTRATOR_ENTRYPOINT = "flows/backfill.py:clickstream_backfill"
CATCH_UP_FLOW_NAME = "clickstream-catch-up"
CATCH_UP_DEPLOYMENT = "nightly-catch-up"
CATCH_UP_ENTRYPOINT = "flows/catch_up.py:clickstream_catch_up"
FLOW_NAMES = (DBT_FLOW_NAME, ORCHESTRATOR_FLOW_NAME, CATCH_UP_FLOW_NAME)

# -- where runs go and what limits them ------------------------------------------------------
WORK_POOL = "local-work-pool"
GLOBAL_LIMIT_NAME = "dbt-global"  # around every dbt invocation, strict=True

# -- tags --------------------------------------------------------------------------------------
STORE_TAG = "clickstream-aggregation"  # every store deployment
ORCHESTRATOR_TAG = "clickstream-backfill"  # the orchestrator and catch-up deployments
BACKFILL_CHILD_TAG = "backfill"  # every child run an orchestrator creates

# -- automations (created by `clickstream bootstrap`) -----------------------------------------
ZOMBIE_AUTOMATION_NAME = "clickstream-crash-zombie-flow-runs"

# -- artifact keys (prefix "backfill" or "catch-up") -------------------------------------------
GRID_ARTIFACT = "{prefix}-grid"
TABLE_ARTIFACT = "{prefix}-partitions"


def store_deployment(store_id: str) -> str:
    """``<flow>/<deployment>`` of a store, as run_deployment and the CLI want it."""
    return f"{DBT_FLOW_NAME}/{store_id}"


def orchestrator_full_name() -> str:
    return f"{ORCHESTRATOR_FLOW_NAME}/{ORCHESTRATOR_DEPLOYMENT}"


def catch_up_full_name() -> str:
    return f"{CATCH_UP_FLOW_NAME}/{CATCH_UP_DEPLOYMENT}"
