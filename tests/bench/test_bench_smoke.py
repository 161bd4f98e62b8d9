"""Smoke run of `make bench` on a tiny grid: it runs end to end (its own stack, the three
strategies with 1 and 7 days per child run and the seed pattern, the Prefect database
measurements, full vs lean mode, the dbt incremental run, the planner) and writes a
well-formed results file and the Gantt PNGs. Speed is what `make bench` measures; nothing
here asserts a time. The load section (`make load`) is not run here."""

import re

from bench import run as bench_run


def test_bench_smoke_writes_results_and_pictures(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert bench_run.main(smoke=True, results=out) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert "Reproduce from a clean clone: `make bench`" in text
    for section in (
        "## Targets: met or missed",
        "## 1. Makespan",
        "## 2. Dispatch overhead",
        "## 3. Planner scale",
        "## 4. Incremental cost",
        "## 5. A regular run",
        "## 6. Load",
    ):
        assert section in text
    for strategy in ("ours-d1", "ours-d7", "seed"):
        assert f"| {strategy} | " in text
        png = tmp_path / f"gantt-{strategy}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{strategy}](gantt-{strategy}.png)" in text
    # The database was measured: every strategy wrote bytes and flow runs.
    rows = re.findall(r"^\| (ours-d1|ours-d7|seed) \| ([\d,.]+) KB \| ([\d.]+) \|", text, re.M)
    assert {r[0] for r in rows} == {"ours-d1", "ours-d7", "seed"}
    assert all(float(r[1].replace(",", "")) > 0 and float(r[2]) > 0 for r in rows)
    assert "3,288 partitions (3 stores x 3 years" in text  # 3 x 1096 local days
    assert "| machine CPU busy, trigger -> end | CPU floor (busy CPU-s / cores) |" in text
    assert (tmp_path / "timings.csv").read_text().startswith("strategy,store_id,days,")
