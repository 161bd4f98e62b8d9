"""One error-handling wrapper for every command: bad input and an unreachable API exit 2."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, ParamSpec, TypeVar

import httpx
import typer
from rich.console import Console

from clickstream.core.requests import BackfillInputError
from clickstream.core.stores import RegistryError

P = ParamSpec("P")
T = TypeVar("T")

console = Console()
err = Console(stderr=True)

# Input a person got wrong: a request that does not validate, a store file or id that does not.
BAD_INPUT: tuple[type[Exception], ...] = (BackfillInputError, RegistryError)

# The Prefect API did not answer: refused, timed out, a broken connection.
UNREACHABLE: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.TransportError,
    ConnectionError,
    OSError,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def reported_errors(*, api: bool = False) -> Iterator[None]:
    """Bad input -> exit 2 with ``error: <message>``. With ``api=True`` (around the calls to the
    Prefect API only: elsewhere an OSError is a local problem) an unreachable API -> exit 2,
    naming PREFECT_API_URL. Anything else propagates, traceback and all."""
    try:
        yield
    except BAD_INPUT as exc:
        fail(str(exc))
    except UNREACHABLE as exc:
        if not api:
            raise
        from prefect.settings import PREFECT_API_URL

        fail(f"cannot reach the Prefect API at {PREFECT_API_URL.value()}: {exc}")


def reports_errors(command: Callable[P, T]) -> Callable[P, T]:
    """A command whose bad input exits 2 (see reported_errors); Typer reads its signature."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with reported_errors():
            return command(*args, **kwargs)

    return wrapper


def run_api(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that talks to the Prefect API, under reported_errors(api=True)."""
    with reported_errors(api=True):
        return asyncio.run(coro)
