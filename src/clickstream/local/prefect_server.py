"""``prefect server start`` with SQLite transactions that take the write lock up front.

``python -m clickstream.local.prefect_server server start ...`` is the ``prefect`` command with one
change, made before the server imports anything else: on SQLite, every explicit transaction
of the server (``db.session_context(begin_transaction=True)``) starts with ``BEGIN
IMMEDIATE`` instead of ``BEGIN DEFERRED``. The local stack (``clickstream.local.stack``) starts
its server this way.

Why (Prefect 3.8.8, ``prefect/server/database/configurations.py``): the SQLite database is
in WAL mode with ``busy_timeout = 60000``, and ``AioSqliteConfiguration.begin_transaction``
emits ``BEGIN DEFERRED`` unless the caller passes ``with_for_update=True``. A deferred
transaction that reads and then writes (trigger evaluation: ``ensure_bucket`` reads the
bucket, then ``increment_bucket``/``start_new_bucket`` upsert it; the worker channel's
heartbeat: read the pool, then upsert the worker) cannot be upgraded to a writer when
another connection of the same server (the event persister, the task run recorder, an API
request writing logs or states) committed after its read began: SQLite returns SQLITE_BUSY
at once, without waiting for the busy timeout, and Python raises ``sqlite3.OperationalError:
database is locked``. ``BEGIN IMMEDIATE`` takes the write lock before the first read, so
such a transaction waits (up to the 60 s busy timeout) for the other writer instead of
failing. Prefect does exactly this at the call sites it has fixed (``with_for_update=True``
in ``models/deployments.py``, ``api/flow_runs.py``, ``services/db_vacuum.py``, with the same
explanation); no setting selects it for the rest, and no setting can fix it otherwise:
``PREFECT_API_DATABASE_TIMEOUT`` and the busy timeout only govern waits SQLite does, and the
pool settings are not applied to SQLite. SQLite has one writer at a time anyway, so taking
the lock first costs only read concurrency inside such write transactions; plain reads
(sessions without a transaction) are unchanged.

PostgreSQL servers are unchanged (the patch touches only the SQLite configuration class).
"""

from __future__ import annotations

import contextlib
import sys


def sqlite_transactions_begin_immediate() -> None:
    """Make every explicit SQLite transaction of this process ``BEGIN IMMEDIATE``."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "_clickstream_immediate", False):
        return

    @contextlib.asynccontextmanager
    async def begin_transaction(self, session, with_for_update: bool = False):
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_transaction._clickstream_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main() -> int:
    sqlite_transactions_begin_immediate()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    return app()


if __name__ == "__main__":
    sys.exit(main())
