"""A partition's source fingerprint as a value: what it counts and hashes, its token, and the
form the ledger records (the scans that compute it are in clickstream.adapters.landing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FINGERPRINT_VERSION = "v2"


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
