"""The dbt project on DuckDB: per-partition builds over a small generated landing zone.

dbt runs in-process (dbtRunner) with exactly the command line the flows use
(clickstream.dbt_args.dbt_build_args); one generated dataset and one warehouse per store are
shared by the whole module, and each test touches its own partitions.
"""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from clickstream import paths
from clickstream.dbt_args import dbt_build_args
from clickstream.generate import add_bad_events, generate
from clickstream.registry import load_registry
from clickstream.windows import date_range, partition_window

DAYS = date_range(date(2026, 10, 31), date(2026, 11, 2))  # NY falls back on 2026-11-01
EPD = 2000
MART_COLUMNS = (
    "store_id, ds, events, sessions, users, page_views, product_views, add_to_carts, "
    "checkouts, orders, revenue_usd, conversion_rate, window_start_utc, window_end_utc"
)


class Project:
    def __init__(self, root: Path):
        self.landing = root / "landing"
        self.warehouse = root / "warehouse"
        self.target = root / "target"
        self.warehouse.mkdir(parents=True)
        self.stores = {s.store_id: s for s in load_registry()}

    def build(self, store_id: str, ds: date, landing: Path | None = None):
        from dbt.cli.main import dbtRunner

        store = self.stores[store_id]
        args = dbt_build_args(
            store,
            partition_window(store.timezone, ds),
            landing_dir=landing or self.landing,
            project_dir=paths.dbt_project_dir(),
            target_path=self.target / store_id,
        )
        return dbtRunner().invoke(args)

    def query(self, store_id: str, sql: str, params: list | None = None) -> list[tuple]:
        path = self.warehouse / f"{self.stores[store_id].database}.duckdb"
        # Default config on purpose: in-process dbt-duckdb shares the instance per file.
        con = duckdb.connect(str(path))
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def mart(self, store_id: str) -> list[tuple]:
        return self.query(
            store_id,
            f"select {MART_COLUMNS} from clickstream.clickstream_daily order by ds",
        )

    def sessions(self, store_id: str, ds: date) -> list[tuple]:
        return self.query(
            store_id,
            "select * from clickstream.int_clickstream__sessions where ds = ? order by session_id",
            [ds],
        )


def _messages(result) -> str:
    parts = [str(result.exception or "")]
    for r in getattr(result.result, "results", None) or []:
        parts.append(f"{r.node.unique_id}: {r.status}: {r.message}")
    return "\n".join(parts)


