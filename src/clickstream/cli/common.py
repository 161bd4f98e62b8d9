"""What several command groups share: the date option, store-id lists, local validation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from clickstream.core.requests import BackfillRequest, CatchUpRequest, resolve_request
from clickstream.core.stores import load_registry

DateOpt = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"])]


def split_ids(values: list[str] | None, flag: str = "--stores") -> tuple[str, ...]:
    """``--stores a --stores b,c`` -> ``("a", "b", "c")``; no ``--stores`` at all -> ``()``
    (every store). An empty or blank part given explicitly (``--stores ""``, ``--stores a,``:
    an unset shell variable) is an error naming the flag, not "every store"."""
    out: list[str] = []
    for v in values or []:
        parts = [p.strip() for p in v.split(",")]
        if not all(parts):
            raise typer.BadParameter(
                f"{v!r} has an empty store id (an unset shell variable?); give store ids, or "
                f"leave out {flag} for every active store",
                param_hint=f"'{flag}'",
            )
        out.extend(parts)
    return tuple(out)


def validate_locally(
    request: BackfillRequest | CatchUpRequest, *, check_dbt_project: bool = True
) -> None:
    """What needs no server, first: bad input never waits on the network (plan() retries the
    API for minutes); the server-side checks (dbt-global limit, deployments) follow.
    ``check_dbt_project``: also the dbt project's vars (off for a status view, which builds
    nothing). Raises BackfillInputError or RegistryError (reported_errors: exit 2)."""
    from clickstream.adapters.dbt.project import project_vars

    resolve_request(
        request,
        load_registry(),
        global_limit=None,
        check_limit=False,
        dbt_vars=project_vars() if check_dbt_project else None,
    )
