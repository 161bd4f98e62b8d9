from datetime import date, timedelta

import pytest

from clickstream.core.child_runs import (
    child_parameters,
    child_run_name,
    child_tags,
    idempotency_key,
    next_attempt,
)
from clickstream.core.classify import classify, select_partitions
from clickstream.core.lanes import LaneScheduler, build_lanes, group_runs
from clickstream.core.requests import (
    BackfillInputError,
    BackfillRequest,
    CatchUpRequest,
    expand_partitions,
    resolve_request,
)
from clickstream.core.states import PartitionState
from clickstream.core.stores import Registry, Store

D = date


def store(sid, tz="UTC", active=True, earliest=D(2026, 1, 1)):
    return Store(
        store_id=sid,
        display_name=sid,
        database=sid.replace("-", "_"),
        timezone=tz,
        active=active,
        earliest_ds=earliest,
    )


REG = Registry(
    (
        store("au-sydney", "Australia/Sydney"),
        store("in-mumbai", "Asia/Kolkata"),
        store("old-shop", active=False),
        store("us-flagship", "America/New_York"),
    )
)
TODAY = {s.store_id: D(2026, 11, 22) for s in REG}


def resolve(**kw):
    kw = {"start_date": None, "end_date": None, **kw}
    return resolve_request(BackfillRequest(**kw), REG, global_limit=4, today_by_store=TODAY)


# --- validation -------------------------------------------------------------------------


def test_resolves_all_active_stores_by_default():
    r = resolve(start_date=D(2026, 11, 1), end_date=D(2026, 11, 4))
    assert [s.store_id for s in r.stores] == ["au-sydney", "in-mumbai", "us-flagship"]
    assert r.partition_count == 12
    assert r.max_parallel == 8  # defaults to OVERSUBSCRIBE (2) x the dbt-global limit


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"start_date": D(2026, 11, 4), "end_date": D(2026, 11, 1)}, "before start_date"),
        ({"start_date": D(2026, 11, 1), "end_date": D(2026, 11, 23)}, "after au-sydney's current"),
        ({"start_date": D(2025, 12, 31), "end_date": D(2026, 1, 2)}, "before au-sydney's earliest"),
        ({"start_date": None, "end_date": D(2026, 1, 2)}, "required"),
        (
            {"stores": ("nope",)},
            "unknown store 'nope'; active stores: au-sydney, in-mumbai, us-flagship",
        ),
        ({"stores": ("old-shop",)}, "store 'old-shop' is inactive"),
        ({"stores": ("../x",)}, "unknown store '../x'"),
        ({"stores": ("a;drop",)}, "unknown store 'a;drop'"),
        ({"max_parallel": 0}, "max_parallel must be at least 1"),
        ({"max_parallel": 9}, "exceeds 2 x the dbt-global limit 4"),
        ({"max_attempts": 0}, "max_attempts must be between 1 and 10, got 0"),
        ({"max_attempts": 11}, "max_attempts must be between 1 and 10, got 11"),
        ({"child_timeout_minutes": 0}, "child_timeout_minutes must be between 1 and 1440"),
        ({"child_timeout_minutes": -5}, "got -5: 0 would cancel every child run at once"),
        ({"child_timeout_minutes": 1441}, "child_timeout_minutes must be between 1 and 1440"),
        ({"stores": ("",)}, "store id '' is empty or blank"),
        ({"stores": ("us-flagship", "  ")}, "store id '  ' is empty or blank"),
        ({"days_per_run": 0}, "days_per_run must be between 1 and 31, got 0"),
        ({"days_per_run": 32}, "days_per_run must be between 1 and 31, got 32"),
        ({"reprocess": "everything"}, "reprocess must be one of"),
        ({"order": "random"}, "order must be one of"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kw, message):
    kw = {"start_date": D(2026, 11, 1), "end_date": D(2026, 11, 4), **kw}
    with pytest.raises(BackfillInputError) as exc:
        resolve(**kw)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lookback_days": 0}, "lookback_days must be between 1 and 3660"),
        ({"lookback_days": 3661}, "lookback_days must be between 1 and 3660"),
        ({"lookback_days": 1_000_000}, "got 1000000"),  # was an OverflowError
        ({"child_timeout_minutes": 0}, "child_timeout_minutes must be between 1 and 1440"),
        ({"max_attempts": 11}, "max_attempts must be between 1 and 10"),
        ({"stores": ("",)}, "store id '' is empty or blank"),
        ({"stores": ("nope",)}, "unknown store 'nope'"),
        ({"max_parallel": 9}, "exceeds 2 x the dbt-global limit 4"),
        ({"days_per_run": 32}, "days_per_run must be between 1 and 31, got 32"),
    ],
)
def test_bad_catch_up_input_is_rejected_with_a_clear_message(kw, message):
    with pytest.raises(BackfillInputError) as exc:
        resolve_request(CatchUpRequest(**kw), REG, global_limit=4, today_by_store=TODAY)
    assert message in str(exc.value)


