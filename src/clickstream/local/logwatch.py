"""Watch Prefect's own logs: ERROR tracebacks in a stack's server and worker logs.

A stack (``clickstream.local.stack``) appends each process's output to ``<state>/logs/<name>.log``
(server.log, worker-N.log, warm-N.log) across restarts. When the first process of a stack
life starts, the size of every log file is recorded (``<state>/stack/logwatch.json``); a
process started later in the same life (a restarted server or worker) records the size of
its own log if it is not recorded yet. :func:`scan_stack` reads only what was written
after those offsets, so an earlier stack's tracebacks are never reported again.

What is a finding (see the README's "Tests" section):

* a log record at ERROR or CRITICAL (Prefect's ``HH:MM:SS.mmm | ERROR   | logger - msg``,
  or uvicorn's ``ERROR:    msg``) followed by a ``Traceback (most recent call last):``
  block: the finding names the file, the line of the record, the record and the last
  exception line of the block (after chained exceptions, the one that ended it);
* any bare Python traceback: a traceback block no log record introduces (none on the
  ``ATTACHED_LINES`` lines before it; e.g. a thread's or a process's uncaught exception).

A traceback attached to a record below ERROR is that record's ``exc_info``: Prefect decided
the condition is handled (e.g. ``WARNING ... websocket failed ... Switching to polling
mode`` while the server restarts), so it is not a finding.

Where it came from: ``source`` is ``"flow-run"`` when the record is a flow run's or task
run's own logger (Prefect formats those as ``Flow run 'name' - ...`` / ``Task run 'name' -
...``: the product reporting a failed partition), else ``"prefect"`` (the server, the
worker's machinery, uvicorn, docket, SQLAlchemy, or anything unattributed). Every finding
fails the check unless an entry of the one allow-list (``clickstream.local.log_allowlist``)
matches it; an entry names the source it applies to, so an entry written for a flow run's
failure report can never hide a server traceback.

An ERROR record without a traceback (e.g. ``Finished in state Failed(...)``) is not a
finding: it is how a run reports its outcome, and the outcome is what the tests assert.

Standard library only: bench, the demo and the tests import it without Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from clickstream.local.log_allowlist import ALLOW, Allow

OFFSETS_FILE = "logwatch.json"

# Prefect's console format: "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (?P<level>[A-Z]+) *\| (?P<rest>.*)$")
# uvicorn's own default format ("ERROR:    Exception in ASGI application"), in case a
# uvicorn logger is configured outside Prefect's logging.yml.
UVICORN_RECORD = re.compile(r"^(?P<level>ERROR|CRITICAL|WARNING|INFO|DEBUG):\s+(?P<rest>.*)$")
TRACEBACK_START = re.compile(
    r"^\s*[+|]?\s*(?:Exception Group )?Traceback \(most recent call last\):"
)
CHAIN = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
# A flow run's or task run's own logger, as Prefect formats it.
RUN_LOGGER = re.compile(r"^(?:Flow|Task) run '")
ERROR_LEVELS = ("ERROR", "CRITICAL")
# A record's traceback starts at most this many lines after it (asyncio puts a "task: ..." or
# "handle: ..." line between); further away it is a bare traceback.
ATTACHED_LINES = 3


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based line of the record (or of "Traceback" for a bare one)
    record: str  # the ERROR line ("" for a bare traceback)
    exception: str  # the exception line that ended the traceback
    source: str  # "prefect" or "flow-run"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        head = self.record or "(bare traceback)"
        return f"{where}: [{self.source}] {head}\n    -> {self.exception}"


def _strip(line: str) -> str:
    return line.rstrip("\r\n")


def _exception_line(block: list[str]) -> str:
    """The last exception line of a traceback block (the one that ended it)."""
    for line in reversed(block):
        text = line.strip().lstrip("|+").strip()
        if not text or text in CHAIN or TRACEBACK_START.match(text):
            continue
        if line[:1] in (" ", "\t") and not line.lstrip().startswith(("|", "+")):
            continue  # a frame or source line
        return text
    return block[-1].strip() if block else ""


def scan_text(text: str, file: str = "<text>", first_line: int = 1) -> list[Finding]:
    """Every traceback in ``text`` (whose first line is line ``first_line`` of ``file``)."""
    lines = text.splitlines()
    findings: list[Finding] = []
    last_record: tuple[int, str, str] | None = None  # (line number, text, level)
    i = 0
    while i < len(lines):
        line = _strip(lines[i])
        m = RECORD.match(line) or UVICORN_RECORD.match(line)
        if m:
            last_record = (first_line + i, line, m.group("level"))
            i += 1
            continue
        if not TRACEBACK_START.match(line):
            # Other text (a record's continuation lines, dbt's or a launcher's output) is
            # skipped; a traceback counts as a record's only within ATTACHED_LINES of it.
            i += 1
            continue
        start = i
        block = [line]
        i += 1
        while i < len(lines):
            nxt = _strip(lines[i])
            if RECORD.match(nxt):
                break
            if nxt.startswith((" ", "\t", "|", "+")) or not nxt.strip():
                block.append(nxt)
                i += 1
                continue
            if nxt in CHAIN or TRACEBACK_START.match(nxt):
                block.append(nxt)
                i += 1
                continue
            # The exception line ends this traceback unless a chained one follows it.
            block.append(nxt)
            i += 1
            ahead = i
            while ahead < len(lines) and not _strip(lines[ahead]).strip():
                ahead += 1
            if ahead < len(lines) and _strip(lines[ahead]) in CHAIN:
                continue
            # An exception message may span several unindented lines; those are not a
            # new record and not a traceback: keep them out of the exception line.
            break
        while block and not block[-1].strip():
            block.pop()
        exception = _exception_line(block)
        attached = last_record is not None and (
            first_line + start - last_record[0] <= ATTACHED_LINES
        )
        if attached and last_record[2] in ERROR_LEVELS:
            rec_line, rec_text, _ = last_record
            rest = (RECORD.match(rec_text) or UVICORN_RECORD.match(rec_text)).group("rest")
            source = "flow-run" if RUN_LOGGER.match(rest) else "prefect"
            findings.append(Finding(file, rec_line, rec_text, exception, source))
        elif not attached:
            findings.append(Finding(file, first_line + start, "", exception, "prefect"))
        last_record = None  # one traceback per record
    return findings


def scan_file(path: Path, offset: int = 0) -> list[Finding]:
    """Tracebacks written to ``path`` after byte ``offset``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if offset > len(data):  # the file was replaced: everything in it is new
        offset = 0
    first_line = data[:offset].count(b"\n") + 1
    return scan_text(data[offset:].decode("utf-8", "replace"), str(path), first_line)


