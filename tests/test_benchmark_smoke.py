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


def test_factored_kernel_ab_prints_a_row_per_model_and_length():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "factored_ab.py"), "--archs",
         "synth_dense_base,synth_dense_vanilla_base", "--lengths", "8,16", "--tokens", "32",
         "--repeats", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines()
            if line.startswith("| synth_")]
    assert [(arch.strip(), int(keys)) for arch, keys, *_ in rows] == [
        ("synth_dense_base", 8), ("synth_dense_base", 16),
        ("synth_dense_vanilla_base", 8), ("synth_dense_vanilla_base", 16)]
    for _, _, factored, materialized, speedup in rows:
        assert float(factored) > 0 and float(materialized) > 0
        ratio = float(materialized) / float(factored)
        assert abs(float(speedup.strip().rstrip("x")) - ratio) <= 0.01 + 0.05 * ratio
