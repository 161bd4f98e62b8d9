"""Local infrastructure, apart from the product: the stack (server, workers, warm servers as
subprocesses), the Postgres scale profile's admin, scratch projects, the synthetic source
and `make demo`.

May import core, adapters and deploy; never clickstream.pipelines (import-linter checks it).
"""
