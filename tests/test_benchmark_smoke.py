"""scripts/benchmark.py at tiny sizes: it runs and writes its report. Timings are never asserted
(the machine is shared and noisy); only that every number the README quotes is produced."""

import json
import subprocess
import sys

from helpers import REPO

ARCHS = ["transformer", "dynamicconv", "synth_random_base", "synth_factorized_random_base",
         "synth_random_vanilla_base"]


def test_benchmark_smoke_run_writes_table_plot_and_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--smoke", "--out", str(tmp_path),
         "--archs", ",".join(ARCHS)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert (tmp_path / "benchmark.png").stat().st_size > 0
    table = (tmp_path / "benchmark.md").read_text()
    assert "scripts/benchmark.py --smoke" in table and "## Targets" in table
    for name in ARCHS:
        result = report["target"][name]
        assert "error" not in result, result
        assert result["params"] > 0
        for mode in ("train", "encode", "greedy", "beam"):
            entry = result["modes"][mode]
            assert entry["tok_s"] > 0 and entry["flops"] > 0, (name, mode)
            assert set(entry["ratio"]) == {"transformer", "dynamicconv"}
            for ref, runs in entry["ratio_runs"].items():
                assert min(runs) <= entry["ratio"][ref] <= max(runs)
            assert name in table
    for length, results in report["sweep"].items():
        for name in ARCHS:
            assert results[name]["modes"]["train"]["tok_s"] > 0, (length, name)
    assert "x transformer" in proc.stdout and "x dynamicconv" in proc.stdout
    # Every ratio target prints its median and the middle half of the repeats around it.
    targets = table[table.index("## Targets"):].split("\n## ")[0]
    assert "| Random train step >= 1.15x transformer |" in targets
    for row in targets.splitlines():
        if row.startswith("| Random") or row.startswith("| Factorized Random train"):
            median, spread = row.split("|")[2:4]
            low, high = map(float, spread.split("-"))
            assert low <= float(median) <= high, row
