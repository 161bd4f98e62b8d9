"""The one function that runs a dbt build of a store's days: it owns the environment dbt
reads (the partition spec, the warehouse folder), the store's warehouse lock and the
read-back of the rows it built. The store flow and the benchmark both call it.

Setting ``os.environ`` around the invocation is deliberate and confined here: dbt's profile
and macros read their inputs from the environment (``CLICKSTREAM_PARTITION_SPEC``,
``CLICKSTREAM_WAREHOUSE_DIR``), so that ``--vars`` stay the same for every build of a store
and dbt's partial parsing survives from one partition to the next.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime

from clickstream import settings
from clickstream.adapters.dbt.command import dbt_build_args
from clickstream.adapters.dbt.runner import DbtOutcome, invoke_dbt
from clickstream.adapters.warehouse import for_target
from clickstream.core.partition_spec import spec_environment
from clickstream.core.states import DbtMode
from clickstream.core.stores import Store
from clickstream.core.windows import Window

# A build waits this long for planning or status to finish reading its warehouse file.
WAREHOUSE_LOCK_WAIT_SECONDS = 120


@dataclass(frozen=True)
class BuildResult:
    counts: dict[date, dict[str, int]]  # per day: mart_rows, events, sessions
    outcome: DbtOutcome
    work_started_at: datetime  # naive UTC, inside the slot and the lock
    work_ended_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]):
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


def build_days(
    store: Store,
    windows: Sequence[Window],
    *,
    mode: DbtMode,
    full_refresh: bool = False,
    slot: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    logger: logging.Logger | logging.LoggerAdapter,
) -> BuildResult:
    """Build ``windows`` (days of ``store``) in one dbt invocation and read their rows back.

    ``slot``: what to hold around dbt besides the store's warehouse lock (the store flow
    passes the ``dbt-global`` concurrency slot; the benchmark, which has no server, none).
    Raises :class:`clickstream.adapters.dbt.runner.DbtBuildError` naming failing nodes.
    """
    cfg = settings.get()
    args = dbt_build_args(
        store,
        landing_dir=cfg.landing,
        project_dir=cfg.dbt_project,
        target_path=cfg.state / "dbt-target" / store.store_id,
        full_refresh=full_refresh,
        target=cfg.dbt_target,
    )
    warehouse = for_target(cfg.dbt_target)
    cfg.warehouse.mkdir(parents=True, exist_ok=True)
    env = {**warehouse.dbt_environment(), **spec_environment(store, windows)}
    days = [w.ds for w in windows]
    with (
        slot(),
        warehouse.store_lock(store, exclusive=True, wait_seconds=WAREHOUSE_LOCK_WAIT_SECONDS),
    ):
        started = _utcnow()
        try:
            with _environment(env):
                outcome = invoke_dbt(args, mode=mode, project_dir=cfg.dbt_project, logger=logger)
            counts = warehouse.partition_counts(store, days)
        finally:
            warehouse.release_dbt()  # DuckDB: dbt-duckdb's connection to the file
            ended = _utcnow()
    return BuildResult(counts, outcome, started, ended)
