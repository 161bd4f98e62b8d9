"""What a person asked for (UI form, CLI flags, the nightly schedule), validated up front:
every problem at once, before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from clickstream.core.states import (
    DEFAULT_MAX_PARTITIONS,
    MAX_DAYS_PER_RUN,
    ORDERS,
    OVERSUBSCRIBE,
    REPROCESS_POLICIES,
    PartitionKey,
)
from clickstream.core.stores import Registry, Store
from clickstream.core.windows import local_today


class BackfillInputError(ValueError):
    """Bad backfill input. Raised before anything is submitted; the message lists every problem."""


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
