"""The exact dbt command line and partition spec the flows run (pure; to the letter)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from clickstream import settings
from clickstream.adapters.dbt.command import dbt_build_args
from clickstream.core.partition_spec import SPEC_ENV, partition_spec, spec_environment
from clickstream.core.stores import load_registry
from clickstream.core.windows import partition_windows

NY = load_registry().get("us-flagship")


def test_build_args_to_the_letter():
    args = dbt_build_args(
        NY,
        landing_dir=Path("/land"),
        project_dir=Path("/repo/dbt"),
        target_path=Path("/state/dbt-target/us-flagship"),
    )
    assert args == [
        "build",
        "--project-dir",
        "/repo/dbt",
        "--profiles-dir",
        "/repo/dbt",
        "--target",
        "duckdb",
        "--target-path",
        "/state/dbt-target/us-flagship",
        "--log-path",
        "/state/dbt-target/us-flagship/logs",
        "--select",
        "+clickstream_daily",
        "--vars",
        '{"database": "us_flagship", "landing_dir": "/land", "store_id": "us-flagship"}',
    ]
    full = dbt_build_args(
        NY,
        landing_dir=Path("/land"),
        project_dir=Path("/repo/dbt"),
        target_path=Path("/t"),
        full_refresh=True,
        target="postgres",
    )
    assert full[-1] == "--full-refresh" and full[full.index("--target") + 1] == "postgres"
    with pytest.raises(ValueError, match="unknown dbt target"):
        dbt_build_args(
            NY, landing_dir=Path("/l"), project_dir=Path("/p"), target_path=Path("/t"), target="x"
        )


def test_vars_do_not_depend_on_the_partition():
    """The same --vars for every day of a store: dbt keeps its partial parse."""
    a = dbt_build_args(NY, landing_dir=Path("/l"), project_dir=Path("/p"), target_path=Path("/t"))
    b = dbt_build_args(NY, landing_dir=Path("/l"), project_dir=Path("/p"), target_path=Path("/t"))
    assert a == b


def test_partition_spec_of_a_dst_batch():
    spec = partition_spec(
        NY, partition_windows(NY.timezone, [date(2026, 11, 2), date(2026, 11, 1)])
    )
    assert spec == {
        "store_id": "us-flagship",
        "days": [
            ["2026-11-01", "2026-11-01 04:00:00", "2026-11-02 05:00:00"],  # 25 h
            ["2026-11-02", "2026-11-02 05:00:00", "2026-11-03 05:00:00"],
        ],
        "input_start": "2026-11-01 03:00:00",
        "input_end": "2026-11-03 05:00:00",
        "landing_first": "2026-10-31",
        "landing_last": "2026-11-02",
    }
    env = spec_environment(NY, partition_windows(NY.timezone, [date(2026, 11, 1)]))
    assert list(env) == [SPEC_ENV]
    assert json.loads(env[SPEC_ENV])["days"] == [spec["days"][0]]


def test_kolkata_lookback_stays_in_the_day_before():
    mumbai = load_registry().get("in-mumbai")
    spec = partition_spec(mumbai, partition_windows(mumbai.timezone, [date(2026, 3, 8)]))
    assert spec["days"] == [["2026-03-08", "2026-03-07 18:30:00", "2026-03-08 18:30:00"]]
    assert spec["input_start"] == "2026-03-07 17:30:00"
    assert (spec["landing_first"], spec["landing_last"]) == ("2026-03-07", "2026-03-08")


def test_a_day_is_listed_once():
    w = partition_windows(NY.timezone, [date(2026, 1, 1)])
    with pytest.raises(ValueError, match="each day once"):
        partition_spec(NY, w + w)


def test_dbt_project_defaults_are_the_python_definition():
    """dbt_project.yml's hand-run defaults agree with windows.py and source.py."""
    v = yaml.safe_load((settings.dbt_project_dir() / "dbt_project.yml").read_text())["vars"]
    store = load_registry().get(v["store_id"])
    assert store.database == v["database"]
    spec = partition_spec(store, partition_windows(store.timezone, [date.fromisoformat(v["ds"])]))
    assert spec["days"] == [[v["ds"], v["window_start"], v["window_end"]]]
    assert spec["input_start"] == v["input_start"]
    assert spec["input_end"] == v["window_end"]
    assert (spec["landing_first"], spec["landing_last"]) == (v["landing_first"], v["landing_last"])
