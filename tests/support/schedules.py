"""The schedules of prefect.yaml, proven on a server whose scheduler is on (issue 19).

Shared by the SQLite and the Postgres profiles (tests/e2e/own/test_schedules.py). What the
scheduler must do is read from prefect.yaml itself, so a schedule added there later is
covered; the fire times it must produce are computed here with zoneinfo and plain datetime
arithmetic (an interval from its anchor, a daily cron in its zone), never with the
project's code or Prefect's schedule classes. Runs are brought forward the way an operator
would (a Scheduled state whose time is now), so the worker runs exactly the run the
scheduler created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import yaml

from tests.support.scenarios import ZONES, Profile, _env, local_today
from tests.support.stack import E2EStack, wait_for

# Prefect's scheduler keeps at least this many future runs per schedule (default setting).
MIN_RUNS = 3
# The scheduler runs every 60 s (and every 5 s for deployments updated just now).
LOOP_SECONDS = 60


@dataclass(frozen=True)
class YamlSchedule:
    deployment: str  # <flow name>/<deployment name>
    parameters: dict  # what a run of this schedule must get
    kind: str  # "interval" | "cron"
    spec: dict  # the schedule's mapping from prefect.yaml

    def fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The first ``count`` fire times at or after ``after`` (aware UTC)."""
        if self.kind == "interval":
            step = timedelta(seconds=float(self.spec["interval"]))
            anchor = datetime.fromisoformat(str(self.spec["anchor_date"])).astimezone(UTC)
            n = -(-(after - anchor) // step)  # ceil
            return [anchor + (n + k) * step for k in range(count)]
        minute, hour, dom, month, dow = str(self.spec["cron"]).split()
        assert (dom, month, dow) == ("*", "*", "*"), f"only daily crons here: {self.spec}"
        zone = ZoneInfo(self.spec.get("timezone") or "UTC")
        out: list[datetime] = []
        day = after.astimezone(zone).date() - timedelta(days=1)
        while len(out) < count:
            for h in sorted(int(x) for x in hour.split(",")):
                for m in sorted(int(x) for x in minute.split(",")):
                    local = datetime(day.year, day.month, day.day, h, m, tzinfo=zone)
                    moment = local.astimezone(UTC)
                    if moment >= after and len(out) < count:
                        out.append(moment)
            day += timedelta(days=1)
        return out


FLOW_OF_ENTRYPOINT = {
    "flows/clickstream_dbt.py:clickstream_dbt_run": "clickstream-dbt-run",
    "flows/backfill.py:clickstream_backfill": "clickstream-backfill",
    "flows/catch_up.py:clickstream_catch_up": "clickstream-catch-up",
}


def active_schedules(project_dir) -> list[YamlSchedule]:
    """Every active schedule in prefect.yaml, as the file says (anchors and merges resolved
    by the YAML loader, as `prefect deploy` resolves them)."""
    doc = yaml.safe_load((project_dir / "prefect.yaml").read_text(encoding="utf-8"))
    out = []
    for dep in doc["deployments"]:
        flow = FLOW_OF_ENTRYPOINT[dep["entrypoint"]]
        for sched in dep.get("schedules") or []:
            if not sched.get("active", True):
                continue
            params = {**(dep.get("parameters") or {}), **(sched.get("parameters") or {})}
            kind = "interval" if "interval" in sched else "cron"
            out.append(YamlSchedule(f"{flow}/{dep['name']}", params, kind, sched))
    return out


async def _upcoming(client, deployment_full_name: str):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    dep = await client.read_deployment_by_name(deployment_full_name)
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )
    return dep, [r for r in runs if r.auto_scheduled]


def upcoming_runs(handle: E2EStack, deployment_full_name: str):
    return handle.api(lambda c: _upcoming(c, deployment_full_name))


def schedules_create_their_runs(handle: E2EStack, deployed_at: datetime) -> dict[str, list]:
    """Within one scheduler loop of `prefect deploy`, every active schedule of prefect.yaml has
    at least MIN_RUNS upcoming runs, at exactly the times the schedule gives and with its
    parameters. Returns deployment -> its upcoming runs."""
    schedules = active_schedules(handle.cfg.project_dir)
    assert {s.deployment for s in schedules} >= {
        "clickstream-catch-up/nightly-catch-up",
        *(f"clickstream-dbt-run/{sid}" for sid in ZONES),
    }
    deadline = deployed_at + timedelta(seconds=LOOP_SECONDS + 30)
    found: dict[str, list] = {}
    for sched in schedules:

        def enough(sched=sched):
            _, runs = upcoming_runs(handle, sched.deployment)
            return runs if len(runs) >= MIN_RUNS else None

        left = max((deadline - datetime.now(UTC)).total_seconds(), 1)
        runs = wait_for(enough, timeout=left, interval=2, what=f"runs of {sched.deployment}")
        observed = datetime.now(UTC)
        times = [r.expected_start_time.astimezone(UTC) for r in runs]
        # The scheduler ran somewhere between the deploy and now; its first run is the
        # first fire time after that moment.
        candidates = {
            tuple(sched.fire_times(moment, len(times))) for moment in (deployed_at, observed)
        }
        assert tuple(times) in candidates, (sched.deployment, times, candidates)
        for run in runs:
            assert run.parameters == sched.parameters, (sched.deployment, run.parameters)
        found[sched.deployment] = runs
    return found