def test_bounds_accept_their_edges():
    kw = {"start_date": D(2026, 11, 1), "end_date": D(2026, 11, 1)}
    for minutes in (1, 24 * 60):
        assert resolve(**kw, child_timeout_minutes=minutes).partition_count == 3
    assert resolve(**kw, max_attempts=10).max_attempts == 10
    for days in (1, 3660):
        r = resolve_request(
            CatchUpRequest(lookback_days=days), REG, global_limit=4, today_by_store=TODAY
        )
        # earliest_ds 2026-01-01 .. 2026-11-21: 325 days at most
        assert r.partition_count == 3 * min(days, 325)


def test_an_empty_store_list_still_means_every_active_store():
    """The UI form's empty multi-select (and no --stores): every active store."""
    r = resolve(start_date=D(2026, 11, 1), end_date=D(2026, 11, 1), stores=())
    assert [s.store_id for s in r.stores] == ["au-sydney", "in-mumbai", "us-flagship"]


# --- bounded before any date expansion -------------------------------------------------------
@pytest.fixture
def counted_days(monkeypatch):
    """Lengths of every date list resolve_request builds (its one date-range helper)."""
    import clickstream.core.requests as requests

    built: list[int] = []
    real = requests._days

    def counting(first, last):
        out = real(first, last)
        built.append(len(out))
        return out

    monkeypatch.setattr(requests, "_days", counting)
    return built


