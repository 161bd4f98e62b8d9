"""Each deployment's parameter schema (what the Prefect UI run form renders) against a snapshot.

The schema is computed as `prefect deploy` computes it (``parameter_schema(flow)``, prefect
3.8.8) and compared with tests/unit/snapshots/<flow function>.json. A change to a flow's
signature, defaults or Args docstring, or to the store list, fails here. To accept a change on
purpose, regenerate the snapshots and commit them with it:

    CLICKSTREAM_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_parameter_schemas.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clickstream import settings
from clickstream.names import CATCH_UP_ENTRYPOINT, DBT_ENTRYPOINT, ORCHESTRATOR_ENTRYPOINT

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("CLICKSTREAM_UPDATE_SNAPSHOTS") == "1"


def _schema(entrypoint: str) -> dict:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    flow = load_flow_from_entrypoint(entrypoint)
    return parameter_schema(flow).model_dump_for_openapi()


def _text(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    "entrypoint", [DBT_ENTRYPOINT, ORCHESTRATOR_ENTRYPOINT, CATCH_UP_ENTRYPOINT]
)
def test_parameter_schema_matches_snapshot(entrypoint, monkeypatch):
    monkeypatch.chdir(settings.project_dir())
    path = SNAPSHOTS / f"{entrypoint.rsplit(':', 1)[1]}.json"
    text = _text(_schema(entrypoint))
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}; see this module's docstring to create it"
    assert text == path.read_text(), (
        f"{entrypoint}'s parameter schema (the UI form) changed; if on purpose, regenerate "
        "the snapshot (this module's docstring says how) and commit it"
    )


def test_snapshot_equals_the_flow_functions_schema(monkeypatch):
    """`prefect deploy` passes the Flow; the form tests pass ``flow.fn``: the same schema."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(settings.project_dir())
    for entrypoint in (DBT_ENTRYPOINT, ORCHESTRATOR_ENTRYPOINT, CATCH_UP_ENTRYPOINT):
        flow = load_flow_from_entrypoint(entrypoint)
        assert _text(parameter_schema(flow.fn).model_dump_for_openapi()) == _text(
            _schema(entrypoint)
        )
