"""``clickstream``: every operator action in one command-line tool.

The top of the package: the CLI may import anything below it (settings, names, core,
adapters, pipelines, local, deploy); nothing imports the CLI. ``app`` (cli/app.py) wires one
module per command group (stores, data, stack, bootstrap, backfill, status, operate); every
command reports bad input and an unreachable Prefect API the same way (cli/errors.py).
"""

from clickstream.cli.app import app

__all__ = ["app"]
