"""Bad input, table-driven, through the real CLI (no server): every case exits non-zero, says
what is wrong, and creates nothing. PREFECT_API_URL points at a closed 127.0.0.1 port, so a
command that reached for the network before validating would fail with "cannot reach"
(the assertions on the message catch that) instead of hanging.

Also: the orchestrator flow's parameter validation (what the UI form sends) and store
registry files that are not mappings.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from clickstream import settings
from clickstream.cli import app
from clickstream.local.stack import free_port

FUTURE = (date.today() + timedelta(days=30)).isoformat()
BOX = re.compile(r"[│╭╮╰╯─]+")


@pytest.fixture
def dead_api(tmp_path, monkeypatch):
    """Isolated state dir + a Prefect API URL on a port nothing listens on."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    state = tmp_path / "state"
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(state))
    monkeypatch.setenv("PREFECT_API_URL", url)
    for var in ("CLICKSTREAM_LEDGER_URL", "CLICKSTREAM_LANDING_DIR", "CLICKSTREAM_WAREHOUSE_DIR"):
        monkeypatch.delenv(var, raising=False)
    with temporary_settings({PREFECT_API_URL: url}):  # settings were read at import time
        yield state


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250", "NO_COLOR": "1"})
    text = result.output  # stdout and stderr, as a terminal shows them
    return result, " ".join(BOX.sub(" ", text).split())


def assert_rejected(state, args, words):
    result, text = invoke(args)
    assert result.exit_code not in (0, None), text
    assert not isinstance(result.exception, AssertionError | TypeError | AttributeError), text
    for w in words:
        assert w.lower() in text.lower(), f"{w!r} not in: {text}"
    assert "cannot reach" not in text  # validated before any network call
    # Nothing created: no state dir (landing files, ledger, warehouses) at all.
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))
    assert not (settings.project_dir() / ".clickstream" / "landing" / "nope").exists()


