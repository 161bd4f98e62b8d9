"""Backfill planning: pure functions, no I/O.

A partition is (store_id, ds). Planning expands stores x store-local dates, classifies every
partition from the ledger, the source fingerprints and the runs in flight, and lets the
reprocess policy pick what to run. The orchestrator, ``clickstream status`` and the dry run
all go through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from clickstream.registry import Registry, Store
from clickstream.windows import local_today

ReprocessPolicy = Literal["missing", "failed", "stale", "all"]
Order = Literal["oldest_first", "newest_first"]
REPROCESS_POLICIES: tuple[str, ...] = ("missing", "failed", "stale", "all")
ORDERS: tuple[str, ...] = ("oldest_first", "newest_first")
DEFAULT_MAX_PARTITIONS = 20_000


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


class BackfillInputError(ValueError):
    """Bad backfill input. Raised before anything is submitted; the message lists every problem."""


# Runs in flight per dbt-global slot. A run spends part of its life outside dbt (start,
# fingerprint, ledger, completion: ~1-4 s here); with twice as many runs as slots, one run
# starts while another builds, so the slots do not idle between runs. A run beyond the
# limit waits for its slot inside its own process and holds only its own store's lane.
OVERSUBSCRIBE = 2


@dataclass(frozen=True)
class BackfillRequest:
    """What a person asked for (UI form, CLI flags or the nightly schedule)."""

    start_date: date | None = None
    end_date: date | None = None
    stores: tuple[str, ...] = ()  # empty = every active store
    reprocess: str = "missing"
    order: str = "oldest_first"
    max_parallel: int | None = None  # None = OVERSUBSCRIBE x the dbt-global limit
    max_attempts: int = 2
    mode: str = "backfill"  # or "catch_up"
    lookback_days: int = 7
    allow_large_backfill: bool = False
    max_partitions: int = DEFAULT_MAX_PARTITIONS


@dataclass(frozen=True)
class ResolvedRequest:
    """A validated request: concrete stores, per-store date lists, effective limits."""

    stores: tuple[Store, ...]
    dates_by_store: Mapping[str, tuple[date, ...]]
    reprocess: str
    order: str
    max_parallel: int
    max_attempts: int
    mode: str

    @property
    def partition_count(self) -> int:
        return sum(len(v) for v in self.dates_by_store.values())

    @property
    def start_date(self) -> date | None:
        firsts = [v[0] for v in self.dates_by_store.values() if v]
        return min(firsts) if firsts else None

    @property
    def end_date(self) -> date | None:
        lasts = [v[-1] for v in self.dates_by_store.values() if v]
        return max(lasts) if lasts else None


def resolve_request(
    request: BackfillRequest,
    registry: Registry,
    *,
    global_limit: int | None,
    today_by_store: Mapping[str, date] | None = None,
    check_limit: bool = True,
) -> ResolvedRequest:
    """Validate everything up front and say all that is wrong at once. Clamps nothing.

    ``check_limit=False`` validates what needs no server (the CLI does that first).
    """
    problems: list[str] = []
    if request.mode not in ("backfill", "catch_up"):
        problems.append(f"mode must be 'backfill' or 'catch_up', got {request.mode!r}")
    if request.reprocess not in REPROCESS_POLICIES:
        problems.append(
            f"reprocess must be one of {', '.join(REPROCESS_POLICIES)}, got {request.reprocess!r}"
        )
    if request.order not in ORDERS:
        problems.append(f"order must be one of {', '.join(ORDERS)}, got {request.order!r}")
    if request.max_attempts < 1:
        problems.append(f"max_attempts must be at least 1, got {request.max_attempts}")
    max_parallel = request.max_parallel
    if not check_limit:
        global_limit = max(global_limit or 0, max_parallel or 1, 1)
    if global_limit is None:
        problems.append(
            "the 'dbt-global' concurrency limit does not exist on the server; "
            "run `clickstream bootstrap` first"
        )
    elif max_parallel is None:
        max_parallel = OVERSUBSCRIBE * global_limit
    if max_parallel is not None:
        if max_parallel < 1:
            problems.append(f"max_parallel must be at least 1, got {max_parallel}")
        elif global_limit is not None and max_parallel > OVERSUBSCRIBE * global_limit:
            problems.append(
                f"max_parallel {max_parallel} exceeds {OVERSUBSCRIBE} x the dbt-global limit "
                f"{global_limit}; lower it or raise the limit (`clickstream bootstrap "
                f"--dbt-global-limit {-(-max_parallel // OVERSUBSCRIBE)}`)"
            )

    # Stores: unknown and inactive ones are errors that list the valid choices.
    active_ids = [s.store_id for s in registry.active]
    chosen: list[Store] = []
    if request.stores:
        seen: set[str] = set()
        for sid in request.stores:
            if sid in seen:
                continue
            seen.add(sid)
            if sid not in registry.ids:
                problems.append(
                    f"unknown store {sid!r}; active stores: {', '.join(active_ids) or '(none)'}"
                )
                continue
            store = registry.get(sid)
            if not store.active:
                problems.append(
                    f"store {sid!r} is inactive; active stores: {', '.join(active_ids) or '(none)'}"
                )
                continue
            chosen.append(store)
    else:
        chosen = list(registry.active)
        if not chosen:
            problems.append("no active stores in the registry")

    today_by_store = dict(today_by_store or {})
    dates_by_store: dict[str, tuple[date, ...]] = {}
    if request.mode == "catch_up":
        if request.lookback_days < 1:
            problems.append(f"lookback_days must be at least 1, got {request.lookback_days}")
        else:
            for store in chosen:
                today = today_by_store.get(store.store_id) or local_today(store.timezone)
                first = max(today - timedelta(days=request.lookback_days), store.earliest_ds)
                last = today - timedelta(days=1)  # complete days only
                dates_by_store[store.store_id] = tuple(_days(first, last))
    else:
        start, end = request.start_date, request.end_date
        if start is None or end is None:
            problems.append("start_date and end_date are required for a backfill")
        elif end < start:
            problems.append(f"end_date {end} is before start_date {start}")
        else:
            for store in chosen:
                today = today_by_store.get(store.store_id) or local_today(store.timezone)
                if start < store.earliest_ds:
                    problems.append(
                        f"start_date {start} is before {store.store_id}'s earliest date "
                        f"{store.earliest_ds}"
                    )
                if end > today:
                    problems.append(
                        f"end_date {end} is after {store.store_id}'s current local date {today} "
                        f"({store.timezone})"
                    )
                dates_by_store[store.store_id] = tuple(_days(start, end))
    total = sum(len(v) for v in dates_by_store.values())
    if total > request.max_partitions and not request.allow_large_backfill:
        problems.append(
            f"{total} partitions exceed the cap of {request.max_partitions}; narrow the range or "
            "set allow_large_backfill"
        )
    if problems:
        raise BackfillInputError("invalid backfill request:\n- " + "\n- ".join(problems))
    assert max_parallel is not None
    return ResolvedRequest(
        stores=tuple(chosen),
        dates_by_store=dates_by_store,
        reprocess="stale" if request.mode == "catch_up" else request.reprocess,
        order=request.order,
        max_parallel=max_parallel,
        max_attempts=request.max_attempts,
        mode=request.mode,
    )


def _days(first: date, last: date) -> list[date]:
    if last < first:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def expand_partitions(resolved: ResolvedRequest) -> list[PartitionKey]:
    return [(sid, ds) for sid, days in resolved.dates_by_store.items() for ds in days]


def classify(
    partitions: Iterable[PartitionKey],
    *,
    build_status: Mapping[PartitionKey, str],
    built_fingerprints: Mapping[PartitionKey, str | None],
    current_fingerprints: Mapping[PartitionKey, str] | None,
    in_flight: Iterable[PartitionKey],
) -> dict[PartitionKey, PartitionState]:
    """State of each partition. In flight wins; then the ledger; then the fingerprint.

    ``current_fingerprints`` may be None (not computed): then nothing is called stale.
    """
    flying = set(in_flight)
    out: dict[PartitionKey, PartitionState] = {}
    for key in partitions:
        if key in flying:
            out[key] = PartitionState.IN_FLIGHT
            continue
        status = build_status.get(key)
        if status is None:
            out[key] = PartitionState.MISSING
        elif status != "completed":
            out[key] = PartitionState.FAILED
        elif (
            current_fingerprints is not None
            and key in current_fingerprints
            and built_fingerprints.get(key) != current_fingerprints[key]
        ):
            out[key] = PartitionState.STALE
        else:
            out[key] = PartitionState.COMPLETED
    return out


def select_partitions(
    states: Mapping[PartitionKey, PartitionState], policy: str
) -> list[PartitionKey]:
    """Partitions the policy runs. In-flight partitions are never selected."""
    wanted = POLICY_STATES[policy]
    return [key for key, state in states.items() if state in wanted]


def build_lanes(selected: Iterable[PartitionKey], order: str) -> dict[str, list[date]]:
    """One lane per store: its dates in the requested order."""
    lanes: dict[str, list[date]] = {}
    for sid, ds in selected:
        lanes.setdefault(sid, []).append(ds)
    reverse = order == "newest_first"
    return {sid: sorted(days, reverse=reverse) for sid, days in sorted(lanes.items())}


@dataclass
class LaneScheduler:
    """Keeps at most one partition in flight per store and ``max_parallel`` overall.

    When a slot frees, the idle lane with the most work left goes next (longest-queue-first),
    which keeps the longest lane from finishing last on its own.
    """

    lanes: dict[str, list[date]]
    max_parallel: int
    busy: dict[str, date] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lanes = {sid: list(days) for sid, days in self.lanes.items() if days}

    def occupy(self, store_id: str, ds: date) -> None:
        """Mark a lane busy with a run we did not submit (adopted in-flight run)."""
        self.busy[store_id] = ds

    def next_batch(self) -> list[PartitionKey]:
        free = self.max_parallel - len(self.busy)
        if free <= 0:
            return []
        idle = [sid for sid, days in self.lanes.items() if days and sid not in self.busy]
        idle.sort(key=lambda sid: (-len(self.lanes[sid]), sid))
        batch: list[PartitionKey] = []
        for sid in idle[:free]:
            ds = self.lanes[sid].pop(0)
            self.busy[sid] = ds
            batch.append((sid, ds))
        return batch

    def release(self, store_id: str) -> None:
        self.busy.pop(store_id, None)

    def retry(self, store_id: str, ds: date) -> None:
        """Put a failed partition back at the head of its lane."""
        self.lanes.setdefault(store_id, []).insert(0, ds)

    @property
    def done(self) -> bool:
        return not self.busy and not any(self.lanes.values())


def idempotency_key(store_id: str, ds: date, attempt: int) -> str:
    """Unique per (flow, key) in Prefect; all store deployments share one flow, so the key
    carries the store. The attempt makes a retry of a failed partition a new run."""
    return f"clickstream:{store_id}:{ds.isoformat()}:attempt-{attempt}"


def child_run_name(store_id: str, ds: date, attempt: int) -> str:
    return f"backfill-{store_id}-{ds.isoformat()}-a{attempt}"


def child_tags(store_id: str, ds: date) -> list[str]:
    return ["backfill", store_id, f"ds:{ds.isoformat()}"]


def next_attempt(latest_attempt: int | None, latest_run_exists: bool) -> int:
    """Attempt number to dispatch for a partition that is not in flight.

    - never dispatched -> 1
    - last dispatch has no run on the server (the orchestrator died between writing the
      ledger and creating the run) -> the same attempt, hence the same key: run_deployment
      creates the run or returns the one that exists
    - last dispatch's run ended -> the next attempt (a new key, so a new run)
    """
    if latest_attempt is None:
        return 1
    return latest_attempt + 1 if latest_run_exists else latest_attempt
