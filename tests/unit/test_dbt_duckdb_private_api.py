"""dbt-duckdb's private API that clickstream.adapters.warehouse.dbt_duckdb relies on is there,
and the installed dbt-duckdb is the exact version pyproject.toml pins (the project's rule: no
private API of a dependency without an exact pin and a test that fails the day they change)."""

from __future__ import annotations

import re
import tomllib

import pytest

from clickstream import settings
from clickstream.adapters.warehouse import dbt_duckdb


def _pyproject_pin() -> str:
    data = tomllib.loads((settings.REPO_ROOT / "pyproject.toml").read_text())
    pins = [
        m.group(1)
        for dep in data["project"]["dependencies"]
        if (m := re.fullmatch(r"dbt-duckdb==([\w.]+)", dep.replace(" ", "")))
    ]
    assert len(pins) == 1, f"pyproject.toml must pin dbt-duckdb exactly (==), found {pins}"
    return pins[0]


def test_pin_matches_pyproject_and_the_installed_version():
    pin = _pyproject_pin()
    assert pin == dbt_duckdb.PINNED_VERSION
    assert dbt_duckdb.installed_version() == pin


def test_connection_manager_has_the_private_attributes():
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    for name in dbt_duckdb.PRIVATE_ATTRIBUTES:
        assert hasattr(DuckDBConnectionManager, name), name
    lock = DuckDBConnectionManager._LOCK
    assert hasattr(lock, "__enter__") and hasattr(lock, "__exit__")
    env = DuckDBConnectionManager._ENV  # None until a connection opens; then has close()
    assert env is None or callable(env.close)


def test_check_passes_on_the_pinned_install():
    dbt_duckdb.check()
    dbt_duckdb.release_dbt_duckdb()  # no connection open here: a no-op, no error


def test_another_version_fails_loudly(monkeypatch):
    dbt_duckdb._connection_manager.cache_clear()
    monkeypatch.setattr(dbt_duckdb, "installed_version", lambda: "1.99.0")
    try:
        with pytest.raises(dbt_duckdb.DbtDuckdbChanged, match=r"dbt-duckdb 1\.99\.0 is installed"):
            dbt_duckdb.check()
        with pytest.raises(dbt_duckdb.DbtDuckdbChanged):
            dbt_duckdb.release_dbt_duckdb()
    finally:
        dbt_duckdb._connection_manager.cache_clear()


def test_missing_attribute_fails_loudly(monkeypatch):
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    dbt_duckdb._connection_manager.cache_clear()
    monkeypatch.delattr(DuckDBConnectionManager, "_ENV")
    try:
        with pytest.raises(dbt_duckdb.DbtDuckdbChanged, match="has no _ENV"):
            dbt_duckdb.check()
    finally:
        dbt_duckdb._connection_manager.cache_clear()


def test_not_installed_is_nothing_to_release(monkeypatch):
    dbt_duckdb._connection_manager.cache_clear()
    monkeypatch.setattr(dbt_duckdb, "installed_version", lambda: None)
    try:
        dbt_duckdb.check()
        dbt_duckdb.release_dbt_duckdb()
    finally:
        dbt_duckdb._connection_manager.cache_clear()
