"""Partition windows: a store-local date ``ds`` -> half-open UTC bounds, and what a build reads.

A partition is (store_id, ds) where ``ds`` is a calendar date in the store's IANA zone.
Its **window** is ``[window_start, window_end)`` in UTC, from local midnight to the next local
midnight, so a DST day is 23 or 25 hours long and Asia/Kolkata's day starts at 18:30 UTC.

Its **input range** is ``[input_start, input_end)``: the source events a build of the
partition reads, the window plus ``SESSION_LOOKBACK`` before it (events just before local
midnight decide whether the day's first events start a session or continue one). This is the
one definition of that range: the dbt partition spec (clickstream.dbt_args), the build-time
fingerprint (clickstream.store_run) and the plan-time fingerprint (clickstream.orchestrator)
all take it from here, through clickstream.source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

import pendulum

from clickstream.core.stores import Store

UTC_FORMAT = "%Y-%m-%d %H:%M:%S"

# How far before window_start a build reads. It must be at least the session gap
# (dbt var session_gap_minutes, 30): then the true start of every session that continues into
# the window is seen. dbt checks this at compile time, in every build; session_gap_problem below
# checks it before anything is submitted (resolve_request, from dbt_project.yml's vars), and
# tests/unit/test_source.py checks the committed project.
SESSION_LOOKBACK = timedelta(minutes=60)

# The dbt project var (dbt/dbt_project.yml) that SESSION_LOOKBACK must cover.
SESSION_GAP_VAR = "session_gap_minutes"


def session_gap_problem(dbt_vars: Mapping[str, object]) -> str | None:
    """What is wrong with the dbt project's session gap, given its vars; None if nothing.

    A gap longer than SESSION_LOOKBACK makes every build refuse its partition spec (dbt checks
    it at compile time, in each child run, after dispatch and with retries); checked here
    before anything is submitted instead. Values as dbt reads them (``var(...) | int``)."""
    lookback = int(SESSION_LOOKBACK.total_seconds() // 60)
    where = f"dbt var {SESSION_GAP_VAR} (dbt/dbt_project.yml)"
    if SESSION_GAP_VAR not in dbt_vars:
        return f"{where} is not set; set it to at most the session lookback of {lookback} minutes"
    value = dbt_vars[SESSION_GAP_VAR]
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        gap = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"{where} must be a whole number of minutes, got {value!r}"
    if gap < 1:
        return f"{where} must be at least 1 minute, got {gap}"
    if timedelta(minutes=gap) > SESSION_LOOKBACK:
        return (
            f"{where} is {gap} minutes, longer than the session lookback of {lookback} minutes "
            "(SESSION_LOOKBACK in clickstream/core/windows.py): every build would refuse its "
            f"partitions; lower {SESSION_GAP_VAR} to at most {lookback} or raise SESSION_LOOKBACK"
        )
    return None


@dataclass(frozen=True)
class Window:
    ds: date
    window_start: datetime  # UTC, naive (warehouse timestamps are naive UTC)
    window_end: datetime  # UTC, naive, exclusive

    @property
    def hours(self) -> float:
        return (self.window_end - self.window_start).total_seconds() / 3600

    @property
    def input_start(self) -> datetime:
        """First instant of source data a build of this partition reads (inclusive)."""
        return self.window_start - SESSION_LOOKBACK

    @property
    def input_end(self) -> datetime:
        """End of the source data a build reads (exclusive): nothing after the window."""
        return self.window_end


@cache
def _zone(name: str) -> pendulum.Timezone:
    """pendulum loads a zone's rules every time it is given a zone by name; planning 100
    stores x 3 years made that seconds. Loaded once per name here. A pendulum ``Timezone``
    is a ``zoneinfo.ZoneInfo``: the conversions below use the standard library's datetime
    arithmetic with it. Measured here against pendulum's DateTime: ``local_date`` about 1 us
    instead of 5, a partition's window about 4 us instead of 10."""
    return pendulum.timezone(name)


def _local_midnight_utc(tz: pendulum.Timezone, d: date) -> datetime:
    """First instant (naive UTC) whose local date in ``tz`` is ``d``.

    ``fold=0``: where a clock is set back over midnight (Atlantic/Azores and America/Havana
    in autumn: 00:00-00:59 happens twice) the day starts at the first 00:00, so every instant
    whose local date is ``d`` is in its window. (``pendulum.datetime`` defaults to the
    second one, which put that hour into the previous day.) Where a clock jumps over
    midnight (America/Santiago, Asia/Beirut in spring) there is no local 00:00; the day
    starts at the jump.
    """
    local = datetime(d.year, d.month, d.day, tzinfo=tz)  # fold=0
    return local.astimezone(UTC).replace(tzinfo=None)


def partition_window(timezone: str, ds: date) -> Window:
    """Half-open UTC bounds of the local day ``ds`` in ``timezone``."""
    tz = _zone(timezone)
    return Window(
        ds=ds,
        window_start=_local_midnight_utc(tz, ds),
        window_end=_local_midnight_utc(tz, ds + timedelta(days=1)),
    )


def partition_windows(timezone: str, days: Iterable[date]) -> list[Window]:
    return [partition_window(timezone, ds) for ds in sorted(set(days))]


def input_range(windows: Sequence[Window]) -> tuple[datetime, datetime]:
    """``[input_start, input_end)`` of a build of several partitions (one dbt invocation)."""
    if not windows:
        raise ValueError("no partitions")
    return min(w.input_start for w in windows), max(w.input_end for w in windows)


def local_date(timezone: str, moment_utc: datetime) -> date:
    """Store-local date of a naive-UTC instant."""
    return moment_utc.replace(tzinfo=UTC).astimezone(_zone(timezone)).date()


def local_today(timezone: str, now: datetime | None = None) -> date:
    """The store's current local date (default ``ds`` of a scheduled run)."""
    moment = pendulum.instance(now) if now is not None else pendulum.now(pendulum.UTC)
    return moment.in_timezone(_zone(timezone)).date()


def last_complete_days(
    timezone: str, lookback_days: int, now: datetime | None = None, *, today: date | None = None
) -> list[date]:
    """The last ``lookback_days`` local dates that have fully ended, oldest first.

    ``today`` (the store's local date, if the caller knows it) takes the place of ``now``."""
    if lookback_days < 1:
        raise ValueError("lookback_days must be at least 1")
    today = today or local_today(timezone, now)
    return [today - timedelta(days=n) for n in range(lookback_days, 0, -1)]


def date_range(start: date, end: date) -> list[date]:
    """Inclusive list of dates from start to end."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def landing_days(store: Store, start_utc: datetime, end_utc: datetime) -> list[date]:
    """The landing folders (store-local dates) that can hold events in ``[start, end)``."""
    first = local_date(store.timezone, start_utc)
    last = local_date(store.timezone, end_utc - timedelta(microseconds=1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