def test_a_range_of_ten_thousand_years_is_refused_before_any_date_list(counted_days):
    """0001-01-01 .. 9999-12-31 took 43 s and 469 MB expanding dates before it said "before
    earliest_ds". Now every check is arithmetic: no date list at all, and little memory."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(BackfillInputError) as exc:
            resolve(start_date=D(1, 1, 1), end_date=D(9999, 12, 31))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(exc.value)
    days = (D(9999, 12, 31) - D(1, 1, 1)).days + 1
    for sid in ("au-sydney", "in-mumbai", "us-flagship"):
        assert f"start_date 0001-01-01 is before {sid}'s earliest date 2026-01-01" in msg
        assert f"end_date 9999-12-31 is after {sid}'s current local date 2026-11-22" in msg
    assert f"{3 * days} partitions exceed the cap of 20000" in msg
    assert counted_days == []  # no list of dates was built
    assert peak < 1_000_000, peak  # bytes: the request's size, not the range's


def test_a_huge_range_with_allow_large_is_still_refused_before_expansion(counted_days):
    with pytest.raises(BackfillInputError) as exc:
        resolve(start_date=D(1, 1, 1), end_date=D(9999, 12, 31), allow_large_backfill=True)
    assert "earliest date" in str(exc.value) and "exceed the cap" not in str(exc.value)
    assert counted_days == []


def test_a_range_over_the_cap_is_counted_not_expanded(counted_days):
    with pytest.raises(BackfillInputError, match="978 partitions exceed the cap of 500"):
        resolve(start_date=D(2026, 1, 1), end_date=D(2026, 11, 22), max_partitions=500)
    assert counted_days == []


def test_a_valid_request_builds_only_its_own_days(counted_days):
    r = resolve(start_date=D(2026, 11, 1), end_date=D(2026, 11, 4))
    assert r.partition_count == 12 and counted_days == [4, 4, 4]


def test_a_huge_catch_up_lookback_is_refused_before_any_date_list(counted_days):
    with pytest.raises(BackfillInputError, match="lookback_days must be between 1 and 3660"):
        resolve_request(
            CatchUpRequest(lookback_days=10**9), REG, global_limit=4, today_by_store=TODAY
        )
    assert counted_days == []


# --- the dbt project's session gap -----------------------------------------------------------
@pytest.mark.parametrize(
    ("dbt_vars", "message"),
    [
        (
            {"session_gap_minutes": 90},
            "dbt var session_gap_minutes (dbt/dbt_project.yml) is 90 minutes, longer than the "
            "session lookback of 60 minutes",
        ),
        ({"session_gap_minutes": "61"}, "is 61 minutes, longer than the session lookback"),
        ({"session_gap_minutes": 0}, "must be at least 1 minute, got 0"),
        ({"session_gap_minutes": "half an hour"}, "must be a whole number of minutes"),
        ({"session_gap_minutes": True}, "must be a whole number of minutes"),
        ({}, "session_gap_minutes (dbt/dbt_project.yml) is not set"),
    ],
)
def test_a_session_gap_beyond_the_lookback_is_refused_up_front(dbt_vars, message):
    for request in (
        BackfillRequest(start_date=D(2026, 11, 1), end_date=D(2026, 11, 2)),
        CatchUpRequest(),
    ):
        with pytest.raises(BackfillInputError) as exc:
            resolve_request(request, REG, global_limit=4, today_by_store=TODAY, dbt_vars=dbt_vars)
        assert message in str(exc.value)


@pytest.mark.parametrize("gap", [1, 30, 60, "45"])
def test_a_session_gap_within_the_lookback_is_fine(gap):
    r = resolve_request(
        BackfillRequest(start_date=D(2026, 11, 1), end_date=D(2026, 11, 2)),
        REG,
        global_limit=4,
        today_by_store=TODAY,
        dbt_vars={"session_gap_minutes": gap},
    )
    assert r.partition_count == 6


def test_the_dbt_projects_vars_are_read_without_dbt(tmp_path):
    """adapters.dbt.project reads dbt_project.yml as YAML: the repo's project passes, a
    project-scoped var overrides a global one."""
    from clickstream.adapters.dbt.project import project_vars
    from clickstream.core.windows import session_gap_problem

    assert session_gap_problem(project_vars()) is None
    assert project_vars()["session_gap_minutes"] == 30
    (tmp_path / "dbt_project.yml").write_text(
        "name: clickstream\nvars:\n  session_gap_minutes: 30\n"
        "  clickstream:\n    session_gap_minutes: 90\n"
    )
    got = project_vars(tmp_path)
    assert got["session_gap_minutes"] == 90
    assert "is 90 minutes" in (session_gap_problem(got) or "")


def test_catch_up_has_no_dates_policy_or_order_to_give():
    with pytest.raises(TypeError):
        CatchUpRequest(start_date=D(2026, 11, 1))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        CatchUpRequest(reprocess="missing")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        BackfillRequest(lookback_days=3)  # type: ignore[call-arg]


def test_mode_comes_from_the_request_type():
    backfill = resolve(start_date=D(2026, 11, 1), end_date=D(2026, 11, 4))
    assert (backfill.mode, backfill.reprocess) == ("backfill", "missing")
    catch_up = resolve_request(CatchUpRequest(), REG, global_limit=4, today_by_store=TODAY)
    assert (catch_up.mode, catch_up.reprocess, catch_up.order) == (
        "catch_up",
        "stale",
        "oldest_first",
    )


def test_all_problems_reported_at_once():
    with pytest.raises(BackfillInputError) as exc:
        resolve(
            start_date=D(2026, 11, 4), end_date=D(2026, 11, 1), stores=("nope",), max_parallel=0
        )
    msg = str(exc.value)
    assert "before start_date" in msg and "unknown store" in msg and "max_parallel" in msg


def test_missing_global_limit_is_an_error():
    with pytest.raises(BackfillInputError, match="clickstream bootstrap"):
        resolve_request(
            BackfillRequest(start_date=D(2026, 11, 1), end_date=D(2026, 11, 1)),
            REG,
            global_limit=None,
        )


def test_partition_cap_unless_allowed():
    kw = {"start_date": D(2026, 1, 1), "end_date": D(2026, 11, 22), "max_partitions": 500}
    with pytest.raises(BackfillInputError, match="exceed the cap of 500"):
        resolve(**kw)
    assert resolve(**kw, allow_large_backfill=True).partition_count == 3 * 326


def test_catch_up_takes_last_complete_local_days():
    today = {
        "au-sydney": D(2026, 11, 23),
        "in-mumbai": D(2026, 11, 23),
        "us-flagship": D(2026, 11, 22),
    }
    r = resolve_request(CatchUpRequest(lookback_days=3), REG, global_limit=2, today_by_store=today)
    assert r.reprocess == "stale"
    assert r.dates_by_store["au-sydney"] == (D(2026, 11, 20), D(2026, 11, 21), D(2026, 11, 22))
    assert r.dates_by_store["us-flagship"] == (D(2026, 11, 19), D(2026, 11, 20), D(2026, 11, 21))


def test_catch_up_respects_earliest_date():
    reg = Registry((store("new-shop", earliest=D(2026, 11, 20)),))
    r = resolve_request(
        CatchUpRequest(lookback_days=7),
        reg,
        global_limit=1,
        today_by_store={"new-shop": D(2026, 11, 22)},
    )
    assert r.dates_by_store["new-shop"] == (D(2026, 11, 20), D(2026, 11, 21))


def test_catch_up_dates_are_the_last_complete_days_from_windows():
    """The same days core.windows.last_complete_days gives, from each store's clock."""
    from datetime import datetime

    from clickstream.core.windows import last_complete_days, local_today

    r = resolve_request(CatchUpRequest(lookback_days=4), REG, global_limit=2)
    for s in r.stores:
        days = tuple(last_complete_days(s.timezone, 4, today=local_today(s.timezone)))
        assert r.dates_by_store[s.store_id] == days
        assert days[-1] == local_today(s.timezone) - timedelta(days=1)
    now = datetime(2026, 11, 22, 20, 0)  # 01:30 on the 23rd in Kolkata
    assert last_complete_days("Asia/Kolkata", 2, now) == [D(2026, 11, 21), D(2026, 11, 22)]
    assert last_complete_days("Asia/Kolkata", 2, now, today=D(2026, 1, 3)) == [
        D(2026, 1, 1),
        D(2026, 1, 2),
    ]