GEN = ["data", "generate"]
BF = ["backfill"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        # data generate
        (
            [*GEN, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "nope"],
            ["unknown store 'nope'", "known stores: au-sydney, in-mumbai, us-flagship"],
        ),
        (
            [*GEN, "--start", "2026-11-05", "--end", "2026-11-01"],
            ["end 2026-11-01 is before start 2026-11-05"],
        ),
        ([*GEN, "--start", "2026-13-01", "--end", "2026-11-02"], ["Invalid value", "--start"]),
        ([*GEN, "--start", "yesterday", "--end", "2026-11-02"], ["Invalid value", "--start"]),
        (
            [*GEN, "--start", "2026-11-01", "--end", "2026-11-02", "--events-per-day", "-5"],
            ["Invalid value", "--events-per-day", "greater than or equal to 0"],
        ),
        # backfill
        (
            [*BF, "--start", "2026-11-05", "--end", "2026-11-01"],
            ["invalid backfill request", "end_date 2026-11-01 is before start_date 2026-11-05"],
        ),
        ([*BF, "--start", "2026-11-01", "--end", FUTURE], ["end_date", "current local date"]),
        (
            [*BF, "--start", "2020-01-01", "--end", "2020-01-03"],
            ["start_date 2020-01-01 is before", "earliest date 2026-01-01"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "nope"],
            ["unknown store 'nope'", "active stores: au-sydney, in-mumbai, us-flagship"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "../x"],
            ["unknown store '../x'"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "a;drop"],
            ["unknown store 'a;drop'"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--max-parallel", "0"],
            ["max_parallel must be at least 1, got 0"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--max-parallel", "abc"],
            ["Invalid value", "--max-parallel", "valid integer"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--reprocess", "some"],
            ["reprocess must be one of missing, failed, stale, all"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--days-per-run", "0"],
            ["days_per_run must be between 1 and 31, got 0"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--days-per-run", "40"],
            ["days_per_run must be between 1 and 31, got 40"],
        ),
        (
            ["catch-up", "--days-per-run", "32"],
            ["days_per_run must be between 1 and 31, got 32"],
        ),
        ([*BF, "--start", "2026/11/01", "--end", "2026-11-02"], ["Invalid value", "--start"]),
        ([*BF, "--start", "2026-11-01", "--end", "2026-02-30"], ["Invalid value", "--end"]),
        ([*BF, "--start", "2026-11-01"], ["Missing option", "--end"]),
        (
            [*BF, "--start", "1990-01-01", "--end", "2026-11-01"],
            ["partitions exceed the cap of 20000", "allow_large_backfill"],
        ),
        # status
        (
            ["status", "--start", "2026-11-05", "--end", "2026-11-01"],
            ["end_date 2026-11-01 is before start_date 2026-11-05"],
        ),
        (
            ["status", "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "../x"],
            ["unknown store '../x'"],
        ),
        # unstick
        (
            ["unstick", "nope"],
            ["unknown store 'nope'", "known stores: au-sydney, in-mumbai, us-flagship"],
        ),
        (
            ["unstick", "us-flagship", "--older-than-minutes", "-1"],
            ["Invalid value", "greater than or equal to 0"],
        ),
        # bootstrap: a zombie window shorter than two heartbeats is refused
        (
            ["bootstrap", "--zombie-after-seconds", "30"],
            ["Invalid value", "greater than or equal to 60"],
        ),
    ],
)
def test_cli_rejects_bad_input(dead_api, args, words):
    assert_rejected(dead_api, args, words)


def test_huge_range_is_fine_with_allow_large_but_still_checks_dates(dead_api):
    # --allow-large lifts the cap only; the earliest-date rule still applies.
    result, text = invoke([*BF, "--start", "1990-01-01", "--end", "2026-11-01", "--allow-large"])
    assert result.exit_code == 2, text
    assert "exceed the cap" not in text and "earliest date 2026-01-01" in text
    assert not dead_api.exists()


# --- the orchestrator flow's form -------------------------------------------------------------
@pytest.fixture(scope="module")
def backfill_flow():
    import os

    from prefect.flows import load_flow_from_entrypoint

    old = os.getcwd()
    os.chdir(settings.project_dir())
    try:
        return load_flow_from_entrypoint("flows/backfill.py:clickstream_backfill")
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
        ({"stores": ["nope"]}, "stores"),
        ({"stores": "us-flagship"}, "stores"),
        ({"stores": ["../x"]}, "stores"),
        ({"max_parallel": "many"}, "max_parallel"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"reprocess": "some"}, "reprocess"),
        ({"order": "random"}, "order"),
        ({"days_per_run": "week"}, "days_per_run"),
        ({"mode": "catch_up"}, "mode"),  # catch-up is its own deployment now
        ({"start_date": None}, "start_date"),  # required: the UI shows a date picker
        ({"dry_run": "perhaps"}, "dry_run"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_flow_form_rejects_wrong_types(backfill_flow, params, field):
    from prefect.exceptions import ParameterTypeError, SignatureMismatchError

    good = {"start_date": "2026-11-01", "end_date": "2026-11-02"}
    with pytest.raises((ParameterTypeError, SignatureMismatchError)) as exc:
        backfill_flow.validate_parameters({**good, **params})
    assert field in str(exc.value)


def test_flow_form_needs_both_dates(backfill_flow):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError) as exc:
        backfill_flow.validate_parameters({"start_date": "2026-11-01"})
    assert "end_date" in str(exc.value) and "Field required" in str(exc.value)


def test_flow_form_accepts_good_values(backfill_flow):
    got = backfill_flow.validate_parameters(
        {
            "start_date": "2026-11-01",
            "end_date": "2026-11-03",
            "stores": ["us-flagship"],
            "max_parallel": "2",
            "days_per_run": "7",
        }
    )
    assert (got["start_date"], got["end_date"]) == (date(2026, 11, 1), date(2026, 11, 3))
    assert got["stores"] == ["us-flagship"] and got["max_parallel"] == 2
    assert got["days_per_run"] == 7


# --- registry files that are not a store mapping -------------------------------------------
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("just-a-string\n", "expected a mapping of fields, got str"),
        ("", "expected a mapping of fields, got NoneType"),
        ("# only a comment\n", "expected a mapping of fields, got NoneType"),
        ("42\n", "expected a mapping of fields, got int"),
        ("store_id: de-berlin\n\tdatabase: de_berlin\n", "not valid YAML"),
        (
            'store_id: de-berlin\ndisplay_name: x\ndatabase: "de_berlin; drop table x"\n'
            "timezone: Europe/Berlin\nearliest_ds: 2026-01-01\n",
            "database: must be a safe identifier",
        ),
        (
            "store_id: de-berlin\ndisplay_name: x\ndatabase: /etc/passwd\n"
            "timezone: Europe/Berlin\nearliest_ds: 2026-01-01\n",
            "database: must be a safe identifier",
        ),
        (
            "store_id: de-berlin\ndisplay_name: x\ndatabase: de_berlin\n"
            "timezone: ../../etc/localtime\nearliest_ds: 2026-01-01\n",
            "timezone: Value error, unknown IANA time zone",
        ),
    ],
    ids=[
        "bare-string",
        "empty",
        "comment-only",
        "number",
        "tab-indent",
        "sql-db",
        "path-db",
        "path-tz",
    ],
)
def test_registry_file_not_a_store(tmp_path, text, words):
    from clickstream.core.stores import RegistryError, load_registry

    (tmp_path / "de-berlin.yaml").write_text(text)
    with pytest.raises(RegistryError) as exc:
        load_registry(tmp_path)
    assert "de-berlin.yaml" in str(exc.value)
    assert words in str(exc.value)
