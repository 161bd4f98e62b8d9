"""What a person asked for (UI form, CLI flags, the nightly schedule), validated up front:
every problem at once, before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import ClassVar, Literal

from clickstream.core.states import (
    DEFAULT_MAX_PARTITIONS,
    MAX_DAYS_PER_RUN,
    ORDERS,
    OVERSUBSCRIBE,
    REPROCESS_POLICIES,
    Order,
    PartitionKey,
    ReprocessPolicy,
)
from clickstream.core.stores import Registry, Store
from clickstream.core.windows import last_complete_days, local_today


class BackfillInputError(ValueError):
    """Bad backfill input. Raised before anything is submitted; the message lists every problem."""


# Which flow a request came from; artifact keys and titles use it ("backfill-grid", ...).
RequestMode = Literal["backfill", "catch_up"]


@dataclass(frozen=True, kw_only=True)
class _Common:
    """What a backfill and a catch-up both ask for: which stores, how runs are cut and paced."""

    stores: tuple[str, ...] = ()  # empty = every active store
    days_per_run: int = 1
    max_parallel: int | None = None  # None = OVERSUBSCRIBE x the dbt-global limit
    max_attempts: int = 2
    allow_large_backfill: bool = False
    max_partitions: int = DEFAULT_MAX_PARTITIONS


@dataclass(frozen=True, kw_only=True)
class BackfillRequest(_Common):
    """A date range a person asked for (UI form, CLI flags). Both dates are required; a None
    one is reported by resolve_request with every other problem."""

    mode: ClassVar[RequestMode] = "backfill"

    start_date: date | None
    end_date: date | None
    reprocess: ReprocessPolicy = "missing"
    order: Order = "oldest_first"


@dataclass(frozen=True, kw_only=True)
class CatchUpRequest(_Common):
    """The last ``lookback_days`` complete local days of each store (the nightly schedule,
    `clickstream catch-up`), always under the ``stale`` policy, oldest first."""

    mode: ClassVar[RequestMode] = "catch_up"
    reprocess: ClassVar[ReprocessPolicy] = "stale"
    order: ClassVar[Order] = "oldest_first"

    lookback_days: int = 7


@dataclass(frozen=True)
class ResolvedRequest:
    """A validated request: concrete stores, per-store date lists, effective limits."""

    stores: tuple[Store, ...]
    dates_by_store: Mapping[str, tuple[date, ...]]
    reprocess: ReprocessPolicy
    order: Order
    max_parallel: int
    max_attempts: int
    mode: RequestMode
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
    request: BackfillRequest | CatchUpRequest,
    registry: Registry,
    *,
    global_limit: int | None,
    today_by_store: Mapping[str, date] | None = None,
    check_limit: bool = True,
) -> ResolvedRequest:
    """Validate everything up front and say all that is wrong at once. Clamps nothing.

    ``check_limit=False`` validates what needs no server (the CLI does that first).
    ``today_by_store`` overrides stores' current local dates (tests).
    """
    problems: list[str] = []
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
    max_parallel = _max_parallel(request.max_parallel, global_limit, check_limit, problems)
    chosen = _stores(request.stores, registry, problems)

    overrides = dict(today_by_store or {})

    def today_of(store: Store) -> date:
        return overrides.get(store.store_id) or local_today(store.timezone)

    if isinstance(request, CatchUpRequest):
        dates_by_store = _catch_up_dates(request, chosen, today_of, problems)
    elif isinstance(request, BackfillRequest):
        dates_by_store = _backfill_dates(request, chosen, today_of, problems)
    else:
        raise TypeError(f"not a BackfillRequest or CatchUpRequest: {request!r}")
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
        reprocess=request.reprocess,
        order=request.order,
        max_parallel=max_parallel,
        max_attempts=request.max_attempts,
        mode=request.mode,
        days_per_run=request.days_per_run,
    )


def _max_parallel(
    max_parallel: int | None, global_limit: int | None, check_limit: bool, problems: list[str]
) -> int | None:
    """The effective max_parallel: default OVERSUBSCRIBE x the dbt-global limit, at most that."""
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
    return max_parallel


def _stores(ids: tuple[str, ...], registry: Registry, problems: list[str]) -> list[Store]:
    """The chosen stores (default: every active one); unknown and inactive ones are problems
    that list the valid choices."""
    active_ids = [s.store_id for s in registry.active]
    if not ids:
        if not registry.active:
            problems.append("no active stores in the registry")
        return list(registry.active)
    chosen: list[Store] = []
    seen: set[str] = set()
    for sid in ids:
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
    return chosen


def _backfill_dates(
    request: BackfillRequest,
    stores: list[Store],
    today_of: Callable[[Store], date],
    problems: list[str],
) -> dict[str, tuple[date, ...]]:
    """Every store gets start..end; both within each store's earliest and current local date."""
    start, end = request.start_date, request.end_date
    if start is None or end is None:
        problems.append("start_date and end_date are required for a backfill")
        return {}
    if end < start:
        problems.append(f"end_date {end} is before start_date {start}")
        return {}
    dates_by_store: dict[str, tuple[date, ...]] = {}
    for store in stores:
        today = today_of(store)
        if start < store.earliest_ds:
            problems.append(
                f"start_date {start} is before {store.store_id}'s earliest date {store.earliest_ds}"
            )
        if end > today:
            problems.append(
                f"end_date {end} is after {store.store_id}'s current local date {today} "
                f"({store.timezone})"
            )
        dates_by_store[store.store_id] = tuple(_days(start, end))
    return dates_by_store


def _catch_up_dates(
    request: CatchUpRequest,
    stores: list[Store],
    today_of: Callable[[Store], date],
    problems: list[str],
) -> dict[str, tuple[date, ...]]:
    """Each store's last ``lookback_days`` complete local days, none before its earliest date."""
    if request.lookback_days < 1:
        problems.append(f"lookback_days must be at least 1, got {request.lookback_days}")
        return {}
    return {
        store.store_id: tuple(
            ds
            for ds in last_complete_days(
                store.timezone, request.lookback_days, today=today_of(store)
            )
            if ds >= store.earliest_ds
        )
        for store in stores
    }


def _days(first: date, last: date) -> list[date]:
    if last < first:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def expand_partitions(resolved: ResolvedRequest) -> list[PartitionKey]:
    return [(sid, ds) for sid, days in resolved.dates_by_store.items() for ds in days]
