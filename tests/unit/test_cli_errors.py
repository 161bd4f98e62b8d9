"""The CLI's one error wrapper (clickstream.cli.errors): which exceptions exit 2 with what
message, and which propagate; and the CLI package's shape (one module per command group)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import typer

from clickstream.cli import errors
from clickstream.core.requests import BackfillInputError
from clickstream.core.stores import RegistryError

REQUEST = httpx.Request("GET", "http://127.0.0.1:9/api/health")


def run(exc: BaseException, *, api: bool):
    def boom() -> None:
        raise exc

    if api:

        async def coro() -> None:
            boom()

        return errors.run_api(coro())
    return errors.reports_errors(boom)()


@pytest.mark.parametrize("api", [False, True])
@pytest.mark.parametrize("exc", [BackfillInputError("bad dates"), RegistryError("bad dates")])
def test_bad_input_exits_2_with_the_message(exc, api, capsys):
    with pytest.raises(typer.Exit) as got:
        run(exc, api=api)
    assert got.value.exit_code == 2
    assert "error: bad dates" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ConnectTimeout("slow", request=REQUEST),
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.RemoteProtocolError("cut", request=REQUEST),  # any TransportError
        ConnectionRefusedError("refused"),
        OSError("no route"),
    ],
)
def test_unreachable_api_exits_2_naming_the_url(exc, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = {PREFECT_API_URL: "http://127.0.0.1:9/api"}
    with temporary_settings(url), pytest.raises(typer.Exit) as got:
        run(exc, api=True)
    assert got.value.exit_code == 2
    text = " ".join(capsys.readouterr().err.split())
    assert "cannot reach the Prefect API at http://127.0.0.1:9/api" in text, text


@pytest.mark.parametrize("exc", [OSError("disk full"), httpx.ConnectError("x", request=REQUEST)])
def test_outside_api_calls_an_oserror_propagates(exc):
    with pytest.raises(type(exc)):
        run(exc, api=False)


@pytest.mark.parametrize("api", [False, True])
@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("bug"),
        ValueError("not bad input"),
        KeyError("k"),
        httpx.HTTPStatusError(
            "500", request=REQUEST, response=httpx.Response(500, request=REQUEST)
        ),
    ],
)
def test_anything_else_propagates(exc, api):
    with pytest.raises(type(exc)):
        run(exc, api=api)


def test_exit_passes_through():
    with pytest.raises(typer.Exit) as got:
        run(typer.Exit(1), api=True)
    assert got.value.exit_code == 1


def test_one_small_documented_module_per_command_group():
    package = Path(errors.__file__).parent
    modules = {p.stem: p for p in package.glob("*.py")}
    groups = [
        "app",
        "errors",
        "stores",
        "data",
        "stack",
        "bootstrap",
        "backfill",
        "status",
        "operate",
    ]
    assert set(groups) <= set(modules)
    for name, path in modules.items():
        text = path.read_text()
        assert len(text.splitlines()) < 400, name
        assert text.startswith('"""'), f"{name} has no docstring"
    # Only errors.py matches exceptions; nothing matches them by class name any more.
    assert not [n for n, p in modules.items() if "__name__ in" in p.read_text()]
