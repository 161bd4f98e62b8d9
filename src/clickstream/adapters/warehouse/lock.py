"""The store lock: an ``flock`` on the store's DuckDB lock file, a no-op on Postgres."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from clickstream.adapters.warehouse.rows import WarehouseBusy


@contextlib.contextmanager
def file_lock(path: Path, *, exclusive: bool, wait_seconds: float, what: str) -> Iterator[None]:
    """flock on ``path`` (created if missing), shared or exclusive.

    Retries every 50 ms; after ``wait_seconds`` (``0``: at once) raises
    :class:`WarehouseBusy` naming ``what``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{what}: its warehouse file is in use by a build"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def no_lock() -> Iterator[None]:
    """Postgres: concurrent readers and writers are the server's business."""
    yield
