"""Partition states, reprocess policies, orders, build statuses, dbt modes and the bounds every
layer shares: one definition each, used in flow signatures, planning, the ledger and the grid.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

ReprocessPolicy = Literal["missing", "failed", "stale", "all"]


Order = Literal["oldest_first", "newest_first"]


REPROCESS_POLICIES: tuple[str, ...] = ("missing", "failed", "stale", "all")


ORDERS: tuple[str, ...] = ("oldest_first", "newest_first")


DEFAULT_MAX_PARTITIONS = 20_000


# A child run builds at most this many consecutive days (clickstream.pipelines.store_run agrees).
MAX_DAYS_PER_RUN = 31

# Tries per partition in one backfill. Each retry is a new child run; past a handful a
# partition that keeps failing is broken, not unlucky, and more tries only delay the report.
MAX_ATTEMPTS = 10

# How long a child run may be in flight before the orchestrator cancels and retries it. At
# least a minute (0 cancelled every child at once: every partition ended failed); at most a
# day: a child builds at most MAX_DAYS_PER_RUN days of one store, and one still running after
# a day is hung, holding its store's lane (a larger value would only hide that).
MIN_CHILD_TIMEOUT_MINUTES = 1
MAX_CHILD_TIMEOUT_MINUTES = 24 * 60

# Complete local days a catch-up looks back over: at most about ten years (older days are a
# backfill's job; 1,000,000 overflowed the date arithmetic).
MAX_LOOKBACK_DAYS = 3660

# The bounds above as the flows' parameter types: pydantic puts them into the parameter schema
# (minimum/maximum: the UI form and the server refuse an out-of-range value before a run
# exists) and the flow engine checks them again when a run starts. core.requests checks the
# same bounds for the CLI and for any caller that bypasses the schema.
DaysPerRun = Annotated[int, Field(ge=1, le=MAX_DAYS_PER_RUN)]
MaxParallel = Annotated[int, Field(ge=1)]
MaxAttempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)]
ChildTimeoutMinutes = Annotated[
    int, Field(ge=MIN_CHILD_TIMEOUT_MINUTES, le=MAX_CHILD_TIMEOUT_MINUTES)
]
LookbackDays = Annotated[int, Field(ge=1, le=MAX_LOOKBACK_DAYS)]


class PartitionState(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    MISSING = "missing"
    IN_FLIGHT = "in_flight"
    STALE = "stale"


# Each policy is a superset of the one before it (missing < failed < stale < all).
POLICY_STATES: dict[str, frozenset[PartitionState]] = {
    "missing": frozenset({PartitionState.MISSING}),
    "failed": frozenset({PartitionState.MISSING, PartitionState.FAILED}),
    "stale": frozenset({PartitionState.MISSING, PartitionState.FAILED, PartitionState.STALE}),
    "all": frozenset(
        {
            PartitionState.MISSING,
            PartitionState.FAILED,
            PartitionState.STALE,
            PartitionState.COMPLETED,
        }
    ),
}


PartitionKey = tuple[str, date]


# The days one child run builds: consecutive store-local dates, oldest first.
Batch = tuple[date, ...]


# Runs in flight per dbt-global slot. A run spends part of its life outside dbt (start,
# fingerprint, ledger, completion: ~1-4 s here); with twice as many runs as slots, one run
# starts while another builds, so the slots do not idle between runs. A run beyond the
# limit waits for its slot inside its own process and holds only its own store's lane.
OVERSUBSCRIBE = 2


BUILD_STATUSES = ("completed", "failed")


DbtMode = Literal["full", "lean"]


DBT_MODES: tuple[str, ...] = ("full", "lean")
