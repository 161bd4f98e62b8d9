"""A partition's source fingerprint as a value: what it counts and hashes, its token, and the
form the ledger records (the scans that compute it: clickstream.adapters.landing on landing
files, the Postgres warehouse on raw.events). Also the raw event schema both scans hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FINGERPRINT_VERSION = "v2"

# The raw event schema (landing files and raw.events), in a fixed order: a change to any
# column of a row changes that row's hash in the fingerprint.
RAW_COLUMNS = (
    "event_id VARCHAR",
    "store_id VARCHAR",
    "user_id VARCHAR",
    "session_key VARCHAR",
    "event_type VARCHAR",
    "event_ts TIMESTAMP",
    "loaded_at TIMESTAMP",
    "product_id VARCHAR",
    "order_id VARCHAR",
    "revenue_usd DECIMAL(12,2)",
    "device VARCHAR",
)
RAW_COLUMN_NAMES = tuple(c.split()[0] for c in RAW_COLUMNS)


def row_text(sql_cast: str, null: str) -> str:
    """SQL text of one raw row, every column cast by ``sql_cast`` (``{c}`` = the column) and
    NULL written as ``null``, joined with ``|``: what a fingerprint hashes per row."""
    return " || '|' || ".join(
        f"coalesce({sql_cast.format(c=c)}, '{null}')" for c in RAW_COLUMN_NAMES
    )


@dataclass(frozen=True)
class Fingerprint:
    """What the source holds for one partition's input range (raw rows, duplicates included)."""

    event_count: int
    content_hash: str  # order-independent hash of every raw row in the range
    max_loaded_at: datetime | None
    files: str | None = None  # token of the landing files read (DuckDB target); None on Postgres

    @property
    def token(self) -> str:
        return f"{FINGERPRINT_VERSION}:{self.event_count}:{self.content_hash}"


@dataclass(frozen=True)
class Recorded:
    """A fingerprint as the ledger recorded it for a completed build."""

    token: str | None
    files: str | None


def parse_token(token: str) -> tuple[int | None, str]:
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != FINGERPRINT_VERSION:
        return None, ""
    try:
        return int(parts[1]), parts[2]
    except ValueError:
        return None, ""
