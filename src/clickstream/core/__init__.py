"""The pure core: stores, windows, partition states and policies, requests, classification,
lanes, the claim decision, child-run parameters, the store run's plan, the partition spec,
the grid and the health verdicts.

Standard library, pendulum, pydantic, PyYAML, clickstream.settings and clickstream.names
only: no Prefect, SQLAlchemy, DuckDB, dbt or psycopg2 (import-linter checks it, `make lint`).
Everything here is unit-tested without a server.
"""
