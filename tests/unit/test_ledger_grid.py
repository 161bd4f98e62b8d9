from datetime import date

from clickstream.adapters import ledger
from clickstream.core import grid
from tests.support.ledger_rows import count_dispatches


def test_ledger_roundtrip_and_latest_dispatch(isolated_state):
    ledger.record_builds(
        [
            ledger.BuildRecord(
                "a", date(2026, 1, 1), "completed", "r1", "5:x", ledger.utcnow(), mart_rows=1
            )
        ]
    )
    ledger.record_builds(
        [
            ledger.BuildRecord(
                "a", date(2026, 1, 1), "failed", "r2", "5:x", ledger.utcnow(), error="boom"
            )
        ]
    )
    ledger.record_builds(
        [ledger.BuildRecord("b", date(2026, 1, 2), "completed", "r3", "0:", ledger.utcnow())]
    )
    builds = ledger.read_builds(["a"])
    assert list(builds) == [("a", date(2026, 1, 1))]
    assert builds[("a", date(2026, 1, 1))].status == "failed"  # latest outcome wins
    assert set(ledger.read_builds(start=date(2026, 1, 2))) == {("b", date(2026, 1, 2))}

    for attempt in (1, 2):
        ledger.record_dispatches(
            [
                ledger.DispatchRecord(
                    "a", date(2026, 1, 1), attempt, f"k{attempt}", None, "o", ledger.utcnow()
                )
            ]
        )
    latest = ledger.read_latest_dispatches(["a"])
    assert latest[("a", date(2026, 1, 1))].attempt == 2
    assert count_dispatches("a") == 2  # every attempt is kept, the latest one is read


def test_ledger_rejects_unknown_status(isolated_state):
    import pytest

    with pytest.raises(ValueError):
        ledger.record_builds(
            [ledger.BuildRecord("a", date(2026, 1, 1), "running", None, None, ledger.utcnow())]
        )


def test_ledger_is_sqlite_wal_outside_warehouses(isolated_state):
    ledger.read_builds()
    assert (isolated_state / "ledger.sqlite").exists()
    with ledger.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_grid_markdown_has_legend_and_one_symbol_per_cell():
    states = {
        ("a", date(2026, 1, 1)): "completed",
        ("a", date(2026, 1, 2)): "failed",
        ("b", date(2026, 1, 1)): "stale",
        ("b", date(2026, 1, 2)): "in_flight",
    }
    md = grid.render_markdown(states, title="t", stores=["a", "b"])
    assert "| ds | a | b |" in md
    assert "| 2026-01-01 | ✅ | 🟨 |" in md
    assert "| 2026-01-02 | ❌ | ⏳ |" in md
    assert "Legend:" in md and "stale" in md
    assert grid.summarize(states).startswith(
        "4 partitions: 1 completed, 1 failed, 1 in flight, 1 stale"
    )


def test_grid_caps_rows():
    states = {
        ("a", date(2020, 1, 1).fromordinal(date(2020, 1, 1).toordinal() + i)): "missing"
        for i in range(500)
    }
    md = grid.render_markdown(states, title="t")
    assert "100 older dates not shown" in md
