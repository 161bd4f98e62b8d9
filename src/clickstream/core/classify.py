"""Each partition's state from the ledger, the warehouse rows, the source fingerprints and the
runs in flight; what a reprocess policy selects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clickstream.core.states import POLICY_STATES, PartitionKey, PartitionState


def classify(
    partitions: Iterable[PartitionKey],
    *,
    build_status: Mapping[PartitionKey, str],
    built_fingerprints: Mapping[PartitionKey, str | None],
    current_fingerprints: Mapping[PartitionKey, str] | None,
    in_flight: Iterable[PartitionKey],
    built_counts: Mapping[PartitionKey, tuple[int | None, int | None]] | None = None,
    mart_counts: Mapping[PartitionKey, tuple[int, int]] | None = None,
    mart_checked: Iterable[str] = (),
) -> dict[PartitionKey, PartitionState]:
    """State of each partition. In flight wins; then the ledger, checked against the mart;
    then the fingerprint.

    - ``current_fingerprints`` None: not computed, nothing is called stale by fingerprint.
    - ``mart_counts``: (events, sessions) of the mart rows found for the stores in
      ``mart_checked``. A build the ledger calls completed whose row is gone is **missing**;
      one whose row no longer holds the counts the build recorded is **stale**. Stores not
      in ``mart_checked`` (busy or unreadable) keep the ledger's word.
    """
    flying = set(in_flight)
    checked = set(mart_checked)
    mart = mart_counts or {}
    counts = built_counts or {}
    out: dict[PartitionKey, PartitionState] = {}
    for key in partitions:
        status = build_status.get(key)
        row_checked = key[0] in checked
        if key in flying:
            state = PartitionState.IN_FLIGHT
        elif status is None:
            state = PartitionState.MISSING
        elif status != "completed":
            state = PartitionState.FAILED
        elif row_checked and key not in mart:
            state = PartitionState.MISSING  # the ledger says built, the row is gone
        else:
            row_changed = row_checked and counts.get(key) != mart[key]
            source_changed = (
                current_fingerprints is not None
                and key in current_fingerprints
                and built_fingerprints.get(key) != current_fingerprints[key]
            )
            stale = row_changed or source_changed
            state = PartitionState.STALE if stale else PartitionState.COMPLETED
        out[key] = state
    return out


def select_partitions(
    states: Mapping[PartitionKey, PartitionState], policy: str
) -> list[PartitionKey]:
    """Partitions the policy runs. In-flight partitions are never selected."""
    wanted = POLICY_STATES[policy]
    return [key for key, state in states.items() if state in wanted]