def test_catch_up_before_a_stores_first_day_is_empty():
    reg = Registry((store("future-shop", earliest=D(2026, 11, 22)),))
    r = resolve_request(
        CatchUpRequest(lookback_days=7),
        reg,
        global_limit=1,
        today_by_store={"future-shop": D(2026, 11, 22)},
    )
    assert r.dates_by_store["future-shop"] == () and r.partition_count == 0


# --- classification and policies --------------------------------------------------------

A, B, C, E, F = (("s", D(2026, 1, d)) for d in range(1, 6))


def states():
    return classify(
        [A, B, C, E, F],
        build_status={A: "completed", B: "failed", C: "completed", E: "completed"},
        built_fingerprints={A: "10:x", B: "10:x", C: "10:x", E: "5:y"},
        current_fingerprints={A: "10:x", C: "12:z", E: "5:y", F: "0:"},
        in_flight=[E],
    )


def test_classify_each_state():
    assert states() == {
        A: PartitionState.COMPLETED,
        B: PartitionState.FAILED,
        C: PartitionState.STALE,
        E: PartitionState.IN_FLIGHT,  # in flight wins over completed
        F: PartitionState.MISSING,
    }


def test_ledger_is_checked_against_the_mart():
    G = ("t", D(2026, 1, 1))
    H = ("t", D(2026, 1, 2))
    I = ("t", D(2026, 1, 3))  # noqa: E741
    J = ("busy", D(2026, 1, 1))
    st = classify(
        [G, H, I, J],
        build_status={G: "completed", H: "completed", I: "completed", J: "completed"},
        built_fingerprints={},
        current_fingerprints=None,
        in_flight=[],
        built_counts={G: (10, 3), H: (10, 3), I: (10, 3), J: (10, 3)},
        mart_counts={G: (10, 3), I: (11, 3)},  # H's row is gone, I's row changed
        mart_checked={"t"},  # "busy" could not be read: the ledger's word stands
    )
    assert st == {
        G: PartitionState.COMPLETED,
        H: PartitionState.MISSING,
        I: PartitionState.STALE,
        J: PartitionState.COMPLETED,
    }


