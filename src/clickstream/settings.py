"""Every ``CLICKSTREAM_*`` setting: its type, default and meaning, read in this one place.

Read fresh on every call (:func:`get`): flow runs are forked from a warm interpreter that
imported this package long before the run's environment was set, so nothing here is cached.
Paths default to the repository's folders; all generated state lives under one git-ignored
folder, ``.clickstream/`` at the repository root.

Besides this module, only three places read the environment: the launcher (standard
library only, ``CLICKSTREAM_WARM_SOCKET``), the warm server's fork (it installs the run's
environment) and the one function that invokes dbt (it hands dbt its partition spec).
tests/unit/test_layout.py checks that.

Must not import anything of this package but :mod:`clickstream.names`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

DbtTarget = Literal["duckdb", "postgres"]
DBT_TARGETS: tuple[str, ...] = ("duckdb", "postgres")


class Settings(BaseSettings):
    """The project's configuration. Environment variable = ``CLICKSTREAM_`` + field name."""

    model_config = SettingsConfigDict(env_prefix="CLICKSTREAM_", extra="ignore", frozen=True)

    # -- where things live -----------------------------------------------------------------
    project_dir: Path | None = Field(
        None, description="Repository root (prefect.yaml, stores/, dbt/). Default: this checkout."
    )
    state_dir: Path | None = Field(
        None,
        description="Generated local state: landing files, warehouses, ledger, Prefect home, "
        "logs, PIDs. Default: <project>/.clickstream.",
    )
    stores_dir: Path | None = Field(None, description="Store registry. Default: <project>/stores.")
    landing_dir: Path | None = Field(
        None,
        description="Raw events as Parquet: <landing>/<store_id>/ds=<YYYY-MM-DD>/*.parquet. "
        "Default: <state>/landing.",
    )
    warehouse_dir: Path | None = Field(
        None,
        description="One DuckDB file per store: <warehouse>/<database>.duckdb. "
        "Default: <state>/warehouse.",
    )
    ledger_url: str | None = Field(
        None,
        description="Partition ledger, a SQLAlchemy URL. Default: sqlite:///<state>/ledger.sqlite.",
    )

    # -- the warehouse -----------------------------------------------------------------------
    dbt_target: DbtTarget = Field("duckdb", description="dbt target: duckdb or postgres.")
    pg_host: str = Field("127.0.0.1", description="Postgres warehouse host.")
    pg_port: int = Field(5432, ge=1, le=65535, description="Postgres warehouse port.")
    pg_user: str = Field("postgres", description="Postgres warehouse user.")
    pg_password: SecretStr = Field(
        SecretStr(""), description="Postgres warehouse password (from your secret store)."
    )
    pg_database: str = Field("clickstream", description="Postgres warehouse database.")

    # -- the Prefect server of the local stack's scale profile -------------------------------
    prefect_database_url: str | None = Field(
        None,
        description="Prefect server database of `make up PROFILE=postgres`. Default: the "
        "Postgres warehouse server, database CLICKSTREAM_PREFECT_PG_DATABASE.",
    )
    prefect_pg_database: str = Field(
        "prefect_clickstream", description="Database of the Prefect server (postgres profile)."
    )
    prefect_retention_days: float = Field(
        7,
        gt=1 / 24,
        description="Days the local stack's Prefect server keeps ended flow runs (its vacuum).",
    )
    port: int = Field(4200, ge=1, le=65535, description="Port of `clickstream stack up`.")

    # -- runs ----------------------------------------------------------------------------------
    dbt_run_timeout_seconds: int = Field(
        3600, ge=1, description="Timeout of one store flow run (a hung dbt run frees its slot)."
    )
    dbt_slot_lease_seconds: float = Field(
        120,
        gt=0,
        description="Lease of a dbt-global slot: how long a dead holder keeps it (renewed "
        "every 3/4 of it while alive).",
    )
    poll_seconds: float = Field(
        0.5, gt=0, description="How often the orchestrator looks at its child runs."
    )

    # -- read elsewhere, declared here so every variable is in one list --------------------
    warm_socket: str | None = Field(
        None,
        description="Warm server socket the launcher forks runs from (set by `clickstream "
        "stack` for its workers; read by clickstream.launch). Unset: cold start.",
    )
    warm_preload: str | None = Field(
        None, description="Warm server: comma-separated modules to preload instead of its list."
    )
    warm_dbt: str = Field("1", description='Warm server: "0" skips its dbt parse warm-up.')
    warm_entry: str | None = Field(
        None, description="Warm server: the module a forked run executes (default prefect.engine)."
    )
    partition_spec: str | None = Field(
        None,
        description="The days one dbt invocation builds (JSON), set by the invocation for dbt "
        "(dbt/macros/clickstream_window.sql). Never set it yourself.",
    )

    # -- derived paths -------------------------------------------------------------------------
    @property
    def project(self) -> Path:
        return self.project_dir.resolve() if self.project_dir else REPO_ROOT

    @property
    def state(self) -> Path:
        return self.state_dir.resolve() if self.state_dir else self.project / ".clickstream"

    @property
    def stores(self) -> Path:
        return self.stores_dir.resolve() if self.stores_dir else self.project / "stores"

    @property
    def landing(self) -> Path:
        return self.landing_dir.resolve() if self.landing_dir else self.state / "landing"

    @property
    def warehouse(self) -> Path:
        return self.warehouse_dir.resolve() if self.warehouse_dir else self.state / "warehouse"

    @property
    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{self.state / 'ledger.sqlite'}"

    @property
    def dbt_project(self) -> Path:
        return self.project / "dbt"

    @property
    def prefect_yaml(self) -> Path:
        return self.project / "prefect.yaml"


_last: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def get() -> Settings:
    """The settings as the environment says now.

    Parsed again whenever a ``CLICKSTREAM_*`` variable changed since the last call (warm-forked
    runs, tests), otherwise the last parse is returned: parsing costs about 1 ms, comparing
    the variables a few microseconds, and planning asks hundreds of times."""
    global _last
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("CLICKSTREAM_")))
    if _last is None or _last[0] != key:
        _last = (key, Settings())
    return _last[1]


# Short forms for the paths, as most callers want one of them.
def project_dir() -> Path:
    return get().project


def state_dir() -> Path:
    return get().state


def stores_dir() -> Path:
    return get().stores


def landing_dir() -> Path:
    return get().landing


def warehouse_dir() -> Path:
    return get().warehouse


def dbt_project_dir() -> Path:
    return get().dbt_project


def prefect_yaml_path() -> Path:
    return get().prefect_yaml


def inherited_path() -> str:
    """The ``PATH`` this process was given, for the processes the local stack starts."""
    return os.environ.get("PATH", "")
