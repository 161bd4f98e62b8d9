"""End-to-end scenarios for "a ✅ means the rows are right", shared by the DuckDB and the
Postgres profiles (tests/e2e/shared/test_state.py, tests/e2e/own/test_postgres.py).

Each scenario drives the real path a user drives (the CLI's backfill / catch-up / status
against the deployed orchestrator, a worker, dbt, the ledger) and checks the outcome against
tests/support/recount.py, which recounts every mart row from the raw landing files with zoneinfo and
plain Python. Which partitions must rebuild is worked out here from the events the scenario
moved (their timestamps, zoneinfo windows and the 60-minute lookback), never from the
project's own window or planning code. Each scenario first brings its partitions to a known
state itself, so it holds whatever other tests built before it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from tests.support import recount
from tests.support.stack import E2EStack, child_runs

LOOKBACK = timedelta(minutes=60)
MART_COLUMNS = (
    "store_id, ds, events, sessions, users, page_views, product_views, add_to_carts, "
    "checkouts, orders, revenue_usd, conversion_rate, window_start_utc, window_end_utc"
)
ZONES = {
    "us-flagship": "America/New_York",
    "in-mumbai": "Asia/Kolkata",
    "au-sydney": "Australia/Sydney",
}
DATABASES = {"us-flagship": "us_flagship", "in-mumbai": "in_mumbai", "au-sydney": "au_sydney"}
GRID_SYMBOLS = {
    "✅": "completed",
    "❌": "failed",
    "⬜": "missing",
    "⏳": "in_flight",
    "🟨": "stale",
}


@dataclass
class Profile:
    """How a scenario reaches the warehouse and the raw source of one stack."""

    handle: E2EStack
    target: str = "duckdb"
    env: dict[str, str] = field(default_factory=dict)  # the Postgres profile's variables

    @property
    def landing(self) -> Path:
        return self.handle.cfg.state_dir / "landing"

    # -- the warehouse -------------------------------------------------------------------
    def mart(self, store_id: str, days: Iterable[date]) -> dict[date, dict]:
        days = sorted(set(days))
        if self.target == "duckdb":
            path = self.handle.cfg.state_dir / "warehouse" / f"{DATABASES[store_id]}.duckdb"
            con = duckdb.connect(str(path), read_only=True)
            try:
                cur = con.execute(
                    f"select {MART_COLUMNS} from clickstream.clickstream_daily "
                    "where ds between ? and ? order by ds",
                    [days[0], days[-1]],
                )
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
            finally:
                con.close()
        else:
            import psycopg2

            with self._pg() as con, con.cursor() as cur:
                cur.execute(
                    f"select {MART_COLUMNS} from {DATABASES[store_id]}.clickstream_daily "
                    "where ds between %s and %s order by ds",
                    (days[0], days[-1]),
                )
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
            _ = psycopg2
        return {r[1]: dict(zip(names, r, strict=True)) for r in rows if r[1] in days}

    def delete_mart_row(self, store_id: str, ds: date) -> None:
        if self.target == "duckdb":
            path = self.handle.cfg.state_dir / "warehouse" / f"{DATABASES[store_id]}.duckdb"
            con = duckdb.connect(str(path))
            try:
                con.execute("delete from clickstream.clickstream_daily where ds = ?", [ds])
            finally:
                con.close()
        else:
            with self._pg() as con, con.cursor() as cur:
                cur.execute(
                    f"delete from {DATABASES[store_id]}.clickstream_daily where ds = %s", (ds,)
                )

    def _pg(self):
        import psycopg2

        from clickstream.adapters.warehouse import pg_dsn

        return psycopg2.connect(pg_dsn(self.env["CLICKSTREAM_PG_DATABASE"]))

    # -- the raw source ------------------------------------------------------------------
    def hide_day(self, store_id: str, ds: date) -> list[datetime]:
        """Take a landed local day out of the source (as if it had not arrived yet); returns
        the event times it held."""
        folder = self.landing / store_id / f"ds={ds.isoformat()}"
        times = _event_times(folder)
        shutil.move(str(folder), str(self._hidden(store_id, ds)))
        if self.target == "postgres":
            with self._pg() as con, con.cursor() as cur:
                lo, hi = recount.local_window(ZONES[store_id], ds)
                cur.execute(
                    "delete from raw.events where store_id = %s and event_ts >= %s "
                    "and event_ts < %s",
                    (store_id, lo, hi),
                )
        return times

    def land_day(self, store_id: str, ds: date) -> None:
        """The hidden day arrives late."""
        shutil.move(str(self._hidden(store_id, ds)), str(self.landing / store_id / f"ds={ds}"))
        if self.target == "postgres":
            self.load(store_id, ds, ds)

    def load(self, store_id: str, first: date, last: date) -> None:
        """Postgres: copy landing files into raw.events (what `data generate` does)."""
        from clickstream.adapters.warehouse import pg_dsn
        from clickstream.core.stores import load_registry
        from clickstream.local.synthetic import load_postgres

        with _env(self.env):
            store = load_registry().get(store_id)
            load_postgres([store], first, last, pg_dsn(), landing=self.landing)

    def _hidden(self, store_id: str, ds: date) -> Path:
        path = self.handle.cfg.state_dir / "hidden" / store_id / f"ds={ds.isoformat()}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- what a user runs ----------------------------------------------------------------
    def backfill(self, store_id: str, first: date, last: date, *extra: str) -> str:
        out = self.handle.cli(
            "backfill", "--start", str(first), "--end", str(last), "--stores", store_id, *extra
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def catch_up(self, store_id: str, lookback_days: int) -> str:
        out = self.handle.cli(
            "catch-up", "--lookback-days", str(lookback_days), "--stores", store_id
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def status(self, store_id: str, first: date, last: date) -> dict[date, str]:
        """The grid `clickstream status` prints, as (day -> state) for one store."""
        out = self.handle.cli(
            "status", "--start", str(first), "--end", str(last), "--stores", store_id
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return parse_status(out.stdout)

    def days_built_since(self, since: datetime, store_id: str) -> list[date]:
        """Every day that child runs of the store created after ``since`` were asked to build,
        once per run (a day built twice appears twice)."""
        days: list[date] = []
        for run in self.handle.api(lambda c: child_runs(c, since)):
            p = run.parameters
            if p.get("store_id") != store_id or not p.get("ds"):
                continue
            first = date.fromisoformat(p["ds"])
            last = date.fromisoformat(p["ds_end"]) if p.get("ds_end") else first
            days += [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return sorted(days)

    def assert_rows_match_recount(self, store_id: str, days: Iterable[date]) -> dict[date, dict]:
        days = sorted(set(days))
        expected = recount.recount_store(self.landing, store_id, ZONES[store_id], days)
        actual = self.mart(store_id, days)
        problems = recount.compare_stores(expected, list(actual.values()))
        assert not problems, "\n".join(problems)
        return actual


def parse_status(text: str) -> dict[date, str]:
    states: dict[date, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")]
        cells = [c for c in cells if c]
        if len(cells) >= 2:
            with contextlib.suppress(ValueError):
                states[date.fromisoformat(cells[0])] = GRID_SYMBOLS.get(cells[1], cells[1])
    return states


def _event_times(folder: Path) -> list[datetime]:
    return [
        r[0]
        for r in duckdb.sql(
            f"select event_ts from read_parquet('{folder}/*.parquet', union_by_name = true)"
        ).fetchall()
    ]


@contextlib.contextmanager
def _env(values: dict[str, str]):
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def days_reading(store_id: str, times: Iterable[datetime], candidates: Iterable[date]) -> set[date]:
    """Days (among candidates) whose input range [window_start - 60 min, window_end) holds
    any of these event times: the days whose build reads them. zoneinfo, not windows.py."""
    out = set()
    times = list(times)
    for ds in candidates:
        lo, hi = recount.local_window(ZONES[store_id], ds)
        if any(lo - LOOKBACK <= t < hi for t in times):
            out.add(ds)
    return out


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_today(store_id: str) -> date:
    return datetime.now(ZoneInfo(ZONES[store_id])).date()


# -- the scenarios ---------------------------------------------------------------------------
def late_data_in_the_lookback(p: Profile, store_id: str = "us-flagship") -> None:
    """Day D-1 lands after D was built: D is stale, and one catch-up rebuilds exactly the
    partitions whose inputs changed."""
    today = local_today(store_id)
    window = [today - timedelta(days=n) for n in (3, 2, 1)]  # catch-up --lookback-days 3
    late = window[1]  # D-1; D = window[2]
    p.catch_up(store_id, 3)  # whatever was there: now built and current
    hidden_times = p.hide_day(store_id, late)
    since = utcnow()
    p.catch_up(store_id, 3)  # D-1 "not landed yet": built empty, D built without its lookback
    assert p.days_built_since(since, store_id) == sorted(
        days_reading(store_id, hidden_times, window)
    )
    before = p.mart(store_id, window)
    p.land_day(store_id, late)

    expected = days_reading(store_id, hidden_times, window)
    assert expected == {window[1], window[2]}  # its own window, and the next day's lookback
    grid = p.status(store_id, window[0], window[-1])
    assert grid == {d: ("stale" if d in expected else "completed") for d in window}, grid

    since = utcnow()
    p.catch_up(store_id, 3)
    assert p.days_built_since(since, store_id) == sorted(expected)  # exactly those, once
    after = p.assert_rows_match_recount(store_id, window)
    # The day after the late one really changed: sessions that began before its midnight
    # are no longer counted as its own.
    assert after[window[2]]["sessions"] != before[window[2]]["sessions"]
    assert after[window[0]] == before[window[0]]
    assert set(p.status(store_id, window[0], window[-1]).values()) == {"completed"}


def full_refresh_keeps_history(p: Profile, store_id: str, extra_day: date) -> None:
    """A store run with full_refresh (as a click in the UI starts it) rebuilds every day the
    ledger knows: none loses its row, every row equals an independent recount."""
    from clickstream.adapters import ledger

    with _env({**p.env, "CLICKSTREAM_STATE_DIR": str(p.handle.cfg.state_dir)}):
        known = {k[1]: b for k, b in ledger.read_builds([store_id]).items()}
    completed = sorted(d for d, b in known.items() if b.status == "completed")
    assert completed, "the scenario needs built partitions of the store"
    out = p.handle.prefect(
        "deployment",
        "run",
        f"clickstream-dbt-run/{store_id}",
        "-p",
        f"ds={extra_day.isoformat()}",
        "-p",
        "full_refresh=true",
        "--watch",
        "--watch-interval",
        "2",
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Every day the ledger knew is rebuilt, including days whose last build had failed.
    rows = p.assert_rows_match_recount(store_id, sorted({*known, extra_day}))
    assert set(completed) <= set(rows)
    with _env({**p.env, "CLICKSTREAM_STATE_DIR": str(p.handle.cfg.state_dir)}):
        after = {k[1]: b for k, b in ledger.read_builds([store_id]).items()}
    refreshed = {b.flow_run_id for b in after.values()}
    assert len(refreshed) == 1  # one run rebuilt them all
    assert set(after) == set(known) | {extra_day}
    for ds, b in after.items():
        assert b.status == "completed" and b.fingerprint and b.fingerprint.startswith("v2:")
        assert (b.events, b.sessions) == (rows[ds]["events"], rows[ds]["sessions"])
    first, last = min(after), max(after)
    grid = p.status(store_id, first, last)
    assert {d: s for d, s in grid.items() if d in after} == {d: "completed" for d in after}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
