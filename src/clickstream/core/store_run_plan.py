"""The store run's decisions: which days a run builds, in which dbt invocations, which days
another run already built, and whether a regular run is superseded by a newer tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from clickstream.core.fingerprints import Fingerprint
from clickstream.core.records import BuildRecord
from clickstream.core.states import MAX_DAYS_PER_RUN
from clickstream.core.stores import Store


class PartitionInputError(ValueError):
    """Days outside the store's range, or too many for one run."""


# -- pure decisions ------------------------------------------------------------------------
def requested_days(store: Store, ds: date | None, ds_end: date | None, today: date) -> list[date]:
    """The days a run was asked to build: ``ds`` .. ``ds_end`` (both default to today)."""
    first = ds or today
    last = ds_end or first
    problems = []
    if last < first:
        problems.append(f"ds_end {last} is before ds {first}")
    if last > today:
        problems.append(
            f"{'ds_end' if ds_end else 'ds'} {last} is after {store.store_id}'s current local "
            f"date {today} ({store.timezone})"
        )
    if first < store.earliest_ds:
        problems.append(
            f"ds {first} is before {store.store_id}'s earliest date {store.earliest_ds}"
        )
    span = (last - first).days + 1
    if span > MAX_DAYS_PER_RUN:
        problems.append(f"{span} days in one run; at most {MAX_DAYS_PER_RUN}")
    if problems:
        raise PartitionInputError("; ".join(problems))
    return [first + timedelta(days=n) for n in range(span)]


def full_refresh_days(requested: Iterable[date], ledger_days: Iterable[date]) -> list[date]:
    """A full refresh rebuilds the requested days and every day the ledger knows."""
    return sorted(set(requested) | set(ledger_days))


def invocations(days: Sequence[date], size: int = MAX_DAYS_PER_RUN) -> list[list[date]]:
    """Consecutive groups of at most ``size`` days, one dbt invocation each (days sorted)."""
    ordered = sorted(days)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def already_built(
    days: Iterable[date],
    builds: Mapping[date, BuildRecord],
    current: Mapping[date, Fingerprint],
    *,
    run_id: str,
    requested_at: datetime,
) -> dict[date, str]:
    """Days another run built after this run was requested, from the data there is now.

    Building them again would write the same rows: a batch and a single-day run of the same
    day, queued one behind the other, build it once. Returns day -> the run that built it.
    ``requested_at`` is naive UTC, like the ledger's timestamps.
    """
    out = {}
    for ds in days:
        b = builds.get(ds)
        fp = current.get(ds)
        if (
            b is not None
            and fp is not None
            and b.status == "completed"
            and b.flow_run_id
            and b.flow_run_id != run_id
            and b.started_at is not None
            and b.started_at >= requested_at
            and b.fingerprint == fp.token
        ):
            out[ds] = b.flow_run_id
    return out


@dataclass(frozen=True)
class RunTick:
    """A run of the store's deployment as the supersede rule sees it."""

    id: str
    expected_start: datetime  # when it was due (its scheduled time)
    state_type: str  # Prefect StateType value: SCHEDULED, PENDING, RUNNING, COMPLETED, ...
    regular: bool  # builds "today" (no ds, no full refresh): a schedule tick or a Run click


# A newer regular run in one of these states makes an older one redundant: it is about to
# build (or has built, after the older one was due) the same current local day.
SUPERSEDING_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "COMPLETED"})


def superseded_by(me: RunTick, others: Iterable[RunTick], now: datetime) -> RunTick | None:
    """The newest regular run of the same store that makes this regular run redundant.

    After an outage (a server or worker down for hours) the missed 30-minute ticks are all
    due at once, and under ENQUEUE they would run back to back, each building the same current
    day. A regular run skips when another regular run of its deployment was due after it (and
    is due by now) and is waiting, running or done: the newest tick builds today once, and the
    nightly catch-up covers the days before. In normal operation the next tick is not due yet
    when a run starts, so nothing is skipped.
    """
    if not me.regular:
        return None
    newer = [
        o
        for o in others
        if o.id != me.id
        and o.regular
        and me.expected_start < o.expected_start <= now
        and o.state_type in SUPERSEDING_STATES
    ]
    return max(newer, key=lambda o: o.expected_start) if newer else None


def day_label(days: Sequence[date]) -> str:
    if not days:
        return "no days"
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0]}..{days[-1]} ({len(days)} days)"


@dataclass(frozen=True)
class Invocation:
    days: list[date]
    full_refresh: bool
