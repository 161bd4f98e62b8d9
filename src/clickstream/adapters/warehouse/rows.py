"""What both warehouses hold and return: the mart's name, its rows, the planning view."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date

from clickstream.core.stores import Store

MART = "clickstream_daily"
SESSIONS = "int_clickstream__sessions"
SCHEMA = "clickstream"

# ``{table}`` is the qualified mart; ``%s`` placeholders (DuckDB readers turn them into ``?``).
MART_ROWS_SQL = (
    "select ds, count(*), coalesce(sum(events), 0), coalesce(sum(sessions), 0) "
    "from {table} where store_id = %s and ds between %s and %s group by ds"
)


class WarehouseBusy(RuntimeError):
    """A build holds the store's DuckDB file."""


@dataclass(frozen=True)
class MartRow:
    mart_rows: int
    events: int
    sessions: int


def mart_rows_from(rows: Iterable[tuple]) -> dict[date, MartRow]:
    """:data:`MART_ROWS_SQL`'s result rows as mart rows by day."""
    return {ds: MartRow(int(n), int(ev), int(se)) for ds, n, ev, se in rows}


def partition_counts(
    found: dict[date, MartRow], days: Iterable[date]
) -> dict[date, dict[str, int]]:
    """Each day's mart rows, events and sessions (zeros for a day without a row)."""
    out = {}
    for ds in sorted(set(days)):
        row = found.get(ds, MartRow(0, 0, 0))
        out[ds] = {"mart_rows": row.mart_rows, "events": row.events, "sessions": row.sessions}
    return out


@dataclass
class MartView:
    """What planning found in the warehouses: the mart rows of the stores it could read."""

    rows: dict[tuple[str, date], MartRow] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)
    unchecked: dict[str, str] = field(default_factory=dict)  # store -> why


def collect_view(
    stores: Iterable[Store],
    first: date,
    last: date,
    *,
    rows: Callable[[Store, date, date], dict[date, MartRow]],
    shared_lock: Callable[[Store], AbstractContextManager[None]],
) -> MartView:
    """Every mart row of the stores in [first, last], each read under ``shared_lock`` (which
    raises :class:`WarehouseBusy` at once when a build holds the store: left unchecked)."""
    view = MartView()
    for store in stores:
        try:
            with shared_lock(store):
                found = rows(store, first, last)
        except WarehouseBusy:
            view.unchecked[store.store_id] = "a build holds its warehouse file"
            continue
        except Exception as exc:  # unreadable warehouse: say so, keep the ledger's word
            view.unchecked[store.store_id] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        view.checked.add(store.store_id)
        for ds, row in found.items():
            view.rows[(store.store_id, ds)] = row
    return view
