"""Reading the source: the landing layout, the raw events a partition reads, fingerprints.

The source of a store is its raw events: Parquet landing files on the DuckDB target
(``<landing>/<store_id>/ds=<YYYY-MM-DD>/*.parquet``, one folder per store-local date of
``event_ts``; extra files such as ``late-*.parquet`` may sit next to ``data_0.parquet``), and
the table ``raw.events`` on the Postgres target (loaded from the same files; its fingerprints
are computed in the warehouse database, clickstream.adapters.warehouse.postgres).

A partition's **fingerprint** summarises every raw row in its input range
(:attr:`clickstream.core.windows.Window.input_start` .. ``input_end``: the window plus the session
lookback): the row count, an order-independent hash of every column of every row, and the
latest ``loaded_at``. Any row added, removed or changed inside that range changes it, which
is what makes a built partition **stale**. The build records the fingerprint it read (taken
before dbt runs); planning recomputes it.

Scanning files costs; most of the time nothing changed. On DuckDB the fingerprint therefore
also carries a token of the files it read (name, size, mtime): when the landing folders of a
partition's input range still hold exactly those files, the recorded fingerprint is reused
without opening a file (see :func:`fingerprints`).

Tokens carry a version prefix (``v2:``). Builds recorded by earlier versions of this project
hold a window-only fingerprint without it (``<count>:<max loaded_at>``): those never equal a
current token, so such a partition shows **stale** once and the next catch-up or
``--reprocess stale`` rebuilds it, recording a current fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path

from clickstream import settings

# The raw event schema moved to core.fingerprints (the Postgres warehouse hashes it too);
# re-exported here, where the landing writers import it from.
from clickstream.core.fingerprints import RAW_COLUMN_NAMES as RAW_COLUMN_NAMES
from clickstream.core.fingerprints import RAW_COLUMNS as RAW_COLUMNS
from clickstream.core.fingerprints import (
    Fingerprint,
    Recorded,
    parse_token,
    row_text,
)
from clickstream.core.stores import Store
from clickstream.core.windows import Window, landing_days


# -- landing layout ------------------------------------------------------------------------
def landing_dir(landing: Path | None = None) -> Path:
    return Path(landing) if landing is not None else settings.landing_dir()


def day_dir(landing: Path, store_id: str, ds: date) -> Path:
    """Folder of the store's raw events whose store-local date is ``ds``."""
    return Path(landing) / store_id / f"ds={ds.isoformat()}"


def _parquet_entries(folder: str | Path) -> list[tuple[str, os.DirEntry]]:
    """``folder``'s ``*.parquet`` entries sorted by name, as ``sorted(folder.glob(...))``
    lists them (hidden names and directories included); [] when it is not a folder."""
    try:
        with os.scandir(folder) as entries:
            found = [(e.name, e) for e in entries if e.name.endswith(".parquet")]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    found.sort(key=lambda item: item[0])
    return found


def landing_files(landing: Path, store_id: str, days: Iterable[date]) -> list[Path]:
    files: list[Path] = []
    for ds in sorted(set(days)):
        folder = day_dir(landing, store_id, ds)
        files.extend(folder / name for name, _ in _parquet_entries(folder))
    return files


def _token_line(folder_name: str, name: str, st: os.stat_result) -> bytes:
    return f"{folder_name}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode()


def _token(lines: Sequence[bytes]) -> str:
    digest = hashlib.sha1()
    for line in lines:
        digest.update(line)
    return f"{len(lines)}:{digest.hexdigest()[:20]}"


def files_token(files: Sequence[Path]) -> str:
    """Name, size and mtime of each file: changes whenever a file is added, replaced or removed."""
    return _token([_token_line(f.parent.name, f.name, f.stat()) for f in files])


