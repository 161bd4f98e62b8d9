"""Smoke run of the benchmark script: it runs and writes a well-formed results file.
(Speed is what `make bench` measures; nothing here asserts a time.)"""

from bench import run as bench_run


def test_bench_writes_results(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert bench_run.main(repeats=1, stores=3, results=out) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert "Reproduce: `make bench`" in text
    assert "| plan time, median of 1 |" in text
    assert "3,288 partitions (3 stores x 3 years)" in text  # 3 x 1096 local days
