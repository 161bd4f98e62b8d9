"""The scale profile: Prefect server on PostgreSQL, dbt and the ledger on PostgreSQL.

Configuration only: every switch is an environment variable (see .env.postgres.example).
"""

from __future__ import annotations

from clickstream import settings
from clickstream.adapters.warehouse import pg_dsn, pg_url


def prefect_database_url() -> str:
    cfg = settings.get()
    return cfg.prefect_database_url or pg_url(cfg.prefect_pg_database, "asyncpg")


def ensure_database(name: str) -> bool:
    """CREATE DATABASE if it does not exist (Postgres has no IF NOT EXISTS for it)."""
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(pg_dsn("postgres"))
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
    finally:
        con.close()


def prepare_postgres() -> None:
    cfg = settings.get()
    ensure_database(cfg.prefect_pg_database)
    ensure_database(cfg.pg_database)


def postgres_reachable(timeout: float = 2.0) -> tuple[bool, str]:
    import psycopg2

    try:
        psycopg2.connect(pg_dsn("postgres"), connect_timeout=int(max(timeout, 1))).close()
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        return False, f"PostgreSQL not reachable at {pg_dsn('postgres')}: {exc}".strip()


def postgres_env_defaults() -> dict[str, str]:
    """What the workers (and your shell) need for the postgres profile, unless already set:
    dbt on Postgres and the ledger in the warehouse database."""
    cfg = settings.get()
    return {
        "CLICKSTREAM_DBT_TARGET": "postgres",
        "CLICKSTREAM_LEDGER_URL": cfg.ledger_url or pg_url(cfg.pg_database),
    }


def drop_database(name: str) -> None:
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(pg_dsn("postgres"))
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = %s and pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
    finally:
        con.close()
