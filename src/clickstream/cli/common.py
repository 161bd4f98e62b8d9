"""What several command groups share: the date option, store-id lists, local validation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from clickstream.core.requests import BackfillRequest, CatchUpRequest, resolve_request
from clickstream.core.stores import load_registry

DateOpt = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])]


def split_ids(values: list[str] | None) -> tuple[str, ...]:
    """``--stores a --stores b,c`` -> ``("a", "b", "c")``."""
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return tuple(out)


def validate_locally(request: BackfillRequest | CatchUpRequest) -> None:
    """What needs no server, first: bad input never waits on the network (plan() retries the
    API for minutes); the server-side checks (dbt-global limit, deployments) follow.
    Raises BackfillInputError or RegistryError (reported_errors turns them into exit 2)."""
    resolve_request(request, load_registry(), global_limit=None, check_limit=False)
