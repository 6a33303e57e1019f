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


BOUND_CHECK = """
import argparse, sys, torch
sys.path.insert(0, "scripts")
import attention_bound, benchmark
from fairseq import utils
utils.import_user_module(argparse.Namespace(user_dir=benchmark.USER_DIR))
attention_bound.register_bound_architectures()
shape = benchmark.parse_args(["--smoke"])
dictionary = benchmark.make_dictionary(shape.vocab)
models = {name: benchmark.Runner(name, shape, dictionary, 2, 12, 6).model
          for name in [*attention_bound.BOUNDS, "synth_random_base"]}
def params(name):
    return sum(p.numel() for p in models[name].parameters())
layers = [*models["synth_random_base"].encoder.layers, *models["synth_random_base"].decoder.layers]
projections = sum(p.numel() for layer in layers
                  for module in (layer.self_attn.v_proj, layer.self_attn.out_proj)
                  for p in module.parameters())
alignments = sum(p.numel() for layer in layers for p in layer.self_attn.alignments.parameters())
assert params("projections_only_bound") - params("no_self_attention_bound") == projections
assert params("synth_random_base") - params("projections_only_bound") == alignments
x = torch.randn(12, 2, shape.embed_dim)
for name in attention_bound.BOUNDS:
    attention = models[name].decoder.layers[0].self_attn
    out, weights = attention(query=x, key=x, value=x, attn_mask=None)
    assert weights is None and out.shape == x.shape
attention = models["projections_only_bound"].encoder.layers[0].self_attn
expected = attention.out_proj(attention.v_proj(x))
assert torch.equal(attention(query=x, key=x, value=x)[0], expected)
zero = models["no_self_attention_bound"].encoder.layers[0].self_attn
assert not zero(query=x, key=x, value=x)[0].any()
print("ok")
"""


def test_attention_bounds_are_the_model_minus_its_mixing_and_projections():
    """The bound models differ from synth_random_base exactly by the alignment parameters
    (projections_only_bound) and by those plus the value and output projections
    (no_self_attention_bound), and compute what they claim."""
    proc = subprocess.run([sys.executable, "-c", BOUND_CHECK], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_attention_bound_prints_every_model_against_both_references(tmp_path):
    out = tmp_path / "bound.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "attention_bound.py"), "--smoke", "--repeats", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = out.read_text()
    assert "scripts/attention_bound.py --smoke" in table
    rows = {cells[0].strip(): cells for cells in
            (line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| "))}
    assert set(rows) >= {"no_self_attention_bound", "projections_only_bound", "transformer",
                         "dynamicconv", "synth_random_base"}
    for name in ["no_self_attention_bound", "projections_only_bound", "synth_random_base"]:
        params, mode, tok_s, *ratios = (cell.strip() for cell in rows[name][1:])
        assert mode == "train" and float(tok_s) > 0
        for ratio in ratios:  # "median (q1-q3)"
            median, spread = ratio.rstrip(")").split(" (")
            low, high = map(float, spread.split("-"))
            assert low <= float(median) <= high, ratio


CONVOLUTION_CHECK = """
import argparse, sys
sys.path.insert(0, "scripts")
import benchmark
from fairseq import utils
utils.import_user_module(argparse.Namespace(user_dir=benchmark.USER_DIR))
shape = benchmark.parse_args(["--smoke"])
dictionary = benchmark.make_dictionary(shape.vocab)
for name in ["lightconv", "dynamicconv"]:
    model = benchmark.Runner(name, shape, dictionary, 2, 12, 6).model
    print(name, sorted({type(m).__module__.rpartition(".")[2] for m in model.modules()
                        if type(m).__module__.endswith("_convolution")}))
"""


def test_benchmark_lightconv_is_lightweight_and_dynamicconv_dynamic():
    """lightconv_wmt_en_de defaults to dynamic convolutions: the benchmark's lightconv must ask
    for lightweight ones, else its row measures DynamicConv a second time."""
    proc = subprocess.run([sys.executable, "-c", CONVOLUTION_CHECK], capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-2:] == ["lightconv ['lightweight_convolution']",
                                             "dynamicconv ['dynamic_convolution']"]
