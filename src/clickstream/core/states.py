"""Partition states, reprocess policies, orders, build statuses, dbt modes and the bounds every
layer shares: one definition each, used in flow signatures, planning, the ledger and the grid.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

ReprocessPolicy = Literal["missing", "failed", "stale", "all"]


Order = Literal["oldest_first", "newest_first"]


REPROCESS_POLICIES: tuple[str, ...] = ("missing", "failed", "stale", "all")


ORDERS: tuple[str, ...] = ("oldest_first", "newest_first")


DEFAULT_MAX_PARTITIONS = 20_000


# A child run builds at most this many consecutive days (clickstream.pipelines.store_run agrees).
MAX_DAYS_PER_RUN = 31


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