def test_old_fingerprint_format_is_stale_once():
    st = classify(
        [A],
        build_status={A: "completed"},
        built_fingerprints={A: "2894:2026-11-02T01:00:00"},  # before input ranges (v1)
        current_fingerprints={A: "v2:2901:123"},
        in_flight=[],
    )
    assert st[A] == PartitionState.STALE


def test_no_fingerprints_means_nothing_stale():
    st = classify(
        [C],
        build_status={C: "completed"},
        built_fingerprints={C: "a"},
        current_fingerprints=None,
        in_flight=[],
    )
    assert st[C] == PartitionState.COMPLETED


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("missing", [F]),
        ("failed", [B, F]),
        ("stale", [B, C, F]),
        ("all", [A, B, C, F]),
    ],
)
def test_policies_are_cumulative_and_skip_in_flight(policy, expected):
    assert sorted(select_partitions(states(), policy)) == sorted(expected)
    assert E not in select_partitions(states(), policy)


@pytest.mark.parametrize(
    ("order", "first"), [("oldest_first", D(2026, 1, 1)), ("newest_first", D(2026, 1, 3))]
)
def test_orders(order, first):
    keys = [("b", D(2026, 1, 2)), ("a", D(2026, 1, 3)), ("a", D(2026, 1, 1)), ("a", D(2026, 1, 2))]
    lanes = build_lanes(keys, order)
    assert list(lanes) == ["a", "b"]
    assert lanes["a"][0] == (first,)
    assert lanes["a"] == sorted(lanes["a"], reverse=order == "newest_first")


def test_dst_and_offset_stores_expand_to_local_dates():
    r = resolve(
        start_date=D(2026, 10, 31), end_date=D(2026, 11, 2), stores=("us-flagship", "in-mumbai")
    )
    parts = expand_partitions(r)
    assert ("us-flagship", D(2026, 11, 1)) in parts  # the 25-hour day is one partition
    assert len(parts) == 6


# --- lanes ------------------------------------------------------------------------------


def one_day(*days):
    return [(d,) for d in days]


def test_scheduler_one_per_store_and_global_cap():
    lanes = {
        "a": one_day(*[D(2026, 1, d) for d in range(1, 5)]),
        "b": one_day(D(2026, 1, 1)),
        "c": one_day(D(2026, 1, 1), D(2026, 1, 2)),
    }
    sch = LaneScheduler(lanes, max_parallel=2)
    first = sch.next_batch()
    # longest lanes first, one per store, two overall
    assert first == [("a", (D(2026, 1, 1),)), ("c", (D(2026, 1, 1),))]
    for sid, _batch in first:
        sch.occupy(sid, f"run-{sid}-1")
    assert sch.next_batch() == []
    sch.release("c", "run-c-1")
    # c's lane now has 1 left, b has 1: tie broken by store id
    assert sch.next_batch() == [("b", (D(2026, 1, 1),))]
    sch.occupy("b", "run-b-1")
    sch.release("a", "run-a-1")
    assert sch.next_batch() == [("a", (D(2026, 1, 2),))]


def test_scheduler_simulated_run_never_breaks_limits():
    lanes = {
        f"s{i}": one_day(*[D(2026, 1, 1) + timedelta(days=d) for d in range(i + 1)])
        for i in range(6)
    }
    sch = LaneScheduler(lanes, max_parallel=3)
    seen = n = 0
    while not sch.done:
        batch = sch.next_batch()
        for sid, _ in batch:
            n += 1
            sch.occupy(sid, f"r{n}")
        assert sch.in_flight <= 3
        assert all(len(tokens) == 1 for tokens in sch.busy.values())
        assert len({s for s, _ in batch}) == len(batch)
        seen += len(batch)
        # finish the oldest-started lane
        sid = sorted(sch.busy)[0]
        sch.release(sid, next(iter(sch.busy[sid])))
    assert seen == sum(range(1, 7))


