"""Batches of consecutive days per child run, one lane per store, and the scheduler that keeps
one run per store and max_parallel overall in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from clickstream.core.states import Batch, PartitionKey


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
        self.put_back(store_id, [(d,) for d in sorted(batch, reverse=order == "newest_first")])

    def put_back(self, store_id: str, batches: Iterable[Batch]) -> None:
        """Put batches back at the head of the store's lane, in the order given."""
        self.lanes.setdefault(store_id, [])[:0] = list(batches)

    @property
    def done(self) -> bool:
        return not self.busy and not any(self.lanes.values())
