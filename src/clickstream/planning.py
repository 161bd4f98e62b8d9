"""Backfill planning: pure functions, no I/O.

A partition is (store_id, ds). Planning expands stores x store-local dates, classifies every
partition from the ledger, the source fingerprints and the runs in flight, and lets the
reprocess policy pick what to run. The orchestrator, ``clickstream status`` and the dry run
all go through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
# A child run builds at most this many consecutive days (clickstream.store_run agrees).
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
    days_per_run: int = 1


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
    days_per_run: int = 1

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
    if not 1 <= request.days_per_run <= MAX_DAYS_PER_RUN:
        problems.append(
            f"days_per_run must be between 1 and {MAX_DAYS_PER_RUN}, got {request.days_per_run}"
        )
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
        days_per_run=request.days_per_run,
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
    built_counts: Mapping[PartitionKey, tuple[int | None, int | None]] | None = None,
    mart_counts: Mapping[PartitionKey, tuple[int, int]] | None = None,
    mart_checked: Iterable[str] = (),
) -> dict[PartitionKey, PartitionState]:
    """State of each partition. In flight wins; then the ledger, checked against the mart;
    then the fingerprint.

    - ``current_fingerprints`` None: not computed, nothing is called stale by fingerprint.
    - ``mart_counts``: (events, sessions) of the mart rows found for the stores in
      ``mart_checked``. A build the ledger calls completed whose row is gone is **missing**;
      one whose row no longer holds the counts the build recorded is **stale**. Stores not
      in ``mart_checked`` (busy or unreadable) keep the ledger's word.
    """
    flying = set(in_flight)
    checked = set(mart_checked)
    mart = mart_counts or {}
    counts = built_counts or {}
    out: dict[PartitionKey, PartitionState] = {}
    for key in partitions:
        status = build_status.get(key)
        row_checked = key[0] in checked
        if key in flying:
            state = PartitionState.IN_FLIGHT
        elif status is None:
            state = PartitionState.MISSING
        elif status != "completed":
            state = PartitionState.FAILED
        elif row_checked and key not in mart:
            state = PartitionState.MISSING  # the ledger says built, the row is gone
        else:
            row_changed = row_checked and counts.get(key) != mart[key]
            source_changed = (
                current_fingerprints is not None
                and key in current_fingerprints
                and built_fingerprints.get(key) != current_fingerprints[key]
            )
            stale = row_changed or source_changed
            state = PartitionState.STALE if stale else PartitionState.COMPLETED
        out[key] = state
    return out


def select_partitions(
    states: Mapping[PartitionKey, PartitionState], policy: str
) -> list[PartitionKey]:
    """Partitions the policy runs. In-flight partitions are never selected."""
    wanted = POLICY_STATES[policy]
    return [key for key, state in states.items() if state in wanted]


def group_runs(days: Iterable[date], order: str, days_per_run: int) -> list[Batch]:
    """Split one store's dates into child runs of at most ``days_per_run`` consecutive days.

    A gap in the dates starts a new run. Runs come in the requested order (newest_first:
    the newest run first, grouped from the newest date down); each run lists its days
    oldest first, as dbt builds them.
    """
    if days_per_run < 1:
        raise ValueError("days_per_run must be at least 1")
    reverse = order == "newest_first"
    step = -1 if reverse else 1
    runs: list[list[date]] = []
    for ds in sorted(set(days), reverse=reverse):
        current = runs[-1] if runs else None
        if current is not None and len(current) < days_per_run and (ds - current[-1]).days == step:
            current.append(ds)
        else:
            runs.append([ds])
    return [tuple(sorted(r)) for r in runs]


def build_lanes(
    selected: Iterable[PartitionKey], order: str, days_per_run: int = 1
) -> dict[str, list[Batch]]:
    """One lane per store: its child runs (batches of days) in the requested order."""
    by_store: dict[str, list[date]] = {}
    for sid, ds in selected:
        by_store.setdefault(sid, []).append(ds)
    return {sid: group_runs(days, order, days_per_run) for sid, days in sorted(by_store.items())}


@dataclass
class LaneScheduler:
    """Keeps at most one child run in flight per store and ``max_parallel`` overall.

    When a place frees, the idle lane with the most work left goes next (longest-queue-first),
    which keeps the longest lane from finishing last on its own. A lane counts as busy while
    any run of its store is in flight, including runs it adopted (several may exist when
    others triggered runs of the store).
    """

    lanes: dict[str, list[Batch]]
    max_parallel: int
    busy: dict[str, set[str]] = field(default_factory=dict)  # store -> in-flight run tokens

    def __post_init__(self) -> None:
        self.lanes = {sid: list(runs) for sid, runs in self.lanes.items() if runs}

    @property
    def in_flight(self) -> int:
        return sum(len(tokens) for tokens in self.busy.values())

    def occupy(self, store_id: str, token: str) -> None:
        """Mark a run of the store in flight (one we adopted, or one we just submitted)."""
        self.busy.setdefault(store_id, set()).add(token)

    def next_batch(self) -> list[tuple[str, Batch]]:
        """The child runs to submit now; the caller must ``occupy`` each with its token."""
        free = self.max_parallel - self.in_flight
        if free <= 0:
            return []
        idle = [sid for sid, runs in self.lanes.items() if runs and not self.busy.get(sid)]
        idle.sort(key=lambda sid: (-sum(len(b) for b in self.lanes[sid]), sid))
        return [(sid, self.lanes[sid].pop(0)) for sid in idle[:free]]

    def release(self, store_id: str, token: str) -> None:
        tokens = self.busy.get(store_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self.busy[store_id]

    def retry(self, store_id: str, batch: Batch, order: str) -> None:
        """Put a failed run's days back at the head of its lane, one run per day, so that one
        bad day cannot hold back the others of its batch."""
        singles = [(d,) for d in sorted(batch, reverse=order == "newest_first")]
        self.lanes.setdefault(store_id, [])[:0] = singles

    @property
    def done(self) -> bool:
        return not self.busy and not any(self.lanes.values())


def batch_label(batch: Sequence[date]) -> str:
    """``2026-10-01`` or ``2026-10-01..2026-10-07``."""
    first, last = min(batch), max(batch)
    return first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"


def idempotency_key(store_id: str, batch: Sequence[date] | date, attempt: int) -> str:
    """Unique per (flow, key) in Prefect; all store deployments share one flow, so the key
    carries the store. The days are part of it: a run of 2026-10-01..07 and a run of 10-03
    are different runs. The attempt makes a retry a new run."""
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return f"clickstream:{store_id}:{batch_label(days)}:attempt-{attempt}"


def child_run_name(store_id: str, batch: Sequence[date] | date, attempt: int) -> str:
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return f"backfill-{store_id}-{batch_label(days)}-a{attempt}"


def child_tags(store_id: str, batch: Sequence[date] | date) -> list[str]:
    days = (batch,) if isinstance(batch, date) else tuple(batch)
    return ["backfill", store_id, f"ds:{batch_label(days)}"]


def child_parameters(store_id: str, batch: Sequence[date]) -> dict:
    """Parameters of the store deployment's run for a batch (lean dbt mode: no per-node tasks)."""
    first, last = min(batch), max(batch)
    params = {"store_id": store_id, "ds": first.isoformat(), "dbt_mode": "lean"}
    if last != first:
        params["ds_end"] = last.isoformat()
    return params


def next_attempt(latest_attempt: int | None, latest_run_exists: bool) -> int:
    """Attempt number to dispatch for a partition that is not in flight.

    - never dispatched -> 1
    - last dispatch has no run on the server (the orchestrator died between writing the
      ledger and creating the run) -> the same attempt, hence the same key: run_deployment
      creates the run or returns the one that exists
    - last dispatch's run ended -> the next attempt (a new key, so a new run)

    A run of several days takes the highest attempt any of its days needs.
    """
    if latest_attempt is None:
        return 1
    return latest_attempt + 1 if latest_run_exists else latest_attempt
