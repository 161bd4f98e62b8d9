"""The one allow-list of the log watch (``clickstream.local.logwatch``).

Every entry is an exact pattern for a traceback that the stack's logs may show without
failing a test, the benchmark or ``make demo``, with its reason in ``reason`` (and in a
comment above it). ``source`` scopes it: ``"flow-run"`` entries match only tracebacks a
flow run's or task run's own logger printed (``Flow run '...' - ...``), never the server's
or the worker's; ``"prefect"`` entries match the rest and need the strongest reason.
``record`` and ``exception`` are regexes searched in the ERROR line and in the exception
line, ``file`` one matched against the log file's name; every one given must match.

Keep it short: a traceback nobody can explain is a defect to fix, not an entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class _Finding(Protocol):
    source: str
    file: str
    record: str
    exception: str


@dataclass(frozen=True)
class Allow:
    """One allow-list entry: ``reason`` says why; ``source`` is the source it applies to
    (``"flow-run"`` or ``"prefect"``); ``record`` and ``exception`` are regexes searched in
    the finding's record and exception lines, ``file`` one matched against the log file's
    name (every one given must match)."""

    reason: str
    source: str
    record: str | None = None
    exception: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("an allow-list entry needs its reason")
        if self.source not in ("flow-run", "prefect"):
            raise ValueError(f"allow-list source must be flow-run or prefect, not {self.source!r}")
        if self.record is None and self.exception is None:
            raise ValueError("an allow-list entry needs a record or an exception pattern")

    def matches(self, f: _Finding) -> bool:
        if f.source != self.source:
            return False
        if self.file is not None and not re.fullmatch(self.file, Path(f.file).name):
            return False
        if self.record is not None and not re.search(self.record, f.record):
            return False
        return self.exception is None or bool(re.search(self.exception, f.exception))


# A flow run's own report of a failed partition. When a dbt build fails (bad data: the
# tests add bad events on purpose; in production a real data error), the store flow raises
# DbtBuildError and Prefect's flow engine logs it twice through the flow run's logger, each
# time with the traceback: "Encountered exception during execution" (the flow failed) and
# "Engine execution exited with unexpected exception" (the run's process ends non-zero).
# The run ends Failed with the failing dbt nodes named, the ledger says `failed`, and the
# orchestrator retries it: that is the product working, not a defect of Prefect. Only
# DbtBuildError is covered: any other exception of a flow run is still a finding.
FLOW_RUN_FAILURE_RECORD = (
    r"^\d\d:\d\d:\d\d\.\d{3} \| ERROR +\| Flow run '[^']+' - "
    r"(?:Encountered exception during execution: DbtBuildError\(|"
    r"Engine execution exited with unexpected exception$)"
)
ALLOW: list[Allow] = [
    Allow(
        reason="a flow run reporting its failed dbt build (DbtBuildError): expected outcome",
        source="flow-run",
        record=FLOW_RUN_FAILURE_RECORD,
        exception=r"^clickstream\.adapters\.dbt\.runner\.DbtBuildError: dbt build failed: ",
        file=r"worker-\d+\.log",
    ),
    # A flow run ended by its own timeout (CLICKSTREAM_DBT_RUN_TIMEOUT_SECONDS on the store
    # flow; tests/e2e/own/test_recovery.py's stuck run on purpose): the engine logs "Flow run
    # exceeded timeout" (no traceback), the run ends TimedOut (type FAILED) and the run's
    # process exits with the FlowRunTimeoutError logged with its traceback. The bound doing
    # its job; the orchestrator retries such a run.
    Allow(
        reason="a flow run reporting that its own timeout ended it (FlowRunTimeoutError)",
        source="flow-run",
        record=r"^\d\d:\d\d:\d\d\.\d{3} \| ERROR +\| Flow run '[^']+' - "
        r"Engine execution exited with unexpected exception$",
        exception=r"^prefect\.flow_engine\.FlowRunTimeoutError: Scope timed out after "
        r"[0-9.]+ second\(s\)\.$",
        file=r"worker-\d+\.log",
    ),
    # A Prefect 3.8.8 bug in a flow run's process after its server was unreachable (the
    # tests restart the server on purpose): the run's cancelling/suspending observers
    # switch from the websocket to polling (a WARNING with its traceback, not a finding),
    # and when the run ends the done-callback of their cancelled polling task calls
    # task.exception() (prefect/_internal/observers.py, _handle_polling_task_done), which
    # raises CancelledError inside asyncio's callback. The run has already finished (it
    # reported its final state first); nothing is lost.
    Allow(
        reason="Prefect's observer done-callback raising CancelledError after a server outage",
        source="prefect",
        record=r"^\d\d:\d\d:\d\d\.\d{3} \| ERROR +\| asyncio - Exception in callback "
        r"FlowRun(?:Cancelling|Suspending)Observer\._handle_polling_task_done\(",
        exception=r"^asyncio\.exceptions\.CancelledError$",
        file=r"worker-\d+\.log",
    ),
    # Prefect cancelling an async flow run (the orchestrator: cancelled by an operator, or by
    # the tests on purpose). The worker sends SIGTERM to the run's process; Prefect's SIGTERM
    # handler (prefect/utilities/engine) raises TerminationSignal inside the flow's event
    # loop, and asyncio logs it while asyncio.run() shuts down. The run ends Cancelled as
    # asked and its children are cancelled (tests/e2e/shared/test_faults.py checks both). Only the
    # flow-run process raises TerminationSignal, and only its output reaches a worker log.
    Allow(
        reason="an async flow run's process ending on Prefect's SIGTERM when it is cancelled",
        source="prefect",
        record=r"^\d\d:\d\d:\d\d\.\d{3} \| ERROR +\| asyncio - "
        r"unhandled exception during asyncio\.run\(\) shutdown$",
        exception=r"^prefect\.exceptions\.TerminationSignal: 15$",
        file=r"worker-\d+\.log",
    ),
    # The server down on purpose (tests/e2e/own/test_recovery.py restarts it mid-backfill): a
    # flow run that reports while it is down exits with the connection error, and the worker
    # fails to record that state until the server is back. The orchestrator rides the outage
    # out and retries the run (the test checks every partition completes once). Only a
    # refused connection, only in worker logs: a server that errs logs it in server.log.
    Allow(
        reason="a run or the worker meeting the Prefect server while it is down on purpose",
        source="prefect",
        record=r"^\d\d:\d\d:\d\d\.\d{3} \| ERROR +\| prefect\.(?:engine - Execution of flow run "
        r"'[0-9a-f-]+' exited with unexpected exception|runner\.state_proposer - Failed to "
        r"update state of flow run '[0-9a-f-]+')$",
        exception=r"^httpx\.ConnectError: (?:\[Errno 111\] Connection refused|All connection "
        r"attempts failed)$",
        file=r"worker-\d+\.log",
    ),
]
