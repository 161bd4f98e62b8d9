"""What planning reads once, at the start: the ledger, the runs in flight, the fingerprints and
the warehouse rows, classified; `plan` validates, snapshots and selects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from prefect.client.orchestration import PrefectClient, get_client

from clickstream.adapters import ledger
from clickstream.adapters.dbt.project import project_vars
from clickstream.adapters.landing import fingerprints
from clickstream.adapters.prefect_api import (
    read_active_store_runs,
    read_global_limit,
    with_api_retries,
)
from clickstream.adapters.warehouse import MartView, read_mart_view
from clickstream.core.child_runs import run_partitions
from clickstream.core.classify import classify, select_partitions
from clickstream.core.fingerprints import Recorded
from clickstream.core.requests import (
    BackfillRequest,
    CatchUpRequest,
    ResolvedRequest,
    expand_partitions,
    resolve_request,
)
from clickstream.core.states import PartitionKey, PartitionState
from clickstream.core.stores import Registry, load_registry
from clickstream.core.windows import partition_windows


@dataclass
class Snapshot:
    """Everything planning needs, read once at the start."""

    states: dict[PartitionKey, PartitionState]
    builds: dict[PartitionKey, ledger.BuildSummary]
    known_runs: set[str]  # runs known to exist: they recorded a build, or are active
    in_flight_runs: dict[PartitionKey, str]  # partition -> flow run id (several days may share one)
    mart: MartView = field(default_factory=MartView)
    taken_at: datetime = field(default_factory=ledger.utcnow)
    active_runs: set[str] = field(default_factory=set)  # store runs not ended when planning

    def warehouse_note(self) -> str:
        """What the plan could and could not check against the warehouse, in a line."""
        note = f"warehouse check: {len(self.mart.checked)} store(s) read"
        if self.mart.unchecked:
            busy = ", ".join(f"{s} ({why})" for s, why in sorted(self.mart.unchecked.items()))
            note += f"; not checked, the ledger's word kept: {busy}"
        return note


async def take_snapshot(
    client: PrefectClient,
    resolved: ResolvedRequest,
    *,
    with_fingerprints: bool = True,
) -> Snapshot:
    taken_at = ledger.utcnow()
    partitions = expand_partitions(resolved)
    store_ids = [s.store_id for s in resolved.stores]
    start, end = resolved.start_date, resolved.end_date
    builds = ledger.read_build_summaries(store_ids, start, end)
    # In flight: every non-terminal run of the store flow, whoever created it, by the days its
    # parameters name (a dispatched child names its days too). The dispatch history is read
    # per run right before dispatching (Dispatcher._submit_ready; core.claim decides), not
    # here: for a large backfill it is as big as the ledger and planning needs none of it.
    active = await with_api_retries(
        lambda: read_active_store_runs(client), what="reading active store runs"
    )
    known_runs = {b.flow_run_id for b in builds.values() if b.flow_run_id}
    known_runs |= {str(r.id) for r in active}
    wanted = set(partitions)
    in_flight: dict[PartitionKey, str] = {}
    for run in active:
        found_days = run_partitions(run.parameters)
        if found_days is None:
            continue
        sid, days = found_days
        # days None: a full refresh, which rebuilds the whole store.
        keys = [k for k in partitions if k[0] == sid] if days is None else [(sid, d) for d in days]
        for key in keys:
            if key in wanted and key not in in_flight:
                in_flight[key] = str(run.id)

    current: dict[PartitionKey, str] | None = None
    if with_fingerprints:
        current = {}
        for store in resolved.stores:
            built = {
                ds: builds[(store.store_id, ds)]
                for ds in resolved.dates_by_store[store.store_id]
                if (store.store_id, ds) in builds
            }
            if not built:
                continue
            recorded = {ds: Recorded(b.fingerprint, b.source_files) for ds, b in built.items()}
            windows = partition_windows(store.timezone, built)
            for ds, fp in fingerprints(store, windows, recorded=recorded).items():
                current[(store.store_id, ds)] = fp.token
    mart = read_mart_view(resolved.stores, start, end) if start is not None else MartView()
    states = classify(
        partitions,
        build_status={k: b.status for k, b in builds.items()},
        built_fingerprints={k: b.fingerprint for k, b in builds.items()},
        current_fingerprints=current,
        in_flight=in_flight.keys(),
        built_counts={k: (b.events, b.sessions) for k, b in builds.items()},
        mart_counts={k: (r.events, r.sessions) for k, r in mart.rows.items()},
        mart_checked=mart.checked,
    )
    return Snapshot(
        states, builds, known_runs, in_flight, mart, taken_at, {str(r.id) for r in active}
    )


async def plan(
    request: BackfillRequest | CatchUpRequest,
    *,
    registry: Registry | None = None,
    client: PrefectClient | None = None,
    for_status: bool = False,
) -> tuple[ResolvedRequest, Snapshot, list[PartitionKey]]:
    """Validate, snapshot and select. Raises BackfillInputError before anything is created."""
    registry = registry or load_registry()
    own_client = client is None
    client = client or get_client()
    try:
        if own_client:
            await client.__aenter__()
        limit = await with_api_retries(
            lambda: read_global_limit(client), what="reading the dbt-global limit"
        )
        if for_status:  # a status view needs no limit and dispatches nothing
            limit = limit or 1
            request = replace(request, max_parallel=1)
        # The dbt project's session gap too (not for a status view: it builds nothing).
        dbt_vars = None if for_status else project_vars()
        resolved = resolve_request(request, registry, global_limit=limit, dbt_vars=dbt_vars)
        snapshot = await take_snapshot(client, resolved)
        selected = select_partitions(snapshot.states, resolved.reprocess)
        return resolved, snapshot, selected
    finally:
        if own_client:
            await client.__aexit__(None, None, None)
