"""The store run's decisions (pure): which days, which dbt invocations, which days to skip."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from clickstream.core.fingerprints import Fingerprint
from clickstream.core.records import BuildRecord
from clickstream.core.states import MAX_DAYS_PER_RUN
from clickstream.core.store_run_plan import (
    PartitionInputError,
    already_built,
    full_refresh_days,
    invocations,
    requested_days,
)
from clickstream.core.stores import load_registry

D = date
NY = load_registry().get("us-flagship")
TODAY = D(2026, 11, 23)


def test_requested_days_default_to_today_and_span_ds_to_ds_end():
    assert requested_days(NY, None, None, TODAY) == [TODAY]
    assert requested_days(NY, D(2026, 11, 1), None, TODAY) == [D(2026, 11, 1)]
    assert requested_days(NY, D(2026, 11, 1), D(2026, 11, 3), TODAY) == [
        D(2026, 11, 1),
        D(2026, 11, 2),
        D(2026, 11, 3),
    ]


@pytest.mark.parametrize(
    ("ds", "ds_end", "words"),
    [
        (D(2026, 11, 3), D(2026, 11, 1), "ds_end 2026-11-01 is before ds 2026-11-03"),
        (D(2026, 11, 24), None, "ds 2026-11-24 is after us-flagship's current local date"),
        (D(2026, 11, 20), D(2026, 11, 24), "ds_end 2026-11-24 is after"),
        (D(2025, 12, 31), None, "before us-flagship's earliest date 2026-01-01"),
        (D(2026, 1, 1), D(2026, 3, 1), f"60 days in one run; at most {MAX_DAYS_PER_RUN}"),
    ],
)
def test_requested_days_refuse_bad_input(ds, ds_end, words):
    with pytest.raises(PartitionInputError, match=words):
        requested_days(NY, ds, ds_end, TODAY)


def test_full_refresh_takes_every_known_day_and_the_requested_ones():
    assert full_refresh_days([D(2026, 5, 1)], [D(2026, 6, 1), D(2026, 4, 1), D(2026, 5, 1)]) == [
        D(2026, 4, 1),
        D(2026, 5, 1),
        D(2026, 6, 1),
    ]


def test_invocations_are_at_most_31_days_each_in_order():
    days = [D(2026, 1, 1) + timedelta(days=n) for n in range(70)]
    groups = invocations(list(reversed(days)))
    assert [len(g) for g in groups] == [31, 31, 8]
    assert [d for g in groups for d in g] == days


def build(status="completed", run="other", started=datetime(2026, 11, 23, 10), token="v2:1:a"):
    return BuildRecord(
        store_id="us-flagship",
        ds=D(2026, 11, 1),
        status=status,
        flow_run_id=run,
        fingerprint=token,
        built_at=started,
        started_at=started,
    )


@pytest.mark.parametrize(
    ("record", "skipped"),
    [
        (build(), True),  # another run, after the request, same data: built already
        (build(started=datetime(2026, 11, 23, 8)), False),  # built before it was requested
        (build(token="v2:2:b"), False),  # the data changed since
        (build(status="failed"), False),
        (build(run="me"), False),  # our own earlier build
        (None, False),
    ],
)
def test_already_built(record, skipped):
    current = {D(2026, 11, 1): Fingerprint(1, "a", None)}
    out = already_built(
        [D(2026, 11, 1)],
        {D(2026, 11, 1): record} if record else {},
        current,
        run_id="me",
        requested_at=datetime(2026, 11, 23, 9),
    )
    assert (D(2026, 11, 1) in out) is skipped


# -- a regular run superseded by a newer one (missed ticks after an outage) ------------------
def _tick(name: str, minute: int, state: str = "SCHEDULED", regular: bool = True):
    from clickstream.core.store_run_plan import RunTick

    return RunTick(name, datetime(2026, 11, 23, 10, minute), state, regular)


NOW = datetime(2026, 11, 23, 10, 59)


def test_the_oldest_of_three_missed_ticks_is_superseded_by_the_newest_due_one():
    from clickstream.core.store_run_plan import superseded_by

    a, b, c = _tick("a", 0), _tick("b", 30), _tick("c", 58)
    assert superseded_by(a, [a, b, c], NOW) == c
    assert superseded_by(b, [a, b, c], NOW) == c
    assert superseded_by(c, [a, b, c], NOW) is None  # the newest due tick builds


def test_a_tick_due_exactly_now_supersedes():
    from clickstream.core.store_run_plan import superseded_by

    due_now = _tick("next", 59)
    assert superseded_by(_tick("me", 0), [due_now], NOW) == due_now


@pytest.mark.parametrize(
    ("me", "other", "why"),
    [
        (_tick("me", 0), _tick("later", 30, "CANCELLED"), "a cancelled tick builds nothing"),
        (_tick("me", 0), _tick("later", 30, "FAILED"), "a failed tick built nothing"),
        (_tick("me", 0), _tick("later", 30, regular=False), "a backfill child is no tick"),
        (_tick("me", 30), _tick("earlier", 0, "COMPLETED"), "older runs never supersede"),
        (_tick("me", 0, regular=False), _tick("later", 30), "only regular runs are skipped"),
    ],
)
def test_nothing_supersedes_a_run_unless_a_newer_regular_tick_is_due_and_alive(me, other, why):
    from clickstream.core.store_run_plan import superseded_by

    assert superseded_by(me, [me, other], NOW) is None, why


def test_a_newer_tick_not_due_yet_does_not_supersede_normal_operation():
    from clickstream.core.store_run_plan import superseded_by

    me, upcoming = _tick("me", 30), _tick("upcoming", 59)
    assert superseded_by(me, [me, upcoming], datetime(2026, 11, 23, 10, 31)) is None


def test_a_newer_tick_that_already_completed_supersedes_an_older_one_run_late():
    from clickstream.core.store_run_plan import superseded_by

    me, done = _tick("me", 0), _tick("done", 30, "COMPLETED")
    assert superseded_by(me, [me, done], NOW) == done
