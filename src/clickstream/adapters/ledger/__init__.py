"""The partition ledger: what was built, when, from which source slice, and what was dispatched.

It lives outside the store warehouses on purpose: DuckDB lets one process open a file at a
time (readers included), and planning, ``clickstream status`` and catch-up must read the
ledger while any store's dbt run holds its warehouse. Default: a SQLite file in WAL mode under
``.clickstream/``; scale path: ``CLICKSTREAM_LEDGER_URL=postgresql+psycopg2://...``.

Modules: ``schema`` (tables, schema version, migrations), ``migrate`` (a ledger brought to that
version when an engine opens it), ``engine`` (URL, engines, retries), ``builds``,
``dispatches``, ``pauses`` (one table's reads and writes each). Callers use this
package: ``from clickstream.adapters import ledger; ledger.record_builds(...)``. It may import
clickstream.core, settings and names only (an adapter). ``ledger.engine`` is the function
(the engine of the configured ledger), not the submodule of that name.
"""

from clickstream.adapters.ledger.builds import (
    read_build_summaries,
    read_builds,
    record_builds,
)
from clickstream.adapters.ledger.dispatches import (
    dispatch_claim,
    read_latest_dispatches,
    read_planned_at,
    record_dispatches,
)
from clickstream.adapters.ledger.engine import engine, ledger_url, open_engine, utcnow
from clickstream.adapters.ledger.migrate import LedgerSchemaError
from clickstream.adapters.ledger.pauses import clear_pause, read_pauses, record_pause
from clickstream.adapters.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    dispatch_locks,
    metadata,
    partition_builds,
    partition_dispatches,
    schedule_pauses,
)
from clickstream.core.records import BuildRecord, BuildSummary, DispatchRecord

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BuildRecord",
    "BuildSummary",
    "DispatchRecord",
    "LedgerSchemaError",
    "clear_pause",
    "dispatch_claim",
    "dispatch_locks",
    "engine",
    "ledger_url",
    "metadata",
    "open_engine",
    "partition_builds",
    "partition_dispatches",
    "read_build_summaries",
    "read_builds",
    "read_latest_dispatches",
    "read_pauses",
    "read_planned_at",
    "record_builds",
    "record_dispatches",
    "record_pause",
    "schedule_pauses",
    "utcnow",
]
