"""Per-store clickstream backfill system."""