def test_scheduler_adopted_runs_hold_the_lane_until_all_end():
    sch = LaneScheduler({"a": one_day(D(2026, 1, 3))}, max_parallel=3)
    sch.occupy("a", "adopted-1")  # e.g. a manual run and a queued scheduled run of the store
    sch.occupy("a", "adopted-2")
    assert sch.next_batch() == []
    sch.release("a", "adopted-1")
    assert sch.next_batch() == []  # still one run of the store in flight
    sch.release("a", "adopted-2")
    assert sch.next_batch() == [("a", (D(2026, 1, 3),))]


def test_scheduler_retry_splits_a_failed_batch_into_single_days():
    batch = (D(2026, 1, 1), D(2026, 1, 2), D(2026, 1, 3))
    sch = LaneScheduler({"a": [batch, (D(2026, 1, 4),)]}, max_parallel=1)
    assert sch.next_batch() == [("a", batch)]
    sch.occupy("a", "r1")
    sch.release("a", "r1")
    sch.retry("a", batch, "oldest_first")
    assert sch.lanes["a"] == [
        (D(2026, 1, 1),),
        (D(2026, 1, 2),),
        (D(2026, 1, 3),),
        (D(2026, 1, 4),),
    ]
    sch.retry("a", (D(2026, 1, 7), D(2026, 1, 8)), "newest_first")
    assert sch.lanes["a"][:2] == [(D(2026, 1, 8),), (D(2026, 1, 7),)]


def test_scheduler_put_back_puts_pieces_at_the_head_in_order():
    sch = LaneScheduler({"a": [(D(2026, 1, 9),)]}, max_parallel=1)
    sch.put_back("a", [(D(2026, 1, 1), D(2026, 1, 2)), (D(2026, 1, 5),)])
    sch.put_back("b", [(D(2026, 1, 3),)])  # a store whose lane had emptied
    assert sch.lanes == {
        "a": [(D(2026, 1, 1), D(2026, 1, 2)), (D(2026, 1, 5),), (D(2026, 1, 9),)],
        "b": [(D(2026, 1, 3),)],
    }


# --- several days per child run ---------------------------------------------------------


def days(*spec):
    """'1-4' -> Jan 1..4 of 2026; ints -> single days."""
    out = []
    for item in spec:
        if isinstance(item, str):
            lo, hi = (int(x) for x in item.split("-"))
            out += [D(2026, 1, d) for d in range(lo, hi + 1)]
        else:
            out.append(D(2026, 1, item))
    return out


@pytest.mark.parametrize(
    ("selected", "order", "n", "expected"),
    [
        # consecutive days fill runs of n, oldest first
        (days("1-10"), "oldest_first", 4, [days("1-4"), days("5-8"), days("9-10")]),
        # newest first: grouped from the newest day down, each run's days ascending
        (days("1-10"), "newest_first", 4, [days("7-10"), days("3-6"), days("1-2")]),
        # a gap starts a new run
        (days("1-3", "5-6", 9), "oldest_first", 7, [days("1-3"), days("5-6"), days(9)]),
        (days("1-3", "5-6", 9), "newest_first", 2, [days(9), days("5-6"), days("2-3"), days(1)]),
        # n = 1 keeps one run per day
        (days("1-3"), "oldest_first", 1, [days(1), days(2), days(3)]),
        # duplicates and input order do not matter
        (
            [D(2026, 1, 3), D(2026, 1, 1), D(2026, 1, 2), D(2026, 1, 1)],
            "oldest_first",
            31,
            [days("1-3")],
        ),
    ],
)
def test_group_runs(selected, order, n, expected):
    assert group_runs(selected, order, n) == [tuple(r) for r in expected]


def test_group_runs_across_dst_and_month_ends():
    # Local dates, not hours: the 25-hour day and a month end are days like any other.
    sel = [D(2026, 10, 30) + timedelta(days=i) for i in range(5)]  # NY falls back on 11-01
    assert group_runs(sel, "oldest_first", 3) == [tuple(sel[:3]), tuple(sel[3:])]


