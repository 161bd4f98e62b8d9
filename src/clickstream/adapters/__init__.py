"""I/O behind small interfaces: the ledger, the landing zone (raw events, fingerprints), the
warehouse (DuckDB or Postgres), the dbt invocation and the Prefect API.

May import clickstream.core, settings and names; never clickstream.pipelines, cli, local.
"""
