"""The dbt project on DuckDB: builds over a small generated landing zone.

dbt runs in-process (dbtRunner) with exactly the command line and partition spec the flows
use (clickstream.core.partition_spec); one generated dataset and one warehouse per store are shared by
the whole module (built day by day), and each test touches its own partitions.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from clickstream import settings
from clickstream.adapters.dbt.command import dbt_build_args
from clickstream.core.partition_spec import SPEC_ENV, spec_environment
from clickstream.core.stores import load_registry
from clickstream.core.windows import date_range, partition_window, partition_windows
from clickstream.local.synthetic import add_bad_events, generate

DAYS = date_range(date(2026, 10, 31), date(2026, 11, 2))  # NY falls back on 2026-11-01
# Sydney springs forward on 2026-10-04; built as one batch and day by day below.
BATCH_DAYS = date_range(date(2026, 10, 2), date(2026, 10, 6))
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

    def build(
        self,
        store_id: str,
        days: date | list[date],
        landing: Path | None = None,
        warehouse: Path | None = None,
        callbacks: list | None = None,
        spec: dict | None = None,
    ):
        import os

        from dbt.cli.main import dbtRunner

        store = self.stores[store_id]
        days = [days] if isinstance(days, date) else days
        warehouse = warehouse or self.warehouse
        warehouse.mkdir(parents=True, exist_ok=True)
        args = dbt_build_args(
            store,
            landing_dir=landing or self.landing,
            project_dir=settings.dbt_project_dir(),
            target_path=self.target / warehouse.name / store_id,
        )
        env = spec_environment(store, partition_windows(store.timezone, days))
        if spec is not None:
            env = {SPEC_ENV: json.dumps(spec)}
        saved = {k: os.environ.get(k) for k in (*env, "CLICKSTREAM_WAREHOUSE_DIR")}
        os.environ.update({**env, "CLICKSTREAM_WAREHOUSE_DIR": str(warehouse)})
        try:
            return dbtRunner(callbacks=callbacks or []).invoke(args)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def query(
        self, store_id: str, sql: str, params: list | None = None, warehouse: Path | None = None
    ) -> list[tuple]:
        path = (warehouse or self.warehouse) / f"{self.stores[store_id].database}.duckdb"
        # Default config on purpose: in-process dbt-duckdb shares the instance per file.
        con = duckdb.connect(str(path))
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def mart(self, store_id: str, warehouse: Path | None = None) -> list[tuple]:
        return self.query(
            store_id,
            f"select {MART_COLUMNS} from clickstream.clickstream_daily order by ds",
            warehouse=warehouse,
        )

    def all_sessions(self, store_id: str, warehouse: Path | None = None) -> list[tuple]:
        return self.query(
            store_id,
            "select * from clickstream.int_clickstream__sessions order by ds, session_id",
            warehouse=warehouse,
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
        generate(
            list(proj.stores.values()), BATCH_DAYS[0], BATCH_DAYS[-1], EPD, landing=proj.landing
        )
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


@pytest.mark.parametrize("store_id", ["au-sydney", "us-flagship", "in-mumbai"])
def test_a_batch_builds_exactly_the_rows_of_day_by_day_builds(project, tmp_path, store_id):
    """Several days in one invocation == the same days one by one: every mart and session
    row, including sessions that cross local midnight inside the batch and DST days."""
    one_by_one, batch = tmp_path / "one", tmp_path / "batch"
    for ds in BATCH_DAYS:
        _assert_ok(project.build(store_id, ds, warehouse=one_by_one))
    _assert_ok(project.build(store_id, BATCH_DAYS, warehouse=batch))
    mart = project.mart(store_id, warehouse=batch)
    assert [r[1] for r in mart] == BATCH_DAYS
    assert mart == project.mart(store_id, warehouse=one_by_one)
    sessions = project.all_sessions(store_id, warehouse=batch)
    assert sessions == project.all_sessions(store_id, warehouse=one_by_one)
    # The batch really had sessions running over a local midnight inside it.
    spanning = project.query(
        store_id,
        "select count(*) from clickstream.int_clickstream__sessions s "
        "join clickstream.clickstream_daily d using (store_id, ds) "
        "where s.session_end_ts >= d.window_end_utc - interval 30 minute",
        warehouse=batch,
    )[0][0]
    assert spanning > 0


def test_builds_of_a_store_keep_dbts_partial_parse(project, tmp_path):
    """Only the partition spec changes between partitions: dbt reuses its parse."""
    from dbt_common.events.base_types import EventMsg

    names: list[str] = []

    def record(event: EventMsg) -> None:
        names.append(event.info.name)

    wh = tmp_path / "pp"
    _assert_ok(project.build("in-mumbai", DAYS[0], warehouse=wh))
    _assert_ok(project.build("in-mumbai", DAYS[1], warehouse=wh, callbacks=[record]))
    assert "UnableToPartialParse" not in names
    assert "PartialParsingSkipParsing" in names or "PartialParsingEnabled" in names, names


def test_a_spec_for_another_store_is_refused(project, tmp_path):
    store = project.stores["us-flagship"]
    from clickstream.core.partition_spec import partition_spec

    spec = partition_spec(store, partition_windows(store.timezone, [DAYS[0]]))
    result = project.build("in-mumbai", DAYS[0], warehouse=tmp_path / "x", spec=spec)
    assert not result.success
    assert "bad partition spec" in _messages(result)
    assert "it is for store 'us-flagship' but this build is for 'in-mumbai'" in _messages(result)
