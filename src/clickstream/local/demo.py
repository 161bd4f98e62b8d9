"""`make demo`: the main job on embedded defaults, after `make up` and `make deploy`.

Lands two weeks of synthetic events for every example store, backfills them through the
deployed orchestrator (the same path as the UI and the nightly schedule), seven days per
child run, prints the grid, checks Prefect's own logs for ERROR tracebacks
(``clickstream.local.logwatch``: non-zero exit if any) and leaves the stack up for exploring.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from clickstream.core.stores import load_registry
from clickstream.core.windows import local_today
from clickstream.local import logwatch
from clickstream.local.stack import Stack, StackConfig
from clickstream.local.synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--events-per-day", type=int, default=20000)
    args = parser.parse_args(argv)
    console = Console()

    registry = load_registry()
    stores = registry.active
    # The last complete local day that every store has finished.
    end = min(local_today(s.timezone) for s in stores) - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    console.rule(f"1/2 landing synthetic events {start} .. {end}")
    summary = generate(stores, start, end, args.events_per_day)
    console.print(
        f"{summary.rows:,} events in {summary.files} Parquet files ({summary.seconds:.1f}s)"
    )

    console.rule("2/2 backfill through the deployed orchestrator")
    cli = str(Path(sys.executable).with_name("clickstream"))
    code = subprocess.call(
        [cli, "backfill", "--start", str(start), "--end", str(end), "--days-per-run", "7"]
    )

    from prefect.settings import PREFECT_API_URL

    ui = (PREFECT_API_URL.value() or "").removesuffix("/api")
    # The log watch: Prefect's own server and worker logs of this stack life.
    findings = Stack(StackConfig()).log_findings()
    console.rule("log watch: Prefect server and worker logs")
    console.print(logwatch.report(findings), markup=False, highlight=False, soft_wrap=True)
    if findings:
        console.print(
            "The demo's backfill may have completed, but Prefect logged ERROR tracebacks: "
            "that is a defect to fix, so the demo exits non-zero.",
            style="bold red",
        )
        code = code or 1
    console.rule("demo done" if code == 0 else "demo finished with failures")
    console.print(f"Prefect UI: {ui}  (deployments, the backfill run, its grid artifact)")
    console.print(f"Status again: clickstream status --start {start} --end {end}")
    console.print("The stack keeps running; `make down` stops it.")
    return code


if __name__ == "__main__":
    sys.exit(main())
