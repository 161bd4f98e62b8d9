"""Planner scale: 100 stores x 3 years (109,600 partitions) with ledger classification.

Measures validation + expansion, reading the ledger (SQLite, half the partitions built),
classification, policy selection and lane building: the work the orchestrator does before
its first dispatch, minus the Prefect API reads (one batched call each) and fingerprints.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import date, timedelta

from clickstream import ledger
from clickstream.planning import (
    BackfillRequest,
    build_lanes,
    classify,
    expand_partitions,
    resolve_request,
    select_partitions,
)
from clickstream.registry import Registry, Store

STORES = 100
END = date(2026, 11, 21)
START = END - timedelta(days=3 * 365)


def _registry(stores: int = STORES) -> Registry:
    zones = ["America/New_York", "Asia/Kolkata", "Australia/Sydney", "Europe/Berlin", "UTC"]
    return Registry(
        tuple(
            Store(
                store_id=f"store-{i:03d}",
                display_name=f"Store {i}",
                database=f"store_{i:03d}",
                timezone=zones[i % len(zones)],
                earliest_ds=START,
            )
            for i in range(stores)
        )
    )


def _seed_ledger(partitions) -> None:
    rows = [
        {
            "store_id": sid,
            "ds": ds,
            "status": "completed" if n % 7 else "failed",
            "flow_run_id": None,
            "fingerprint": f"{n}:x",
            "built_at": ledger.utcnow(),
        }
        for n, (sid, ds) in enumerate(partitions)
        if n % 2 == 0
    ]
    with ledger.engine().begin() as conn:
        conn.execute(ledger.partition_builds.insert(), rows)


def run(stores: int = STORES) -> dict:
    registry = _registry(stores)
    request = BackfillRequest(start_date=START, end_date=END, allow_large_backfill=True)
    today = {s.store_id: END + timedelta(days=1) for s in registry}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CLICKSTREAM_LEDGER_URL"] = f"sqlite:///{tmp}/ledger.sqlite"
        resolved = resolve_request(request, registry, global_limit=4, today_by_store=today)
        _seed_ledger(expand_partitions(resolved))

        t0 = time.perf_counter()
        resolved = resolve_request(request, registry, global_limit=4, today_by_store=today)
        partitions = expand_partitions(resolved)
        builds = ledger.read_builds([s.store_id for s in resolved.stores], START, END)
        states = classify(
            partitions,
            build_status={k: b.status for k, b in builds.items()},
            built_fingerprints={k: b.fingerprint for k, b in builds.items()},
            current_fingerprints=None,
            in_flight=[],
        )
        selected = select_partitions(states, "failed")
        lanes = build_lanes(selected, "newest_first")
        seconds = time.perf_counter() - t0
        os.environ.pop("CLICKSTREAM_LEDGER_URL")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "partitions": len(partitions),
        "ledger_rows": len(builds),
        "selected": len(selected),
        "lanes": len(lanes),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_mb, 1),
    }


if __name__ == "__main__":
    print(run())
