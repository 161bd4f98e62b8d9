"""Bad input, table-driven, through the real CLI (no server): every case exits non-zero, says
what is wrong, and creates nothing. PREFECT_API_URL points at a closed 127.0.0.1 port, so a
command that reached for the network before validating would fail with "cannot reach"
(the assertions on the message catch that) instead of hanging.

Also: the orchestrator flows' parameter validation and JSON schema (what the UI form sends
and what the server checks a run against) and store registry files that are not mappings.
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
        # ten thousand years: refused at once by arithmetic, not after expanding every date
        (
            [*BF, "--start", "0001-01-01", "--end", "9999-12-31"],
            [
                "start_date 0001-01-01 is before au-sydney's earliest date 2026-01-01",
                "end_date 9999-12-31 is after",
                "10956177 partitions exceed the cap of 20000",
            ],
        ),
        (
            [*BF, "--start", "0001-01-01", "--end", "9999-12-31", "--allow-large"],
            ["start_date 0001-01-01 is before", "end_date 9999-12-31 is after"],
        ),
        # an explicitly empty --stores (an unset shell variable) is not "every store"
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", ""],
            ["Invalid value for '--stores'", "empty store id", "leave out --stores"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "  "],
            ["Invalid value for '--stores'", "empty store id"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "us-flagship,"],
            ["Invalid value for '--stores'", "'us-flagship,' has an empty store id"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", "a,,b"],
            ["Invalid value for '--stores'", "empty store id"],
        ),
        (["catch-up", "--stores", ""], ["Invalid value for '--stores'", "empty store id"]),
        (
            ["status", "--start", "2026-11-01", "--end", "2026-11-02", "--stores", ""],
            ["Invalid value for '--stores'", "empty store id"],
        ),
        (
            [*GEN, "--start", "2026-11-01", "--end", "2026-11-02", "--stores", ""],
            ["Invalid value for '--stores'", "empty store id"],
        ),
        # numbers out of range
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--child-timeout-minutes", "0"],
            ["child_timeout_minutes must be between 1 and 1440 (a day), got 0"],
        ),
        (
            [
                *BF,
                "--start",
                "2026-11-01",
                "--end",
                "2026-11-02",
                "--child-timeout-minutes",
                "1441",
            ],
            ["child_timeout_minutes must be between 1 and 1440 (a day), got 1441"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--max-attempts", "0"],
            ["max_attempts must be between 1 and 10, got 0"],
        ),
        (
            [*BF, "--start", "2026-11-01", "--end", "2026-11-02", "--max-attempts", "11"],
            ["max_attempts must be between 1 and 10, got 11"],
        ),
        (
            ["catch-up", "--lookback-days", "1000000"],
            ["Invalid value for '--lookback-days'", "less than or equal to 3660"],
        ),
        (
            ["catch-up", "--lookback-days", "0"],
            ["Invalid value for '--lookback-days'", "greater than or equal to 1"],
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


@pytest.mark.parametrize(
    "args",
    [
        [*BF, "--start", "2026-11-01", "--end", "2026-11-02"],
        ["catch-up"],
    ],
)
def test_a_session_gap_beyond_the_lookback_is_refused_before_the_network(
    dead_api, monkeypatch, args
):
    """dbt refused it only inside each child run, after dispatch, with retries."""
    import clickstream.adapters.dbt.project as project

    monkeypatch.setattr(project, "project_vars", lambda *a: {"session_gap_minutes": 90})
    assert_rejected(
        dead_api,
        args,
        [
            "dbt var session_gap_minutes (dbt/dbt_project.yml) is 90 minutes",
            "session lookback of 60 minutes",
        ],
    )


def test_no_stores_flag_still_means_every_active_store(dead_api, monkeypatch):
    """Only an explicit empty --stores is refused: without the flag the request names no
    stores (every active one) and the command goes on to trigger the deployment."""
    import clickstream.cli.backfill as cli_backfill
    from clickstream.cli.common import split_ids

    assert split_ids(None) == () and split_ids([]) == ()
    sent = []

    async def trigger(deployment, request, params, follow):
        sent.append((request, params))
        return 0

    monkeypatch.setattr(cli_backfill, "_trigger_and_follow", trigger)
    result, text = invoke([*BF, "--start", "2026-11-01", "--end", "2026-11-02"])
    assert result.exit_code == 0, text
    ((request, params),) = sent
    assert request.stores == () and params["stores"] is None
    assert params["child_timeout_minutes"] == 60


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
        ({"days_per_run": 0}, "days_per_run"),
        ({"days_per_run": 32}, "days_per_run"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"child_timeout_minutes": 0}, "child_timeout_minutes"),
        ({"child_timeout_minutes": 24 * 60 + 1}, "child_timeout_minutes"),
        ({"stores": [""]}, "stores"),
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


@pytest.fixture(scope="module")
def catch_up_flow():
    import os

    from prefect.flows import load_flow_from_entrypoint

    old = os.getcwd()
    os.chdir(settings.project_dir())
    try:
        return load_flow_from_entrypoint("flows/catch_up.py:clickstream_catch_up")
    finally:
        os.chdir(old)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lookback_days": 0}, "lookback_days"),
        ({"lookback_days": 1_000_000}, "lookback_days"),
        ({"days_per_run": 0}, "days_per_run"),
        ({"days_per_run": 32}, "days_per_run"),
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"child_timeout_minutes": 0}, "child_timeout_minutes"),
        ({"child_timeout_minutes": 24 * 60 + 1}, "child_timeout_minutes"),
    ],
)
def test_catch_up_form_rejects_out_of_range_numbers(catch_up_flow, params, field):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError) as exc:
        catch_up_flow.validate_parameters(params)
    assert field in str(exc.value)


def test_catch_up_form_accepts_its_edges_and_an_empty_store_list(catch_up_flow):
    got = catch_up_flow.validate_parameters(
        {"lookback_days": 3660, "stores": [], "child_timeout_minutes": 1440, "max_attempts": 10}
    )
    assert got["lookback_days"] == 3660 and got["stores"] == []


# The bounds each flow's JSON schema (the UI form, the server's check) must carry.
BOUNDS = {
    "days_per_run": (1, 31),
    "max_attempts": (1, 10),
    "child_timeout_minutes": (1, 24 * 60),
}


@pytest.mark.parametrize(
    ("entrypoint", "extra"),
    [
        ("flows/backfill.py:clickstream_backfill", {}),
        ("flows/catch_up.py:clickstream_catch_up", {"lookback_days": (1, 3660)}),
    ],
)
def test_flow_schema_carries_the_bounds(monkeypatch, entrypoint, extra):
    """What `prefect deploy` sends as parameter_openapi_schema: the UI form and the server
    (enforce_parameter_schema) refuse an out-of-range number before a run exists."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(settings.project_dir())
    props = parameter_schema(load_flow_from_entrypoint(entrypoint)).model_dump_for_openapi()[
        "properties"
    ]
    for name, (low, high) in {**BOUNDS, **extra}.items():
        assert (props[name]["minimum"], props[name]["maximum"]) == (low, high), name
    # max_parallel: still "empty = automatic" (null allowed), an integer at least 1 otherwise
    assert props["max_parallel"]["anyOf"] == [{"minimum": 1, "type": "integer"}, {"type": "null"}]
    assert props["max_parallel"]["default"] is None


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
