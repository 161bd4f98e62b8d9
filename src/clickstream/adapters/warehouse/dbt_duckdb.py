"""The one place that touches dbt-duckdb's private API, guarded by its exact version pin.

dbt-duckdb keeps one DuckDB connection open for the life of the process, to reuse it
(``DuckDBConnectionManager._ENV``, guarded by ``DuckDBConnectionManager._LOCK``). A run's
process lives on for a moment after it reports its final state, and while it holds the file,
the next build of the store (another process) cannot open it and planning cannot read it.
So a build closes that connection (:func:`release_dbt_duckdb`) while it still holds the
store's lock.

Those attributes are private: the project relies on them only with dbt-duckdb pinned
exactly (:data:`PINNED_VERSION`, the pin in pyproject.toml) and fails loudly, before a build
starts (:func:`check`), when another version is installed or the attributes are gone.
tests/unit/test_dbt_duckdb_private_api.py fails the day either changes, and
tests/harness/test_store_flow.py opens the file from another process right after a build.
"""

from __future__ import annotations

import functools
from importlib import metadata

PINNED_VERSION = "1.11.1"  # == pyproject.toml's "dbt-duckdb==..." (a unit test checks it)
PRIVATE_ATTRIBUTES = ("_ENV", "_LOCK")


class DbtDuckdbChanged(RuntimeError):
    """The installed dbt-duckdb is not the version whose private API this module uses."""


def installed_version() -> str | None:
    """dbt-duckdb's installed version; None when it is not installed (Postgres-only)."""
    try:
        return metadata.version("dbt-duckdb")
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _connection_manager() -> type | None:
    version = installed_version()
    if version is None:
        return None
    if version != PINNED_VERSION:
        raise DbtDuckdbChanged(
            f"dbt-duckdb {version} is installed, but clickstream.adapters.warehouse.dbt_duckdb "
            f"relies on private attributes of dbt-duckdb {PINNED_VERSION} "
            "(DuckDBConnectionManager._ENV/_LOCK): install the pinned version (make setup), "
            "or check those attributes in the new one and move the pin in pyproject.toml and "
            "PINNED_VERSION together"
        )
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    missing = [a for a in PRIVATE_ATTRIBUTES if not hasattr(DuckDBConnectionManager, a)]
    if missing:
        raise DbtDuckdbChanged(
            f"dbt-duckdb {version}: DuckDBConnectionManager has no {', '.join(missing)}; "
            "clickstream.adapters.warehouse.dbt_duckdb cannot release its connection"
        )
    return DuckDBConnectionManager


def check() -> None:
    """Raise :class:`DbtDuckdbChanged` unless the pinned dbt-duckdb (or none) is installed."""
    _connection_manager()


def release_dbt_duckdb() -> None:
    """Close dbt-duckdb's process-wide connection to the store's file (if it has one).

    The build calls this while it still holds the store's lock."""
    manager = _connection_manager()
    if manager is None:  # the Postgres-only install has no dbt-duckdb
        return
    with manager._LOCK:
        env, manager._ENV = manager._ENV, None
    if env is not None:
        env.close()
