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
    MAX_ATTEMPTS,
    MAX_CHILD_TIMEOUT_MINUTES,
    MAX_DAYS_PER_RUN,
    MAX_LOOKBACK_DAYS,
    MIN_CHILD_TIMEOUT_MINUTES,
    ORDERS,
    OVERSUBSCRIBE,
    REPROCESS_POLICIES,
    Order,
    PartitionKey,
    ReprocessPolicy,
)
from clickstream.core.stores import Registry, Store
from clickstream.core.windows import local_today, session_gap_problem


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
    child_timeout_minutes: int = 60  # a child in flight longer than this is cancelled, retried
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
    dbt_vars: Mapping[str, object] | None = None,
) -> ResolvedRequest:
    """Validate everything up front and say all that is wrong at once. Clamps nothing.

    Every check is bounded by the size of the request's fields, not by the number of days it
    spans: dates are compared with each store's earliest and current date, and the partition
    count is computed by arithmetic, before any list of dates is built (and none is built when
    there is a problem). ``check_limit=False`` validates what needs no server (the CLI does
    that first). ``today_by_store`` overrides stores' current local dates (tests).
    ``dbt_vars`` are the dbt project's vars (adapters.dbt.project.project_vars): the session
    gap is checked against the session lookback; None checks nothing there.
    """
    problems: list[str] = []
    if request.reprocess not in REPROCESS_POLICIES:
        problems.append(
            f"reprocess must be one of {', '.join(REPROCESS_POLICIES)}, got {request.reprocess!r}"
        )
    if request.order not in ORDERS:
        problems.append(f"order must be one of {', '.join(ORDERS)}, got {request.order!r}")
    if not 1 <= request.max_attempts <= MAX_ATTEMPTS:
        problems.append(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS}, got {request.max_attempts}"
        )
    if not 1 <= request.days_per_run <= MAX_DAYS_PER_RUN:
        problems.append(
            f"days_per_run must be between 1 and {MAX_DAYS_PER_RUN}, got {request.days_per_run}"
        )
    if not MIN_CHILD_TIMEOUT_MINUTES <= request.child_timeout_minutes <= MAX_CHILD_TIMEOUT_MINUTES:
        problems.append(
            f"child_timeout_minutes must be between {MIN_CHILD_TIMEOUT_MINUTES} and "
            f"{MAX_CHILD_TIMEOUT_MINUTES} (a day), got {request.child_timeout_minutes}: 0 would "
            "cancel every child run at once, and a child still running after a day is hung"
        )
    if dbt_vars is not None and (gap := session_gap_problem(dbt_vars)) is not None:
        problems.append(gap)
    max_parallel = _max_parallel(request.max_parallel, global_limit, check_limit, problems)
    chosen = _stores(request.stores, registry, problems)

    overrides = dict(today_by_store or {})

    def today_of(store: Store) -> date:
        return overrides.get(store.store_id) or local_today(store.timezone)

    if isinstance(request, CatchUpRequest):
        ranges = _catch_up_ranges(request, chosen, today_of, problems)
    elif isinstance(request, BackfillRequest):
        ranges = _backfill_ranges(request, chosen, today_of, problems)
    else:
        raise TypeError(f"not a BackfillRequest or CatchUpRequest: {request!r}")
    total = sum(_span(first, last) for first, last in ranges.values())
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
        # Only now, with every range checked and the count within what was asked for.
        dates_by_store={sid: tuple(_days(*span)) for sid, span in ranges.items()},
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
        if not sid.strip():
            problems.append(
                f"store id {sid!r} is empty or blank (an unset variable?); leave stores out for "
                "every active store"
            )
            continue
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


# A store's days as an inclusive (first, last) pair; first > last: no days.
_Range = tuple[date, date]


def _span(first: date, last: date) -> int:
    """Days in first..last, inclusive, by arithmetic (no list)."""
    return max(0, (last - first).days + 1)


def _backfill_ranges(
    request: BackfillRequest,
    stores: list[Store],
    today_of: Callable[[Store], date],
    problems: list[str],
) -> dict[str, _Range]:
    """Every store gets start..end; both within each store's earliest and current local date."""
    start, end = request.start_date, request.end_date
    if start is None or end is None:
        problems.append("start_date and end_date are required for a backfill")
        return {}
    if end < start:
        problems.append(f"end_date {end} is before start_date {start}")
        return {}
    ranges: dict[str, _Range] = {}
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
        ranges[store.store_id] = (start, end)
    return ranges


def _catch_up_ranges(
    request: CatchUpRequest,
    stores: list[Store],
    today_of: Callable[[Store], date],
    problems: list[str],
) -> dict[str, _Range]:
    """Each store's last ``lookback_days`` complete local days, none before its earliest date
    (the days core.windows.last_complete_days gives, as a range)."""
    if not 1 <= request.lookback_days <= MAX_LOOKBACK_DAYS:
        problems.append(
            f"lookback_days must be between 1 and {MAX_LOOKBACK_DAYS} (about ten years; "
            f"older days are a backfill's job), got {request.lookback_days}"
        )
        return {}
    ranges: dict[str, _Range] = {}
    for store in stores:
        today = today_of(store)
        first = max(today - timedelta(days=request.lookback_days), store.earliest_ds)
        ranges[store.store_id] = (first, today - timedelta(days=1))
    return ranges


def _days(first: date, last: date) -> list[date]:
    if last < first:
        return []
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def expand_partitions(resolved: ResolvedRequest) -> list[PartitionKey]:
    return [(sid, ds) for sid, days in resolved.dates_by_store.items() for ds in days]
