"""An independent reference recount of the ``clickstream_daily`` mart from the raw landing files.

Tests use it to check the pipeline against something that shares none of its code: nothing
here imports the ``clickstream`` package, pendulum or the project's SQL. Time zones come from
:mod:`zoneinfo`; DuckDB is used only to read Parquet files; every rule is plain Python.

Semantics (from first principles, for store-local date ``ds`` in IANA zone ``tz``):

* **Window**: ``[local midnight of ds, local midnight of ds + 1)`` as naive UTC datetimes
  (23 h or 25 h on DST days).
* **Source**: every ``*.parquet`` file under ``<landing>/<store_id>/ds=*/``. The ``ds=``
  folder is ignored: an event belongs to the day whose window holds its ``event_ts``.
* **Deduplication**: one row per ``event_id`` (copies differ only in ``loaded_at``; the
  earliest loaded copy is kept).
* **Counts**: ``events`` = deduplicated events in the window; ``users`` = distinct non-null
  ``user_id``; ``page_views``/``product_views``/``add_to_carts``/``checkouts`` by
  ``event_type``; ``orders`` = distinct non-null ``order_id`` of purchases; ``revenue_usd`` =
  sum of purchases' ``revenue_usd`` (``Decimal``, 0 when none).
* **Sessions**: per user (null ``user_id`` forms no session), over the user's whole
  deduplicated history ordered by ``(event_ts, event_id)``, an event starts a session if it
  is the user's first or ``event_ts > previous event_ts + 30 min``. A session belongs to the
  day whose window holds its first event; its events at or after that window's end belong
  to no session of any day. ``converted_sessions`` = sessions of ds with a purchase before
  ``window_end``; ``conversion_rate`` = converted / sessions (0.0 without sessions).
"""

from __future__ import annotations

import bisect
import gc
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import duckdb

SESSION_GAP = timedelta(minutes=30)
COUNTED_TYPES = ("page_view", "product_view", "add_to_cart", "checkout")
INT_COLUMNS = (
    "events",
    "sessions",
    "users",
    "page_views",
    "product_views",
    "add_to_carts",
    "checkouts",
    "orders",
)
TIME_COLUMNS = ("window_start_utc", "window_end_utc")
CONVERSION_TOLERANCE = 1e-9


class RawEvent(NamedTuple):
    event_id: str
    store_id: str | None
    user_id: str | None
    session_key: str | None
    event_type: str | None
    event_ts: datetime  # naive UTC
    loaded_at: datetime | None  # naive UTC
    product_id: str | None
    order_id: str | None
    revenue_usd: Decimal | None
    device: str | None


FIELDS = RawEvent._fields


# -- reading ------------------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hundreds of thousands of small tuples, no cycles: the cyclic GC only costs time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def store_files(landing_dir: Path, store_id: str) -> list[Path]:
    """Every Parquet file of the store, whatever its ``ds=`` folder says."""
    return sorted(Path(landing_dir, store_id).glob("ds=*/*.parquet"))


def read_raw_events(landing_dir: Path, store_id: str) -> list[RawEvent]:
    """All raw rows (duplicates included) of every landing file of ``store_id``."""
    with _gc_paused():
        return _read_raw_events(landing_dir, store_id)


def _read_raw_events(landing_dir: Path, store_id: str) -> list[RawEvent]:
    files = store_files(landing_dir, store_id)
    if not files:
        return []
    con = duckdb.connect(":memory:")
    try:
        cur = con.execute(
            "select * from read_parquet(?, union_by_name = true, hive_partitioning = false)",
            [[str(f) for f in files]],
        )
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    missing = [n for n in ("event_id", "event_ts") if n not in names]
    if missing:
        raise ValueError(f"landing files of {store_id!r} lack columns {missing}")
    picks = [names.index(f) if f in names else None for f in FIELDS]
    if picks == list(range(len(FIELDS))) and len(names) == len(FIELDS):
        events = list(map(RawEvent._make, rows))
    else:
        events = [RawEvent._make(r[i] if i is not None else None for i in picks) for r in rows]
    if events and (events[0].event_ts.tzinfo is not None):
        events = [
            e._replace(event_ts=_naive_utc(e.event_ts), loaded_at=_naive_utc(e.loaded_at))
            for e in events
        ]
    return events


