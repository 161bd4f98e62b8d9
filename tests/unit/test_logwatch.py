"""The log watch (clickstream.local.logwatch) on synthetic log text: no server, no Prefect."""

from __future__ import annotations

import pytest

from clickstream.local import log_allowlist, logwatch
from clickstream.local.logwatch import Allow, Finding, scan_text

SERVER_TRACEBACK = """\
22:01:02.100 | INFO    | prefect.server.events.triggers - Automation a, trigger t covers event
22:01:02.345 | ERROR   | prefect.server.events.triggers - Error in message handler
Traceback (most recent call last):
  File "/x/sqlalchemy/engine/base.py", line 1967, in _exec_single_context
    self.dialect.do_execute(
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/x/prefect/server/events/triggers.py", line 1002, in increment_bucket
    await session.execute(
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked
[SQL: INSERT INTO automation_bucket ...]
(Background on this error at: https://sqlalche.me/e/20/e3q8)
22:01:03.000 | INFO    | prefect.server.events.triggers - next
"""

# What a deliberately failing dbt build prints through the worker (flow-run logger lines).
FLOW_RUN_FAILURE = """\
10:00:00.000 | INFO    | Flow run 'backfill-us-flagship-2026-10-16-a1' - building
10:00:05.000 | ERROR   | Flow run 'backfill-us-flagship-2026-10-16-a1' - Encountered exception during execution: DbtBuildError('dbt build failed: test x: fail')
Traceback (most recent call last):
  File "/x/prefect/flow_engine.py", line 1330, in run_context
    yield self
  File "/x/clickstream/adapters/dbt/runner.py", line 135, in invoke_dbt
    raise DbtBuildError(failure_message(outcome, res.exception))
clickstream.adapters.dbt.runner.DbtBuildError: dbt build failed: test x: fail
10:00:05.100 | INFO    | Flow run 'backfill-us-flagship-2026-10-16-a1' - Finished in state Failed('Flow run encountered an exception: DbtBuildError: dbt build failed: test x: fail')
10:00:05.200 | ERROR   | Flow run 'backfill-us-flagship-2026-10-16-a1' - Engine execution exited with unexpected exception
Traceback (most recent call last):
  File "/x/prefect/flow_engine.py", line 2268, in run_flow
    ret_val = run_flow_sync(**kwargs)
clickstream.adapters.dbt.runner.DbtBuildError: dbt build failed: test x: fail
"""


def test_server_traceback_is_found_with_file_line_record_and_exception():
    (f,) = scan_text(SERVER_TRACEBACK, "server.log")
    assert f.file == "server.log" and f.line == 2
    assert f.record.startswith("22:01:02.345 | ERROR   | prefect.server.events.triggers")
    # The chained exception that ended the block, not its cause and not the SQL lines.
    assert (
        f.exception
        == "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked"
    )
    assert f.source == "prefect"
    assert "server.log:2" in str(f) and "database is locked" in str(f)


def test_bare_traceback_is_a_finding():
    text = (
        "Worker started!\nTraceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'a'\n"
    )
    (f,) = scan_text(text, "worker-1.log", first_line=10)
    assert (f.line, f.record, f.exception, f.source) == (11, "", "KeyError: 'a'", "prefect")


def test_a_warning_with_its_traceback_is_not_a_finding_but_a_later_traceback_is():
    warning = "12:00:00.000 | WARNING | prefect.FlowRunCancellingObserver - websocket failed\n"
    tb = 'Traceback (most recent call last):\n  File "x"\nOSError: boom\n'
    assert scan_text(warning + tb) == []
    # Printed well after the warning (here after a thread's header and other output): bare.
    later = warning + "some output\nmore output\nException in thread t:\n" + tb
    (f,) = scan_text(later)
    assert (f.line, f.record, f.exception) == (5, "", "OSError: boom")


def test_error_line_without_traceback_is_not_a_finding():
    text = "12:00:00.000 | ERROR   | Flow run 'x' - Finished in state Failed('dbt build failed')\n"
    assert scan_text(text) == []


def test_uvicorn_error_and_worker_machinery_are_prefect_source():
    text = (
        "ERROR:    Exception in ASGI application\nTraceback (most recent call last):\n"
        '  File "a"\nRuntimeError: x\n'
        "12:00:00.000 | ERROR   | prefect.flow_runs.worker - Failed to submit flow run\n"
        'Traceback (most recent call last):\n  File "b"\nhttpx.ConnectError: refused\n'
    )
    a, b = scan_text(text)
    assert (a.line, a.exception, a.source) == (1, "RuntimeError: x", "prefect")
    assert (b.line, b.exception, b.source) == (5, "httpx.ConnectError: refused", "prefect")