def bring_forward(handle: E2EStack, run_id) -> None:
    """What an operator does to run a scheduled run now: its Scheduled state, time = now."""
    from prefect.states import Scheduled

    async def go(client):
        await client.set_flow_run_state(
            run_id, Scheduled(scheduled_time=datetime.now(UTC)), force=True
        )

    handle.api(go)


def wait_final(handle: E2EStack, run_id, timeout: float = 300):
    from prefect.client.schemas.objects import StateType

    final = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}

    def done():
        run = handle.api(lambda c: c.read_flow_run(run_id))
        return run if run.state_type in final else None

    return wait_for(done, timeout=timeout, interval=1, what=f"run {run_id} to end")


def builds(p: Profile):
    from clickstream.adapters import ledger

    with _env({"CLICKSTREAM_STATE_DIR": str(p.handle.cfg.state_dir), **p.env}):
        return ledger.read_builds()


def dispatches(p: Profile):
    from clickstream.adapters import ledger

    with _env({"CLICKSTREAM_STATE_DIR": str(p.handle.cfg.state_dir), **p.env}):
        return ledger.read_latest_dispatches()


def a_scheduled_store_run_builds_its_day(p: Profile, upcoming: dict, store_id: str) -> None:
    """The store's first scheduled tick, brought forward, runs through the worker and builds
    the store's current local day (zoneinfo), and the row equals the recount."""
    run = upcoming[f"clickstream-dbt-run/{store_id}"][0]
    today = local_today(store_id)
    bring_forward(p.handle, run.id)
    final = wait_final(p.handle, run.id)
    assert final.state_type.value == "COMPLETED", final.state
    build = builds(p)[(store_id, today)]
    assert build.status == "completed" and build.flow_run_id == str(run.id)
    p.assert_rows_match_recount(store_id, [today])


def the_nightly_catch_up_runs_from_its_schedule(p: Profile, upcoming: dict) -> None:
    """The nightly catch-up's first scheduled run, brought forward, catches up the last
    seven complete local days of every store (zoneinfo), its rows equal to the recount."""
    run = upcoming["clickstream-catch-up/nightly-catch-up"][0]
    bring_forward(p.handle, run.id)
    final = wait_final(p.handle, run.id, timeout=600)
    assert final.state_type.value == "COMPLETED", final.state
    assert final.parameters == {"lookback_days": 7, "days_per_run": 7}
    built, sent = builds(p), dispatches(p)
    for store_id in ZONES:
        week = [local_today(store_id) - timedelta(days=n) for n in range(7, 0, -1)]
        for ds in week:
            assert built[(store_id, ds)].status == "completed", (store_id, ds)
            assert sent[(store_id, ds)].orchestrator_run_id == str(run.id), (store_id, ds)
        p.assert_rows_match_recount(store_id, week)


def missed_ticks_run_once(p: Profile, store_id: str) -> None:
    """Two regular runs of a store that were due while nothing ran (an outage): the older is
    skipped, saying which newer run supersedes it, and builds nothing."""
    from prefect.states import Scheduled

    now = datetime.now(UTC)

    async def create(client):
        dep = await client.read_deployment_by_name(f"clickstream-dbt-run/{store_id}")
        made = []
        for minutes in (50, 20):
            made.append(
                await client.create_flow_run_from_deployment(
                    dep.id,
                    state=Scheduled(scheduled_time=now - timedelta(minutes=minutes)),
                    name=f"missed-tick-{minutes}-min-ago",
                )
            )
        return made

    older, newer = p.handle.api(create)
    ended = {r.id: wait_final(p.handle, r.id) for r in (older, newer)}
    assert ended[older.id].state_type.value == "COMPLETED", ended[older.id].state
    assert "superseded by the newer regular run" in (ended[older.id].state.message or "")
    assert all(b.flow_run_id != str(older.id) for b in builds(p).values())
    assert ended[newer.id].state_type.value == "COMPLETED", ended[newer.id].state