# -- windows ------------------------------------------------------------------------------------


def _local_midnight_utc(zone: ZoneInfo, d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def local_window(tz: str, ds: date) -> tuple[datetime, datetime]:
    """``[local midnight of ds, local midnight of ds + 1)`` in naive UTC."""
    zone = ZoneInfo(tz)
    return _local_midnight_utc(zone, ds), _local_midnight_utc(zone, ds + timedelta(days=1))


# -- recount ------------------------------------------------------------------------------------


def deduplicate(events: Iterable[RawEvent]) -> list[RawEvent]:
    """One copy per event_id (the earliest loaded), sorted by (event_ts, event_id)."""
    keep: dict[str, RawEvent] = {}
    for e in events:
        cur = keep.setdefault(e.event_id, e)
        if cur is not e and _load_key(e) < _load_key(cur):
            keep[e.event_id] = e
    return sorted(keep.values(), key=operator.attrgetter("event_ts", "event_id"))


def _load_key(e: RawEvent) -> tuple:
    return (e.loaded_at is None, e.loaded_at or datetime.min)


class _Index:
    """Deduplicated events and sessions of one store, sorted for per-window slicing."""

    def __init__(self, events: Iterable[RawEvent]):
        self.events = deduplicate(events)
        self.event_ts = [e.event_ts for e in self.events]
        store_ids = {e.store_id for e in self.events}
        self.store_id = store_ids.pop() if len(store_ids) == 1 else None
        # Per user, in (event_ts, event_id) order: (event_ts, is_purchase).
        by_user: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
        for e in self.events:
            if e.user_id is not None:
                by_user[e.user_id].append((e.event_ts, e.event_type == "purchase"))
        # Each session: (start_ts, ts of its first purchase or None). A user's first event
        # starts one; so does every event more than SESSION_GAP after the user's previous one.
        sessions: list[tuple[datetime, datetime | None]] = []
        gap = SESSION_GAP
        for points in by_user.values():
            start, first_purchase = points[0][0], None
            prev = start
            for ts, is_purchase in points:
                if ts > prev + gap:
                    sessions.append((start, first_purchase))
                    start, first_purchase = ts, None
                if is_purchase and first_purchase is None:
                    first_purchase = ts
                prev = ts
            sessions.append((start, first_purchase))
        sessions.sort(key=lambda s: s[0])
        self.sessions = sessions
        self.session_starts = [s[0] for s in sessions]

    def day(self, tz: str, ds: date, store_id: str | None = None) -> dict:
        ws, we = local_window(tz, ds)
        lo = bisect.bisect_left(self.event_ts, ws)
        hi = bisect.bisect_left(self.event_ts, we)
        in_window = self.events[lo:hi]
        users: set[str] = set()
        types = dict.fromkeys(COUNTED_TYPES, 0)
        orders: set[str] = set()
        revenue = Decimal(0)
        for e in in_window:
            if e.user_id is not None:
                users.add(e.user_id)
            if e.event_type == "purchase":
                if e.order_id is not None:
                    orders.add(e.order_id)
                if e.revenue_usd is not None:
                    revenue += Decimal(e.revenue_usd)
            elif e.event_type in types:
                types[e.event_type] += 1
        s_lo = bisect.bisect_left(self.session_starts, ws)
        s_hi = bisect.bisect_left(self.session_starts, we)
        day_sessions = self.sessions[s_lo:s_hi]
        converted = sum(1 for _, p in day_sessions if p is not None and p < we)
        n_sessions = len(day_sessions)
        row = {
            "ds": ds,
            "events": len(in_window),
            "sessions": n_sessions,
            "converted_sessions": converted,
            "users": len(users),
            "page_views": types["page_view"],
            "product_views": types["product_view"],
            "add_to_carts": types["add_to_cart"],
            "checkouts": types["checkout"],
            "orders": len(orders),
            "revenue_usd": revenue,
            "conversion_rate": converted / n_sessions if n_sessions else 0.0,
            "window_start_utc": ws,
            "window_end_utc": we,
        }
        store_id = store_id or self.store_id
        return {"store_id": store_id, **row} if store_id is not None else row


def recount_day(events: Iterable[RawEvent], tz: str, ds: date, store_id: str | None = None) -> dict:
    """The expected mart row of ``ds`` from raw events (duplicates allowed, any days)."""
    with _gc_paused():
        return _Index(events).day(tz, ds, store_id)


def recount_store(
    landing_dir: Path, store_id: str, tz: str, days: Iterable[date]
) -> dict[date, dict]:
    """Expected mart rows of ``days``, reading the store's landing files once."""
    with _gc_paused():
        index = _Index(read_raw_events(landing_dir, store_id))
    return {ds: index.day(tz, ds, store_id) for ds in days}


# -- comparing ----------------------------------------------------------------------------------


def _as_decimal(value) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value


def _as_naive_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _naive_utc(value)


def compare_rows(expected: dict, actual: dict) -> list[str]:
    """Human-readable mismatches between an expected (recount) row and a mart row.

    Only keys of ``expected`` are checked (extra keys of ``actual`` are ignored). Integers and
    revenue are exact, ``conversion_rate`` within 1e-9; values from DuckDB or psycopg2
    (Decimal, float, int, date, datetime, aware or naive) are accepted.
    """
    label = f"{expected.get('store_id', '?')} {expected.get('ds', '?')}"
    out: list[str] = []
    for key, want in expected.items():
        if key not in actual:
            if key != "converted_sessions":  # not a mart column
                out.append(f"{label}: {key}: missing in actual (expected {want!r})")
            continue
        got = actual[key]
        if got is None:
            out.append(f"{label}: {key}: expected {want!r}, got None")
            continue
        try:
            if key in INT_COLUMNS or key == "converted_sessions":
                ok = _as_decimal(got) == want
            elif key == "revenue_usd":
                ok = _as_decimal(got) == _as_decimal(want)
            elif key == "conversion_rate":
                ok = abs(float(got) - float(want)) <= CONVERSION_TOLERANCE
            elif key == "ds":
                ok = _as_date(got) == _as_date(want)
            elif key in TIME_COLUMNS:
                ok = _as_naive_utc(got) == _as_naive_utc(want)
            else:
                ok = got == want
        except (TypeError, ValueError, ArithmeticError) as exc:
            out.append(f"{label}: {key}: expected {want!r}, got {got!r} ({exc})")
            continue
        if not ok:
            diff = ""
            if key in INT_COLUMNS or key == "revenue_usd":
                diff = f" (actual - expected = {_as_decimal(got) - _as_decimal(want)})"
            out.append(f"{label}: {key}: expected {want!r}, got {got!r}{diff}")
    return out


def compare_stores(expected: dict[date, dict], actual_rows: Sequence[dict]) -> list[str]:
    """Mismatches over many days: every expected day must have exactly one actual row."""
    by_day: dict[date, list[dict]] = {}
    for row in actual_rows:
        by_day.setdefault(_as_date(row["ds"]), []).append(row)
    out: list[str] = []
    for ds, want in sorted(expected.items()):
        rows = by_day.get(ds, [])
        if len(rows) != 1:
            out.append(f"{want.get('store_id', '?')} {ds}: {len(rows)} actual rows (expected 1)")
            continue
        out.extend(compare_rows(want, rows[0]))
    return out