class _Listing:
    """One store's landing folders, each listed (and its files stat'ed) once per
    :func:`fingerprints` call: neighbouring partitions share folders, since the session
    lookback reaches into the day before. Same files, order and token as
    :func:`landing_files` and :func:`files_token` (``DirEntry.stat()`` follows symlinks
    like ``Path.stat()``)."""

    def __init__(self, landing: Path, store_id: str) -> None:
        self.base = os.path.join(landing, store_id, "ds=")
        self._entries: dict[date, list[tuple[str, os.DirEntry]]] = {}
        self._lines: dict[date, list[bytes]] = {}

    def _folder(self, ds: date) -> list[tuple[str, os.DirEntry]]:
        entries = self._entries.get(ds)
        if entries is None:
            entries = self._entries[ds] = _parquet_entries(self.base + ds.isoformat())
        return entries

    def _read(self, ds: date) -> None:
        tag = "ds=" + ds.isoformat()
        self._lines[ds] = [_token_line(tag, n, e.stat()) for n, e in self._folder(ds)]

    def files(self, days: Iterable[date]) -> list[Path]:
        return [Path(e.path) for ds in sorted(set(days)) for _, e in self._folder(ds)]

    def token(self, days: Sequence[date]) -> str:
        """:func:`files_token` of :func:`landing_files` of these days."""
        lines: list[bytes] = []
        for ds in sorted(set(days)) if len(days) > 1 else days:
            if ds not in self._lines:
                self._read(ds)
            lines += self._lines[ds]
        return _token(lines)


# -- fingerprints --------------------------------------------------------------------------
def fingerprints(
    store: Store,
    windows: Sequence[Window],
    *,
    target: str | None = None,
    landing: Path | None = None,
    recorded: Mapping[date, Recorded] | None = None,
) -> dict[date, Fingerprint]:
    """Current fingerprint of each partition's input range.

    ``recorded`` (DuckDB target): fingerprints the ledger holds. A partition whose landing
    files are exactly the ones recorded keeps its recorded token without a scan; the others
    are scanned together in one query.
    """
    from clickstream.adapters.warehouse import for_target

    if not windows:
        return {}
    in_warehouse = for_target(target or settings.get().dbt_target).raw_fingerprints(store, windows)
    if in_warehouse is not None:  # Postgres: raw.events in the warehouse database
        return in_warehouse
    landing = landing_dir(landing)
    out: dict[date, Fingerprint] = {}
    to_scan: list[Window] = []
    tokens: dict[date, str] = {}
    listing = _Listing(landing, store.store_id)
    for w in windows:
        tokens[w.ds] = listing.token(landing_days(store, w.input_start, w.input_end))
        seen = (recorded or {}).get(w.ds)
        if seen is not None and seen.files == tokens[w.ds] and seen.token:
            count, content = parse_token(seen.token)
            if count is not None:
                out[w.ds] = Fingerprint(count, content, None, tokens[w.ds])
                continue
        to_scan.append(w)
    for ds, fp in _duckdb_fingerprints(store, to_scan, landing, listing).items():
        out[ds] = Fingerprint(fp.event_count, fp.content_hash, fp.max_loaded_at, tokens[ds])
    return out


def _empty() -> Fingerprint:
    return Fingerprint(0, "0", None)


def _duckdb_fingerprints(
    store: Store, windows: Sequence[Window], landing: Path, listing: _Listing | None = None
) -> dict[date, Fingerprint]:
    if not windows:
        return {}
    import duckdb

    result = {w.ds: _empty() for w in windows}
    days: set[date] = set()
    for w in windows:
        days.update(landing_days(store, w.input_start, w.input_end))
    files = (listing or _Listing(landing, store.store_id)).files(days)
    if not files:
        return result
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TEMP TABLE w (ds DATE, lo TIMESTAMP, hi TIMESTAMP)")
        con.executemany(
            "INSERT INTO w VALUES (?, ?, ?)",
            [(w.ds, w.input_start, w.input_end) for w in windows],
        )
        row = row_text("CAST({c} AS VARCHAR)", "\\N")
        rows = con.execute(
            f"""
            SELECT w.ds, count(*), CAST(sum(md5_number_lower({row})) AS VARCHAR),
                max(e.loaded_at)
            FROM read_parquet($files, union_by_name = true) e
            JOIN w ON e.event_ts >= w.lo AND e.event_ts < w.hi
            GROUP BY w.ds
            """,
            {"files": [str(f) for f in files]},
        ).fetchall()
    finally:
        con.close()
    for ds, count, content, max_loaded in rows:
        result[ds] = Fingerprint(int(count), str(content), max_loaded)
    return result
