"""`python -m clickstream.cli`: the same as the `clickstream` command."""

from clickstream.cli.app import app

app()