def test_flow_run_failure_report_is_flow_run_source_and_fails_without_an_entry():
    a, b = scan_text(FLOW_RUN_FAILURE, "worker-1.log")
    assert (a.source, a.line, b.source, b.line) == ("flow-run", 2, "flow-run", 10)
    assert (
        a.exception
        == b.exception
        == "clickstream.adapters.dbt.runner.DbtBuildError: dbt build failed: test x: fail"
    )
    assert not logwatch.allowed(a, []) and not logwatch.allowed(b, [])


def test_the_allow_list_covers_a_failed_dbt_build_report_and_nothing_else():
    findings = scan_text(FLOW_RUN_FAILURE, "worker-1.log")
    assert all(logwatch.allowed(f) for f in findings)
    a = findings[0]
    # The same traceback from the worker's machinery or the server: still a failure.
    machinery = a.record.replace(
        "Flow run 'backfill-us-flagship-2026-10-16-a1'", "prefect.flow_runs.worker"
    )
    assert not logwatch.allowed(Finding(a.file, a.line, machinery, a.exception, "prefect"))
    # Any other exception of a flow run: still a failure.
    assert not logwatch.allowed(
        Finding(a.file, a.line, a.record, "KeyError: 'store_id'", "flow-run")
    )
    other = a.record.replace("DbtBuildError(", "KeyError(")
    assert not logwatch.allowed(Finding(a.file, a.line, other, a.exception, "flow-run"))
    # The server's database errors are never on the list.
    (server,) = scan_text(SERVER_TRACEBACK, "server.log")
    assert not logwatch.allowed(server)


def test_allow_list_entry_ignores_its_line_only_and_only_for_its_source():
    entry = Allow(
        reason="tests make dbt builds fail on purpose",
        source="flow-run",
        record=r"\| Flow run '[^']+' - Encountered exception during execution",
        exception=r"DbtBuildError: dbt build failed",
    )
    flow = scan_text(FLOW_RUN_FAILURE)[0]
    assert logwatch.allowed(flow, [entry])
    # The same exception from the server's own logger is not covered by a flow-run entry.
    server = Finding(
        "server.log",
        1,
        flow.record.replace("Flow run 'x'", "prefect.server"),
        flow.exception,
        "prefect",
    )
    assert not logwatch.allowed(server, [entry])
    other = Finding(flow.file, flow.line, flow.record, "KeyError: 'boom'", "flow-run")
    assert not logwatch.allowed(other, [entry])


def test_allow_entries_need_a_reason_a_known_source_and_a_pattern():
    with pytest.raises(ValueError, match="reason"):
        Allow(reason=" ", source="flow-run", exception="x")
    with pytest.raises(ValueError, match="source"):
        Allow(reason="r", source="server", exception="x")
    with pytest.raises(ValueError, match="pattern"):
        Allow(reason="r", source="prefect")


def test_the_allow_list_entries_all_have_reasons():
    for entry in log_allowlist.ALLOW:
        assert entry.reason.strip() and (entry.record or entry.exception)


def test_text_before_the_start_offset_is_ignored(tmp_path):
    stack_dir, logs = tmp_path / "stack", tmp_path / "logs"
    logs.mkdir()
    log = logs / "server.log"
    log.write_text(SERVER_TRACEBACK)  # an earlier stack life
    logwatch.start_life(stack_dir, logs)
    logwatch.mark(stack_dir, log)
    assert logwatch.scan_logs(stack_dir, logs, []) == []
    with log.open("a") as fh:
        fh.write("22:05:00.000 | INFO    | uvicorn - started\n" + SERVER_TRACEBACK)
    (f,) = logwatch.scan_logs(stack_dir, logs, [])
    # The line number counts from the top of the file, across the old text.
    assert f.line == SERVER_TRACEBACK.count("\n") + 3
    assert f.file == str(log)


