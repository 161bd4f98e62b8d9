"""The package's architecture, checked: layers, no cycles, small modules, one place that reads
configuration, and a warm-server preload list that names real modules (issue 20)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clickstream import settings

ROOT = settings.REPO_ROOT
PACKAGE = ROOT / "src" / "clickstream"
BIN = Path(sys.executable).parent
# The one cohesive state machine allowed past the size limit (README, "What is in the repository").
LARGE_OK = {"warm/server.py"}
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=str(project),
        env={"PATH": str(BIN), "PYTHONPATH": str(project / "src"), "HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        ("core/windows.py", "from clickstream.pipelines import store_run", "Layers"),
        ("core/grid.py", "import duckdb", "The core is pure"),
        ("adapters/landing.py", "from clickstream.cli import app", "Adapters do not reach up"),
        ("local/scratch.py", "from clickstream.pipelines.backfill import run", "Local infra"),
        ("launch.py", "import prefect", "The launcher is standard library only"),
    ],
)
def test_an_import_against_the_architecture_breaks_a_contract(tmp_path, module, upward, contract):
    project = tmp_path / "project"
    shutil.copytree(
        PACKAGE, project / "src" / "clickstream", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    target = project / "src" / "clickstream" / module
    if target.is_dir():
        target = target / "__init__.py"
    text = target.read_text()
    # Inside a function, as the code base's lazy imports are: the contracts see those too.
    target.write_text(text + f"\n\ndef _injected():\n    {upward}  # noqa\n")
    proc = _lint_imports(project)
    assert proc.returncode != 0, proc.stdout
    broken = [line for line in proc.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), proc.stdout


def test_no_import_cycles_function_level_imports_included():
    import grimp

    graph = grimp.build_graph("clickstream", cache_dir=None)
    names = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in names}
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in names:
        if name not in index:
            visit(name)
    assert cycles == [], cycles


def test_every_module_is_small_and_says_what_it_is_for():
    too_long, undocumented = [], []
    for path in modules():
        rel = path.relative_to(PACKAGE).as_posix()
        lines = path.read_text().count("\n")
        if lines > MAX_LINES and rel not in LARGE_OK:
            too_long.append(f"{rel}: {lines} lines")
        if not ast.get_docstring(ast.parse(path.read_text())):
            undocumented.append(rel)
    assert too_long == []
    assert undocumented == []


# Reading the environment: settings.py, and the three places the module docstring names.
ENV_READERS = {"settings.py", "launch.py", "warm/server.py", "adapters/dbt/invoke.py"}
ENV_READ = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(|environ\.get\(")


def test_configuration_is_read_in_one_typed_place():
    found = []
    for path in [*modules(), *sorted((ROOT / "flows").glob("*.py"))]:
        rel = path.relative_to(PACKAGE).as_posix() if PACKAGE in path.parents else str(path)
        if rel in ENV_READERS:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if ENV_READ.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_every_clickstream_variable_in_the_docs_is_a_setting():
    from clickstream.settings import Settings

    declared = {f"CLICKSTREAM_{name.upper()}" for name in Settings.model_fields}
    readme = (ROOT / "README.md").read_text()
    mentioned = set(re.findall(r"CLICKSTREAM_[A-Z_]+[A-Z]", readme))
    # PG_HOST/PORT/... are written as one row (CLICKSTREAM_PG_HOST/PORT/USER/...).
    assert mentioned - declared - {"CLICKSTREAM_PG_HOST"} == set()


def test_every_module_the_warm_server_preloads_exists():
    import importlib

    from clickstream.warm.server import PRELOAD

    for name in PRELOAD:
        importlib.import_module(name)
    project = {n for n in PRELOAD if n.startswith("clickstream.")}
    assert project == {"clickstream.pipelines.store_run", "clickstream.pipelines.backfill.run"}


def test_every_package_says_what_it_holds_and_what_it_must_not_import():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, init