def _assert_ok(result) -> None:
    assert result.success, _messages(result)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbt_project")
    proj = Project(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLICKSTREAM_WAREHOUSE_DIR", str(proj.warehouse))
        mp.setenv("CLICKSTREAM_LANDING_DIR", str(proj.landing))
        generate(list(proj.stores.values()), DAYS[0], DAYS[-1], EPD, landing=proj.landing)
        proj.first_results = {}
        for store_id in proj.stores:
            for ds in DAYS:
                result = proj.build(store_id, ds)
                _assert_ok(result)
                proj.first_results[(store_id, ds)] = result
        yield proj


def test_every_partition_builds_with_tests_and_unit_tests(project):
    result = project.first_results[("us-flagship", DAYS[0])]
    statuses = {r.node.unique_id: str(r.status) for r in result.result.results}
    unit = [k for k in statuses if k.startswith("unit_test.")]
    tests = [k for k in statuses if k.startswith("test.")]
    assert unit and all(statuses[k] == "pass" for k in unit)
    # 11 data tests: several columns share one generic test (one dbt node = one Prefect task).
    assert len(tests) >= 10 and all(statuses[k] == "pass" for k in tests)
    for store_id, store in project.stores.items():
        rows = project.mart(store_id)
        assert [r[1] for r in rows] == DAYS
        for row in rows:
            (_, ds, events, sessions, users, pv, prv, atc, co, orders, revenue, conv, ws, we) = row
            window = partition_window(store.timezone, ds)
            assert (ws, we) == (window.window_start, window.window_end)
            assert events > 0 and users > 0 and 0 < sessions <= events
            assert pv >= prv >= atc >= co >= orders > 0
            assert revenue > 0 and 0 < conv < 1


def test_dst_day_window(project):
    row = [r for r in project.mart("us-flagship") if r[1] == date(2026, 11, 1)][0]
    assert (row[13] - row[12]).total_seconds() == 25 * 3600


def test_rebuilding_a_partition_gives_identical_rows(project):
    ds = DAYS[1]
    mart_before = project.mart("us-flagship")
    sessions_before = project.sessions("us-flagship", ds)
    assert sessions_before
    _assert_ok(project.build("us-flagship", ds))
    assert project.mart("us-flagship") == mart_before
    assert project.sessions("us-flagship", ds) == sessions_before


@pytest.mark.parametrize("store_id", ["us-flagship", "in-mumbai"])
def test_events_are_counted_once_across_day_boundaries(project, store_id):
    store = project.stores[store_id]
    lo = partition_window(store.timezone, DAYS[0]).window_start
    hi = partition_window(store.timezone, DAYS[-1]).window_end
    raw = duckdb.sql(
        f"select count(distinct event_id) from read_parquet("
        f"'{project.landing}/{store_id}/*/*.parquet', union_by_name = true) "
        f"where event_ts >= '{lo}' and event_ts < '{hi}'"
    ).fetchall()[0][0]
    mart = project.mart(store_id)
    assert sum(r[2] for r in mart) == raw
    # Every session is written by exactly one partition: the one it started in.
    starts = project.query(
        store_id,
        "select count(*), count(distinct session_id), "
        "count(*) filter (where session_start_ts < window_start_utc "
        "or session_start_ts >= window_end_utc) "
        "from clickstream.int_clickstream__sessions s join clickstream.clickstream_daily d "
        "using (store_id, ds)",
    )[0]
    assert starts[0] == starts[1] == sum(r[3] for r in mart)
    assert starts[2] == 0


def test_rebuild_after_landing_day_removed_leaves_an_all_zero_row(project):
    store_id, ds = "au-sydney", DAYS[-1]
    before = project.mart(store_id)
    others_sessions = [project.sessions(store_id, d) for d in DAYS[:-1]]
    assert project.sessions(store_id, ds)
    shutil.rmtree(project.landing / store_id / f"ds={ds.isoformat()}")
    _assert_ok(project.build(store_id, ds))
    after = project.mart(store_id)
    assert after[:-1] == before[:-1]
    row = after[-1]
    assert row[:2] == (store_id, ds)
    assert row[2:12] == (0, 0, 0, 0, 0, 0, 0, 0, Decimal("0.00"), 0.0)
    assert row[12:] == before[-1][12:]
    assert project.sessions(store_id, ds) == []
    assert [project.sessions(store_id, d) for d in DAYS[:-1]] == others_sessions


def test_bad_events_fail_the_partition_and_keep_its_previous_row(project):
    store_id, ds = "au-sydney", DAYS[1]
    store = project.stores[store_id]
    before = project.mart(store_id)
    sessions_before = project.sessions(store_id, ds)
    bad = add_bad_events(store, ds, landing=project.landing)
    result = project.build(store_id, ds)
    assert not result.success
    failed = {r.node.unique_id for r in result.result.results if str(r.status) == "fail"}
    assert any("accepted_values_stg_clickstream__events_event_type" in f for f in failed), failed
    assert project.mart(store_id) == before
    assert project.sessions(store_id, ds) == sessions_before
    bad.unlink()
    _assert_ok(project.build(store_id, ds))
    assert project.mart(store_id) == before


def test_store_without_landing_files_fails_clearly(project, tmp_path):
    result = project.build("in-mumbai", DAYS[0], landing=tmp_path / "empty")
    assert not result.success
    assert "no landing files for store 'in-mumbai'" in _messages(result)
    assert len(project.mart("in-mumbai")) == len(DAYS)
