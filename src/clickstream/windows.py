"""Partition windows: a store-local date ``ds`` -> half-open UTC bounds.

A partition is (store_id, ds) where ``ds`` is a calendar date in the store's IANA zone.
Its window is ``[window_start, window_end)`` in UTC, from local midnight to the next local
midnight, so a DST day is 23 or 25 hours long and Asia/Kolkata's day starts at 18:30 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pendulum

UTC_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Window:
    ds: date
    window_start: datetime  # UTC, naive (warehouse timestamps are naive UTC)
    window_end: datetime  # UTC, naive, exclusive

    @property
    def hours(self) -> float:
        return (self.window_end - self.window_start).total_seconds() / 3600

    def as_dbt_vars(self) -> dict[str, str]:
        return {
            "ds": self.ds.isoformat(),
            "window_start": self.window_start.strftime(UTC_FORMAT),
            "window_end": self.window_end.strftime(UTC_FORMAT),
        }


def partition_window(timezone: str, ds: date) -> Window:
    """Half-open UTC bounds of the local day ``ds`` in ``timezone``."""
    start = pendulum.datetime(ds.year, ds.month, ds.day, tz=timezone)
    nxt = ds + timedelta(days=1)
    end = pendulum.datetime(nxt.year, nxt.month, nxt.day, tz=timezone)
    return Window(ds=ds, window_start=_naive_utc(start), window_end=_naive_utc(end))


def local_today(timezone: str, now: datetime | None = None) -> date:
    """The store's current local date (default ``ds`` of a scheduled run)."""
    moment = pendulum.instance(now) if now is not None else pendulum.now("UTC")
    return moment.in_timezone(timezone).date()


def last_complete_days(timezone: str, lookback_days: int, now: datetime | None = None):
    """The last ``lookback_days`` local dates that have fully ended, oldest first."""
    if lookback_days < 1:
        raise ValueError("lookback_days must be at least 1")
    today = local_today(timezone, now)
    return [today - timedelta(days=n) for n in range(lookback_days, 0, -1)]


def date_range(start: date, end: date) -> list[date]:
    """Inclusive list of dates from start to end."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _naive_utc(moment: pendulum.DateTime) -> datetime:
    utc = moment.in_timezone("UTC")
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