def test_a_restart_keeps_the_first_offset_and_a_new_life_resets_it(tmp_path):
    stack_dir, logs = tmp_path / "stack", tmp_path / "logs"
    logs.mkdir()
    log = logs / "worker-1.log"
    logwatch.start_life(stack_dir, logs)
    logwatch.mark(stack_dir, log)
    log.write_text(FLOW_RUN_FAILURE)
    logwatch.mark(stack_dir, log)  # the worker restarted in the same life
    assert len(logwatch.scan_logs(stack_dir, logs, [])) == 2
    logwatch.start_life(stack_dir, logs)  # `make down` then `make up`
    assert logwatch.scan_logs(stack_dir, logs, []) == []


def test_report_names_file_line_and_exception():
    findings = scan_text(SERVER_TRACEBACK, "server.log")
    text = logwatch.report(findings)
    assert "1 ERROR traceback(s)" in text and "server.log:2" in text
    assert "database is locked" in text and "log_allowlist.py" in text
    assert "no ERROR tracebacks" in logwatch.report([])


CANCELLED_ASYNC_RUN = """\
22:22:29.926 | ERROR   | Flow run 'acrid-turtle' - Finished in state Running()
22:22:29.937 | ERROR   | asyncio - unhandled exception during asyncio.run() shutdown
task: <Task finished name='Task-11' coro=<run_flow_async() done> exception=TerminationSignal(15)>
Traceback (most recent call last):
  File "/x/prefect/utilities/engine/__init__.py", line 99, in _prefect_sigterm_handler
    raise TerminationSignal(signal=sig_num)
prefect.exceptions.TerminationSignal

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/prefect/flow_engine.py", line 1997, in initialize_run
    raise TerminationSignal(signal.SIGTERM) from exc
prefect.exceptions.TerminationSignal: 15
22:22:29.950 | INFO    | prefect.engine - Execution of flow run '4854' was terminated.
"""


def test_a_cancelled_async_run_is_allowed_in_a_worker_log_only():
    (f,) = scan_text(CANCELLED_ASYNC_RUN, "/s/logs/worker-1.log")
    assert (f.line, f.source) == (2, "prefect")
    assert f.exception == "prefect.exceptions.TerminationSignal: 15"
    assert logwatch.allowed(f)
    (in_server_log,) = scan_text(CANCELLED_ASYNC_RUN, "/s/logs/server.log")
    assert not logwatch.allowed(in_server_log)


def _one(record: str, exception: str, file: str = "/s/logs/worker-1.log") -> Finding:
    text = f'{record}\nTraceback (most recent call last):\n  File "x", line 1\n{exception}\n'
    (f,) = scan_text(text, file)
    return f


def test_a_flow_runs_own_timeout_is_allowed_and_nothing_like_it():
    record = "22:27:48.298 | ERROR   | Flow run 'illegal-wasp' - Engine execution exited with unexpected exception"
    timeout = "prefect.flow_engine.FlowRunTimeoutError: Scope timed out after 60.0 second(s)."
    assert logwatch.allowed(_one(record, timeout))
    assert not logwatch.allowed(_one(record, "TimeoutError: the warehouse did not answer"))
    machinery = record.replace("Flow run 'illegal-wasp'", "prefect.flow_runs.worker")
    assert not logwatch.allowed(_one(machinery, timeout))


def test_the_observer_callback_bug_is_allowed_in_worker_logs_only():
    record = (
        "22:24:45.860 | ERROR   | asyncio - Exception in callback "
        "FlowRunSuspendingObserver._handle_polling_task_done(<Task cancell...rvices.py:21>>)"
    )
    assert logwatch.allowed(_one(record, "asyncio.exceptions.CancelledError"))
    assert not logwatch.allowed(
        _one(record, "asyncio.exceptions.CancelledError", "/s/logs/server.log")
    )
    assert not logwatch.allowed(_one(record, "KeyError: 'x'"))
    other = record.replace("FlowRunSuspendingObserver._handle_polling_task_done", "Server.serve")
    assert not logwatch.allowed(_one(other, "asyncio.exceptions.CancelledError"))


def test_the_allowed_flow_run_exception_is_the_real_class_where_it_lives_now():
    """The allow-list names DbtBuildError by its module path: a move of the class must move
    the entry too, or every failed-build test's teardown fails (and this test first)."""
    import re

    from clickstream.adapters.dbt.runner import DbtBuildError

    path = f"{DbtBuildError.__module__}.{DbtBuildError.__qualname__}: dbt build failed: x"
    entries = [a for a in log_allowlist.ALLOW if a.exception and "DbtBuildError" in a.exception]
    assert entries and all(re.search(a.exception, path) for a in entries)
