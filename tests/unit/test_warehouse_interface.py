"""The warehouse interface: one implementation per dbt target, chosen from the settings; the
module-level names callers import still delegate to it."""

from __future__ import annotations

from datetime import date

import pytest

from clickstream.adapters import warehouse as wh
from clickstream.adapters.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WarehouseBusy,
    for_target,
)
from clickstream.core.stores import load_registry


@pytest.fixture
def store():
    return load_registry().get("us-flagship")


def test_both_implementations_provide_the_interface():
    for target, cls in (("duckdb", DuckDBWarehouse), ("postgres", PostgresWarehouse)):
        impl = for_target(target)
        assert isinstance(impl, cls) and isinstance(impl, Warehouse)
        assert impl.target == target
    with pytest.raises(ValueError, match="unknown dbt target"):
        for_target("sqlite")


def test_warehouse_follows_the_setting(monkeypatch):
    monkeypatch.delenv("CLICKSTREAM_DBT_TARGET", raising=False)
    assert wh.warehouse().target == "duckdb" == wh.dbt_target()
    monkeypatch.setenv("CLICKSTREAM_DBT_TARGET", "postgres")
    assert wh.warehouse().target == "postgres" == wh.dbt_target()


def test_duckdb_lock_and_view(tmp_path, monkeypatch, store):
    monkeypatch.setenv("CLICKSTREAM_WAREHOUSE_DIR", str(tmp_path))
    monkeypatch.delenv("CLICKSTREAM_DBT_TARGET", raising=False)
    d = date(2026, 1, 1)
    assert wh.duckdb_path(store) == tmp_path / f"{store.database}.duckdb"
    assert wh.dbt_environment() == {"CLICKSTREAM_WAREHOUSE_DIR": str(tmp_path)}
    assert wh.read_mart_rows(store, d, d) == {}  # no file yet
    view = wh.read_mart_view([store], d, d)
    assert view.checked == {store.store_id} and not view.rows and not view.unchecked
    with wh.store_lock(store, exclusive=True, wait_seconds=0):
        with pytest.raises(WarehouseBusy), wh.store_lock(store, exclusive=False, wait_seconds=0):
            pass
        view = wh.read_mart_view([store], d, d)
        assert view.unchecked == {store.store_id: "a build holds its warehouse file"}
    assert (tmp_path / f"{store.database}.duckdb.lock").exists()


def test_postgres_lock_is_a_no_op(tmp_path, monkeypatch, store):
    monkeypatch.setenv("CLICKSTREAM_WAREHOUSE_DIR", str(tmp_path))
    monkeypatch.setenv("CLICKSTREAM_DBT_TARGET", "postgres")
    with (
        wh.store_lock(store, exclusive=True, wait_seconds=0),
        wh.store_lock(store, exclusive=True, wait_seconds=0),
    ):
        pass
    assert not list(tmp_path.iterdir())
    assert wh.dbt_environment() == {"CLICKSTREAM_WAREHOUSE_DIR": str(tmp_path)}


def test_pg_dsn_from_settings(monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_PG_HOST", "db")
    monkeypatch.setenv("CLICKSTREAM_PG_PORT", "6543")
    monkeypatch.setenv("CLICKSTREAM_PG_USER", "u")
    monkeypatch.delenv("CLICKSTREAM_PG_PASSWORD", raising=False)
    monkeypatch.setenv("CLICKSTREAM_PG_DATABASE", "x")
    assert wh.pg_dsn() == "postgresql://u@db:6543/x"
    assert wh.pg_url("y", "asyncpg") == "postgresql+asyncpg://u@db:6543/y"