def allowed(f: Finding, allow_list: list[Allow] | None = None) -> bool:
    if allow_list is None:
        allow_list = ALLOW
    return any(a.matches(f) for a in allow_list)


# -- offsets: what a stack life wrote -----------------------------------------------------
def _offsets_path(stack_dir: Path) -> Path:
    return stack_dir / OFFSETS_FILE


def read_offsets(stack_dir: Path) -> dict[str, int]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(_offsets_path(stack_dir).read_text())
        return {str(k): int(v) for k, v in data.items()}
    return {}


def _write_offsets(stack_dir: Path, offsets: dict[str, int]) -> None:
    stack_dir.mkdir(parents=True, exist_ok=True)
    tmp = _offsets_path(stack_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(offsets, indent=2, sort_keys=True))
    os.replace(tmp, _offsets_path(stack_dir))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def start_life(stack_dir: Path, log_dir: Path) -> None:
    """A new stack life begins: every existing log counts from its current end."""
    offsets = {p.name: _size(p) for p in sorted(log_dir.glob("*.log"))} if log_dir.is_dir() else {}
    _write_offsets(stack_dir, offsets)


def mark(stack_dir: Path, log: Path) -> None:
    """A process is about to append to ``log``: scan it from here unless this stack life
    already scans it from earlier (a restart keeps the first offset)."""
    offsets = read_offsets(stack_dir)
    if log.name not in offsets:
        offsets[log.name] = _size(log)
        _write_offsets(stack_dir, offsets)


def scan_logs(
    stack_dir: Path, log_dir: Path, allow_list: list[Allow] | None = None
) -> list[Finding]:
    """Findings in every log of this stack life that the allow-list does not cover.

    A log file with no recorded offset (written by something the stack did not start
    through ``Stack._spawn``) is read whole."""
    offsets = read_offsets(stack_dir)
    out = []
    if log_dir.is_dir():
        for path in sorted(log_dir.glob("*.log")):
            for f in scan_file(path, offsets.get(path.name, 0)):
                if not allowed(f, allow_list):
                    out.append(f)
    return out


def report(
    findings: list[Finding], allow_module: str = "src/clickstream/local/log_allowlist.py"
) -> str:
    if not findings:
        return "log watch: no ERROR tracebacks in the Prefect server and worker logs"
    lines = [f"log watch: {len(findings)} ERROR traceback(s) in the Prefect logs:"]
    lines += [f"  {f}" for f in findings]
    lines.append(
        f"  (a finding that must be tolerated needs an entry with its reason in {allow_module})"
    )
    return "\n".join(lines)