def test_lanes_of_stores_with_different_ranges():
    sel = [("a", d) for d in days("1-5")] + [("b", d) for d in days("3-4", 8)]
    lanes = build_lanes(sel, "oldest_first", 3)
    assert lanes == {
        "a": [tuple(days("1-3")), tuple(days("4-5"))],
        "b": [tuple(days("3-4")), tuple(days(8))],
    }


def test_in_flight_days_split_the_batches_around_them():
    """A day in flight in another run is never selected, so no batch can cover it."""
    keys = [("a", d) for d in days("1-6")]
    st = classify(
        keys,
        build_status={},
        built_fingerprints={},
        current_fingerprints=None,
        in_flight=[("a", D(2026, 1, 3))],
    )
    sel = select_partitions(st, "missing")
    assert build_lanes(sel, "oldest_first", 4)["a"] == [tuple(days("1-2")), tuple(days("4-6"))]


def test_child_parameters():
    assert child_parameters("a", (D(2026, 1, 1),)) == {
        "store_id": "a",
        "ds": "2026-01-01",
        "dbt_mode": "lean",
    }
    assert child_parameters("a", tuple(days("1-3"))) == {
        "store_id": "a",
        "ds": "2026-01-01",
        "ds_end": "2026-01-03",
        "dbt_mode": "lean",
    }


# --- keys and names ---------------------------------------------------------------------


def test_keys_carry_store_days_and_attempt():
    assert (
        idempotency_key("us-flagship", D(2026, 11, 1), 2)
        == "clickstream:us-flagship:2026-11-01:attempt-2"
    )
    assert (
        idempotency_key("us-flagship", (D(2026, 11, 1), D(2026, 11, 2), D(2026, 11, 3)), 1)
        == "clickstream:us-flagship:2026-11-01..2026-11-03:attempt-1"
    )
    keys = {idempotency_key(s, D(2026, 11, 1), 1) for s in ("a", "b")}
    assert len(keys) == 2  # keys are unique per flow, and every store shares the flow
    assert idempotency_key("a", D(2026, 11, 1), 1) != idempotency_key("a", D(2026, 11, 1), 2)
    # a batch and a single day inside it are different runs (in-flight detection keeps
    # them apart, not the key)
    assert idempotency_key("a", tuple(days("1-3")), 1) != idempotency_key("a", D(2026, 1, 2), 1)


def test_run_names_and_tags():
    assert child_run_name("in-mumbai", D(2026, 3, 8), 1) == "backfill-in-mumbai-2026-03-08-a1"
    assert child_tags("in-mumbai", D(2026, 3, 8)) == ["backfill", "in-mumbai", "ds:2026-03-08"]
    batch = tuple(days("1-2"))
    assert child_run_name("a", batch, 3) == "backfill-a-2026-01-01..2026-01-02-a3"
    assert child_tags("a", batch) == ["backfill", "a", "ds:2026-01-01..2026-01-02"]


@pytest.mark.parametrize(
    ("latest", "exists", "expected"), [(None, False, 1), (1, False, 1), (1, True, 2), (3, True, 4)]
)
def test_next_attempt(latest, exists, expected):
    assert next_attempt(latest, exists) == expected


def test_planning_100_stores_3_years_runs():
    """Scale smoke (timing lives in bench/): 109,500 partitions plan in one pass."""
    reg = Registry(tuple(store(f"s{i:03d}", earliest=D(2023, 1, 1)) for i in range(100)))
    today = {s.store_id: D(2026, 11, 22) for s in reg}
    r = resolve_request(
        BackfillRequest(
            start_date=D(2023, 11, 23), end_date=D(2026, 11, 22), allow_large_backfill=True
        ),
        reg,
        global_limit=4,
        today_by_store=today,
    )
    parts = expand_partitions(r)
    assert len(parts) == 100 * 1096
    built = {k: "completed" for k in parts[::2]}
    st = classify(
        parts, build_status=built, built_fingerprints={}, current_fingerprints=None, in_flight=[]
    )
    assert len(select_partitions(st, "missing")) == len(parts) // 2
