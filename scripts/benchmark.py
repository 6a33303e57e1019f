#!/usr/bin/env python
"""Side-by-side speed of fairseq architectures (built-ins and ours) on identical work.

    .venv/bin/python scripts/benchmark.py --out docs               # the run docs/benchmark.md shows
    .venv/bin/python scripts/benchmark.py --smoke --out /tmp/bench # tiny sizes, seconds (the tests)
    .venv/bin/python scripts/benchmark.py --profile synth_random_base --mode beam

Every model is built the way fairseq-train builds it (fairseq's parser with --user-dir, the
architecture from fairseq's registry, the task's build_model), at its preset with only the layer
count (and, for the sweep, our --synth-max-len) overridden. All models see the same random token
data, shapes, joined dictionary and thread count. What is timed:

- train:  one fairseq training update as its Trainer does it: task.train_step (forward, label
          smoothed cross-entropy 0.1, backward), multiply_grads(1 / ntokens), clip_grad_norm
          (norm computed, --clip-norm 0), fairseq's Adam step, zero_grad. Target tokens/s.
- encode: model.encoder in eval mode under no_grad. Source tokens/s.
- greedy, beam: fairseq's SequenceGenerator (beam 1 / beam 4, incremental decoding) forced to
          emit exactly --gen-len tokens plus EOS (min_len = max_len), so every model does the
          same work. Output tokens/s (best hypothesis, EOS included, as fairseq-generate counts).

Runs are interleaved: each repeat runs every model back to back (order rotated per repeat), after
warm-up runs that are never timed. Reported: median tokens/s, and ratios as the median of the
per-repeat ratios (a slow spell of the shared machine then hits both sides of a ratio).
While it runs it prints a line per run of each model and mode (warm-ups included) with the time
elapsed and an estimate of the time left (ETA), and a line at the end of each repeat.
Peak memory is the growth of the process's resident set (VmHWM, reset through
/proc/self/clear_refs after malloc_trim) during the first, untimed run of each model and mode:
activations, gradients and Adam's two moments (created by the first update), beam buffers; the
weights, resident before, are not in it. The same run counts matmul/convolution/attention FLOPs
with torch's FlopCounterMode; achieved GFLOP/s (FLOPs / median time) is set against the fp32
matmul rate measured here at the same thread count.
"""

import argparse
import ctypes
import gc
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_synth")

# fairseq's own models under short names; any other name is taken as a fairseq architecture.
# lightconv_wmt_en_de's convolutions are dynamic unless --*-conv-type lightweight is given.
ALIASES = {
    "transformer": ("transformer_wmt_en_de", []),
    "lightconv": ("lightconv_wmt_en_de",
                  ["--encoder-conv-type", "lightweight", "--decoder-conv-type", "lightweight"]),
    "dynamicconv": ("lightconv_wmt_en_de",
                    ["--encoder-conv-type", "dynamic", "--decoder-conv-type", "dynamic"]),
}
# lightconv_wmt_en_de's kernel sizes for its 7 encoder / 6 decoder layers; a shallower model
# takes the first ones (the cheapest), a deeper one repeats the last.
LIGHTCONV_KERNELS = {"encoder": [3, 7, 15, 31, 31, 31, 31], "decoder": [3, 7, 15, 31, 31, 31]}
DEFAULT_ARCHS = [
    "transformer", "lightconv", "dynamicconv", "synth_random_base", "synth_fixed_random_base",
    "synth_factorized_random_base", "synth_dense_base", "synth_factorized_dense_base",
    "synth_random_vanilla_base", "synth_dense_vanilla_base",
]
MODES = ["train", "encode", "greedy", "beam"]
REFERENCES = ["transformer", "dynamicconv"]
# One thread: a tiny model on two threads mostly measures OpenMP spinning on a busy machine.
SMOKE = dict(embed_dim=32, ffn_dim=64, heads=4, layers=1, seq_len=12, batch_size=2, gen_len=6,
             vocab=64, threads=1, repeats=1, warmup=1, sweep="8,16", sweep_repeats=1,
             matmul_size=128)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=",".join(DEFAULT_ARCHS),
                   help="comma-separated: transformer, lightconv, dynamicconv or any fairseq "
                        "architecture (ours included, e.g. synth_random_base)")
    p.add_argument("--modes", default=",".join(MODES), help="subset of " + ",".join(MODES))
    p.add_argument("--seq-len", type=int, default=256, help="source and target length")
    p.add_argument("--batch-size", type=int, default=8, help="sentences per batch")
    p.add_argument("--ragged", action="store_true",
                   help="sentence lengths drawn in [L/2, L], padded as fairseq pads them "
                        "(default: every sentence L tokens, no padding)")
    p.add_argument("--gen-len", type=int, help="tokens generated per sentence "
                   "(default --seq-len - 1, so with EOS the output is as long as the input)")
    p.add_argument("--beam", type=int, default=4, help="beam size of the 'beam' mode")
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    p.add_argument("--embed-dim", type=int, help="override the presets' width (512)")
    p.add_argument("--ffn-dim", type=int, help="override the presets' FFN width (2048)")
    p.add_argument("--heads", type=int, help="override the presets' heads (8)")
    p.add_argument("--vocab", type=int, default=8000, help="joined dictionary size")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: time.perf_counter; cpu: process CPU time, steadier on a busy "
                        "machine with --threads 1 (with more threads it counts OpenMP spinning)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model and mode")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs per model and mode before the timed ones; at the target "
                        "shape the first also counts FLOPs and peak memory")
    p.add_argument("--sweep", default="64,128,256,512,1024",
                   help="sequence lengths of the sweep ('' to skip); tokens per batch are kept at "
                        "--batch-size x --seq-len")
    p.add_argument("--sweep-modes", default="train,encode")
    p.add_argument("--sweep-archs", help="architectures of the sweep (default --archs)")
    p.add_argument("--sweep-repeats", type=int, default=3)
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmul")
    p.add_argument("--out", help="directory for benchmark.md, benchmark.png, benchmark.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, seconds")
    p.add_argument("--profile", metavar="ARCH", help="profile one architecture with "
                   "torch.profiler instead of benchmarking (use with --mode)")
    p.add_argument("--mode", default="train", choices=MODES, help="mode for --profile")
    p.add_argument("--trace", help="with --profile: also write a chrome trace here")
    args = p.parse_args(argv)
    if args.smoke:
        defaults = p.parse_args([])
        for key, value in SMOKE.items():  # smoke sizes, unless given on the command line
            if getattr(args, key) == getattr(defaults, key):
                setattr(args, key, value)
    args.gen_len = args.gen_len or args.seq_len - 1
    args.archs = [a for a in args.archs.split(",") if a]
    args.sweep_archs = [a for a in (args.sweep_archs or ",".join(args.archs)).split(",") if a]
    args.modes = [m for m in args.modes.split(",") if m]
    args.sweep_modes = [m for m in args.sweep_modes.split(",") if m]
    args.sweep = [int(n) for n in args.sweep.split(",") if n]
    return args


# ----------------------------------------------------------------------------- models and runs

def fairseq_args(name, args, max_len):
    """fairseq's parsed arguments for ``name`` at the benchmark's sizes."""
    from fairseq import options
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    arch, extra = ALIASES.get(name, (name, []))
    if arch not in ARCH_MODEL_NAME_REGISTRY:
        raise ValueError(f"unknown architecture {name!r}")
    model = ARCH_MODEL_NAME_REGISTRY[arch]
    sizes = ["--encoder-layers", args.layers, "--decoder-layers", args.layers]
    for flag, value in [("embed-dim", args.embed_dim), ("ffn-embed-dim", args.ffn_dim),
                        ("attention-heads", args.heads)]:
        if value:
            sizes += [f"--encoder-{flag}", value, f"--decoder-{flag}", value]
    if model == "lightconv":
        for side, kernels in LIGHTCONV_KERNELS.items():
            chosen = (kernels + kernels[-1:] * args.layers)[:args.layers]
            sizes += [f"--{side}-kernel-size-list", str(chosen).replace(" ", "")]
    if model.startswith("synth_"):
        sizes += ["--synth-max-len", max_len]
    argv = ["/dev/null", "--user-dir", USER_DIR, "--task", "translation", "--arch", arch,
            "--source-lang", "src", "--target-lang", "tgt", "--share-all-embeddings",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
            "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4",
            *map(str, sizes), *extra]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def make_dictionary(size):
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(size - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def make_sample(dictionary, bsz, length, ragged=False, seed=0):
    """A batch of random sentences, collated like fairseq's language_pair_dataset: sources
    left-padded, targets right-padded. ``ragged`` draws lengths in [length / 2, length] (the
    longest is ``length``); otherwise every sentence has ``length`` tokens and no padding."""
    import torch

    g = torch.Generator().manual_seed(seed)
    low, eos, pad = dictionary.nspecial, dictionary.eos(), dictionary.pad()
    src = torch.randint(low, len(dictionary), (bsz, length), generator=g)
    tgt = torch.randint(low, len(dictionary), (bsz, length), generator=g)
    src_lengths = torch.full((bsz,), length)
    tgt_lengths = torch.full((bsz,), length)
    if ragged:
        src_lengths = torch.randint(length // 2, length + 1, (bsz,), generator=g)
        tgt_lengths = torch.randint(length // 2, length + 1, (bsz,), generator=g)
        src_lengths[0] = tgt_lengths[0] = length
    prev = torch.full_like(tgt, pad)
    for i in range(bsz):
        n, m = int(src_lengths[i]), int(tgt_lengths[i])
        src[i, :length - n] = pad
        src[i, -1] = eos
        tgt[i, m - 1] = eos
        tgt[i, m:] = pad
        prev[i, 0] = eos  # EOS first, as fairseq shifts targets
        prev[i, 1:m] = tgt[i, :m - 1]
    return {"id": torch.arange(bsz), "nsentences": bsz, "ntokens": int(tgt_lengths.sum()),
            "target": tgt, "net_input": {"src_tokens": src, "src_lengths": src_lengths,
                                         "prev_output_tokens": prev}}


class Runner:
    """One model with its task, criterion and optimizer; ``run(mode)`` returns tokens done."""

    def __init__(self, name, args, dictionary, bsz, length, gen_len):
        import torch
        from fairseq import optim, tasks
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        self.name, self.bsz, self.length, self.gen_len, self.beam = (
            name, bsz, length, gen_len, args.beam)
        fs_args = fairseq_args(name, args, max(length, gen_len + 1))
        cfg = convert_namespace_to_omegaconf(fs_args)
        self.task = tasks.get_task("translation")(fs_args, dictionary, dictionary)
        torch.manual_seed(0)
        self.model = self.task.build_model(fs_args)
        self.criterion = self.task.build_criterion(cfg.criterion)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = sum(p.numel() for p in params)
        self.optimizer = optim.build_optimizer(cfg.optimizer, params)
        self.sample = make_sample(dictionary, bsz, length, args.ragged)
        self.generators = {}

    def run(self, mode):
        import torch

        if mode == "train":
            loss, sample_size, _ = self.task.train_step(
                self.sample, self.model, self.criterion, self.optimizer, update_num=1)
            self.optimizer.multiply_grads(1.0 / sample_size)
            self.optimizer.clip_grad_norm(0.0)
            self.optimizer.step()
            self.optimizer.zero_grad()
            return self.sample["ntokens"]
        self.model.eval()
        net_input = self.sample["net_input"]
        if mode == "encode":
            with torch.no_grad():
                self.model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
            return int(net_input["src_lengths"].sum())
        hypos = self.generator(1 if mode == "greedy" else self.beam).generate(
            [self.model], {"net_input": {k: net_input[k] for k in ("src_tokens", "src_lengths")}})
        return sum(len(h[0]["tokens"]) for h in hypos)

    def generator(self, beam):
        from fairseq.sequence_generator import SequenceGenerator

        if beam not in self.generators:
            self.generators[beam] = SequenceGenerator(
                [self.model], self.task.target_dictionary, beam_size=beam, max_len_a=0,
                max_len_b=self.gen_len, min_len=self.gen_len)
        return self.generators[beam]


# ----------------------------------------------------------------------------- measurement

def read_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None


def peak_memory_mb(fn):
    """Growth of the resident set (MB) at its peak while ``fn`` runs, or None off Linux."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back first
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        fn()
        return None
    before = read_status_kb("VmRSS")
    fn()
    return (read_status_kb("VmHWM") - before) / 1024


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(size, tries=5):
    """Best fp32 GFLOP/s of an n x n matmul at the current thread count."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def warmup_runs(args, detailed):
    """Untimed runs per model and mode: --warmup, at least one when it counts FLOPs."""
    return max(args.warmup, 1) if detailed else args.warmup


class Progress:
    """One line per measured model and mode, with the time elapsed (``log``'s prefix) and an
    estimate of the time left.

    ``plan`` counts every run still to do (warm-ups and timed repeats) per phase, model and mode;
    each is expected to take as long as the last run of the same model and mode (the sweep keeps
    the tokens per batch of the target shape), or, before there is one, the mean of the known
    runs of that mode (of any mode at the very start)."""

    def __init__(self, log):
        self.log, self.left, self.last = log, {}, {}

    def plan(self, phase, names, modes, runs):
        for name in names:
            for mode in modes:
                self.left[(phase, name, mode)] = runs

    def drop(self, phase, name, mode=None):
        """Forget the runs a model (or one of its modes) will not do: it failed."""
        for key in [k for k in self.left if k[:2] == (phase, name) and mode in (None, k[2])]:
            del self.left[key]

    def done(self, phase, name, mode, seconds, what, tokens=None):
        key = (phase, name, mode)
        self.left[key] = max(0, self.left.get(key, 0) - 1)
        self.last[(name, mode)] = seconds
        rate = f"{tokens / seconds:.0f} tok/s, " if tokens else ""
        self.log(f"  {mode} {name}, {what}: {rate}{seconds:.2f} s; ETA {self.eta()}")

    def eta(self):
        known = list(self.last.values())
        total = 0.0
        for (_, name, mode), runs in self.left.items():
            if runs:
                same_mode = [s for (_, m), s in self.last.items() if m == mode]
                guess = self.last.get((name, mode)) or statistics.mean(same_mode or known)
                total += runs * guess
        return f"{total / 60:.0f} min" if total >= 90 else f"{total:.0f} s"


def measure(names, args, dictionary, bsz, length, gen_len, modes, repeats, detailed, log,
            progress=None, phase="target"):
    """Interleaved timings of ``modes`` for every model at one shape. ``progress`` (a Progress
    whose plan has this ``phase``) prints a line per run; without one, a Progress of this call."""
    if progress is None:
        progress = Progress(log)
        progress.plan(phase, names, modes, warmup_runs(args, detailed) + repeats)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    runners, results = {}, {}
    for name in names:
        try:
            runners[name] = Runner(name, args, dictionary, bsz, length, gen_len)
            results[name] = {"params": runners[name].params, "modes": {}}
        except Exception as error:  # e.g. an architecture that cannot address this length
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            log(f"  {name}: not built ({results[name]['error']})")
            progress.drop(phase, name)
    for mode in modes:
        for name, runner in runners.items():
            entry = results[name]["modes"][mode] = {"seconds": [], "tokens": None}
            try:
                warmups = args.warmup
                if detailed:  # the first warm-up run also counts FLOPs and peak memory
                    flops = []
                    start = clock()
                    entry["peak_mb"] = peak_memory_mb(
                        lambda: flops.append(count_flops(lambda: runner.run(mode))))
                    entry["flops"] = flops[0]
                    progress.done(phase, name, mode, clock() - start,
                                  "warm-up (FLOPs, memory)")
                    warmups -= 1
                for _ in range(warmups):
                    start = clock()
                    runner.run(mode)
                    progress.done(phase, name, mode, clock() - start, "warm-up")
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {error}"
                log(f"  {name} {mode}: failed ({entry['error']})")
                progress.drop(phase, name, mode)
    for repeat in range(repeats):
        for mode in modes:
            live = [n for n in runners if "error" not in results[n]["modes"][mode]]
            shift = repeat % max(1, len(live))
            for name in live[shift:] + live[:shift]:
                start = clock()
                tokens = runners[name].run(mode)
                seconds = clock() - start
                entry = results[name]["modes"][mode]
                entry["seconds"].append(seconds)
                entry["tokens"] = tokens
                progress.done(phase, name, mode, seconds, f"repeat {repeat + 1}/{repeats}",
                              tokens)
        log(f"  repeat {repeat + 1}/{repeats} done")
    for name in runners:
        for mode, entry in results[name]["modes"].items():
            if entry["seconds"]:
                entry["tok_s"] = entry["tokens"] / statistics.median(entry["seconds"])
                entry["tok_s_runs"] = [entry["tokens"] / s for s in entry["seconds"]]
                if "flops" in entry:
                    entry["gflop_s"] = entry["flops"] / statistics.median(entry["seconds"]) / 1e9
    add_ratios(results)
    runners.clear()
    gc.collect()
    return results


def paired_ratios(entry, other):
    """Per-repeat speed ratios of two models timed side by side in the same repeats."""
    return [a / b for a, b in zip(entry.get("tok_s_runs", []), other.get("tok_s_runs", []))]


def middle_half(values):
    """(first quartile, third quartile): the spread of the noise behind a median."""
    if len(values) < 2:
        return values[0], values[0]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, third


def spread_text(spread) -> str:
    """(q1, q3) as 'q1-q3'."""
    return f"{spread[0]:.2f}-{spread[1]:.2f}"


def add_ratios(results):
    """ratio[ref] = median over repeats of (tokens/s of the model) / (tokens/s of ref);
    ratio_runs[ref] keeps every repeat's ratio."""
    for name, result in results.items():
        for mode, entry in result.get("modes", {}).items():
            entry["ratio"], entry["ratio_runs"] = {}, {}
            for ref in REFERENCES:
                other = results.get(ref, {}).get("modes", {}).get(mode, {})
                runs = paired_ratios(entry, other)
                if runs:
                    entry["ratio_runs"][ref] = runs
                    entry["ratio"][ref] = statistics.median(runs)


# ----------------------------------------------------------------------------- reporting

def mode_label(mode, args):
    return {"train": "train step", "encode": "encoder forward", "greedy": "greedy generation",
            "beam": f"beam-{args.beam} generation"}[mode]


def fmt(value, spec=".0f", missing="-"):
    return missing if value is None else format(value, spec)


def targets(target, args):
    """The issue's targets, checked against this run (only those whose models were run).

    Rows are (label, median, (q1, q3) of the per-repeat ratios or None, bound, met or None).
    """
    def mode_entry(name, mode):
        return target.get(name, {}).get("modes", {}).get(mode, {})

    def ratio_runs(name, mode, ref):
        return mode_entry(name, mode).get("ratio_runs", {}).get(ref, [])

    rows = [
        ("Random train step >= 1.6x dynamicconv",
         ratio_runs("synth_random_base", "train", "dynamicconv"), 1.6),
        ("Random train step >= 1.15x transformer",
         ratio_runs("synth_random_base", "train", "transformer"), 1.15),
        (f"Random beam-{args.beam} generation >= 1.2x transformer",
         ratio_runs("synth_random_base", "beam", "transformer"), 1.2),
        ("Factorized Random train step >= Random (x Random)",
         paired_ratios(mode_entry("synth_factorized_random_base", "train"),
                       mode_entry("synth_random_base", "train")), 1.0),
    ]
    checks = []
    for label, runs, bound in rows:
        if runs:
            median = statistics.median(runs)
            checks.append((label, median, middle_half(runs), bound, median >= bound))
    fr, r = target.get("synth_factorized_random_base", {}), target.get("synth_random_base", {})
    if "params" in fr and "params" in r:
        checks.append(("Factorized Random has fewer parameters than Random (ratio)",
                       fr["params"] / r["params"], None, None, None))
    return checks


def markdown(report, args):
    meta, target = report["meta"], report["target"]
    names = [n for n in args.archs if n in target]
    lines = [
        "# Benchmark: fairseq architectures side by side", "",
        f"Command: `{meta['command']}`", "",
        f"{meta['date']}; {meta['cpu']}, {meta['threads']} threads; torch {meta['torch']}, "
        f"fairseq {meta['fairseq']}; fp32 matmul peak {meta['matmul_gflops']:.0f} GFLOP/s "
        f"(n = {args.matmul_size}); {args.clock} clock; the run took "
        f"{meta['wall_minutes']:.1f} min; load average (1 min) of the machine at start / end: "
        f"{meta['load_average_at_start'][0]:.1f} / {meta['load_average_at_end'][0]:.1f}.", "",
        f"Shape: {args.layers}+{args.layers} layers, width {meta['width']}, batch {args.batch_size}"
        f" x length {args.seq_len} (source and target; "
        f"{'lengths drawn in [L/2, L], padded as fairseq pads' if args.ragged else 'no padding'}"
        f"), joined vocabulary {args.vocab}, embeddings shared; "
        f"generation: {args.gen_len} tokens + EOS per sentence from sources of length "
        f"{args.seq_len}. Medians of {args.repeats} interleaved repeats.", "",
        "## Throughput (tokens/s, higher is better)", "",
        "| architecture | params (M) | " + " | ".join(mode_label(m, args) for m in args.modes) + " |",
        "|---|---:|" + "---:|" * len(args.modes),
    ]
    for name in names:
        result = target[name]
        if "error" in result:
            lines.append(f"| {name} | - | " + " | ".join("-" for _ in args.modes) + " |")
            continue
        cells = [fmt(result["modes"].get(m, {}).get("tok_s")) for m in args.modes]
        lines.append(f"| {name} | {result['params'] / 1e6:.1f} | " + " | ".join(cells) + " |")
    for ref in REFERENCES:
        if ref not in target or "error" in target[ref]:
            continue
        lines += ["", f"## Speed relative to {ref} (x, median of per-repeat ratios)", "",
                  "| architecture | " + " | ".join(mode_label(m, args) for m in args.modes) + " |",
                  "|---|" + "---:|" * len(args.modes)]
        for name in names:
            modes = target[name].get("modes", {})
            cells = [fmt(modes.get(m, {}).get("ratio", {}).get(ref), ".2f") for m in args.modes]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Work, efficiency and memory", "",
              "GFLOP per run (matmul/conv/attention FLOPs counted by FlopCounterMode), achieved "
              "GFLOP/s and its share of the matmul peak; peak memory = growth of the resident "
              "set during a run, in MB.", "",
              "| architecture | " + " | ".join(
                  f"{m} GFLOP | {m} GFLOP/s (% peak) | {m} peak MB" for m in args.modes) + " |",
              "|---|" + "---:|---:|---:|" * len(args.modes)]
    for name in names:
        modes = target[name].get("modes", {})
        cells = []
        for m in args.modes:
            e = modes.get(m, {})
            rate = e.get("gflop_s")
            cells += [fmt(e.get("flops") and e["flops"] / 1e9, ".1f"),
                      "-" if rate is None else
                      f"{rate:.0f} ({100 * rate / meta['matmul_gflops']:.0f}%)",
                      fmt(e.get("peak_mb"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    checks = targets(target, args)
    if checks:
        lines += ["", "## Targets", "",
                  "Measured: the median of the per-repeat ratios; spread: their middle half "
                  "(first to third quartile), the noise a single median hides.", "",
                  "| target | measured | spread | met |", "|---|---:|---:|---|"]
        for label, value, spread, bound, met in checks:
            spread = "-" if spread is None else spread_text(spread)
            verdict = "-" if met is None else "yes" if met else "NO"
            lines.append(f"| {label} | {value:.2f} | {spread} | {verdict} |")
    if report.get("sweep"):
        sweep_lengths = sorted(report["sweep"], key=int)
        tokens = args.batch_size * args.seq_len
        for mode in args.sweep_modes:
            lines += ["", f"## Sweep: {mode_label(mode, args)} tokens/s by sequence length", "",
                      f"Batches of {tokens} tokens (batch = {tokens} / length); position-indexed "
                      f"synthesizers get --synth-max-len = length. In brackets: x transformer.", "",
                      "| architecture | " + " | ".join(f"L={n}" for n in sweep_lengths) + " |",
                      "|---|" + "---:|" * len(sweep_lengths)]
            for name in args.sweep_archs:
                cells = []
                for n in sweep_lengths:
                    e = report["sweep"][n].get(name, {}).get("modes", {}).get(mode, {})
                    ratio = e.get("ratio", {}).get("transformer")
                    cells.append(fmt(e.get("tok_s")) + (f" ({ratio:.2f})" if ratio else ""))
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = report["target"]
    names = [n for n in args.archs if "modes" in target.get(n, {})]
    panels = 1 + bool(report.get("sweep"))
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(1, len(args.modes))
    for i, mode in enumerate(args.modes):
        values = [target[n]["modes"].get(mode, {}).get("ratio", {}).get("transformer") or 0
                  for n in names]
        ax.bar([j + i * width for j in range(len(names))], values, width,
               label=mode_label(mode, args))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + width * (len(args.modes) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("synth_", "").replace("_base", "") for n in names],
                       rotation=40, ha="right")
    ax.set_ylabel("tokens/s relative to fairseq transformer")
    ax.set_title(f"{args.layers}+{args.layers} layers, batch {args.batch_size} x {args.seq_len}, "
                 f"{report['meta']['threads']} threads")
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[0][1]
        lengths = sorted(report["sweep"], key=int)
        mode = args.sweep_modes[0]
        for name in args.sweep_archs:
            points = [(int(n), report["sweep"][n].get(name, {}).get("modes", {}).get(mode, {})
                       .get("tok_s")) for n in lengths]
            points = [(n, v) for n, v in points if v]
            if points:
                style = "--" if not name.startswith("synth_") else "-"
                ax.plot(*zip(*points), style, marker="o",
                        label=name.replace("synth_", "").replace("_base", ""))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (tokens per batch constant)")
        ax.set_ylabel(f"{mode_label(mode, args)} tokens/s")
        ax.set_title("sweep over sequence length")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report, args):
    target = report["target"]
    for ref in REFERENCES:
        if "modes" not in target.get(ref, {}):
            continue
        print(f"\nx {ref} (median of per-repeat ratios):")
        print(f"{'architecture':32s}" + "".join(f"{m:>10s}" for m in args.modes))
        for name in args.archs:
            modes = target.get(name, {}).get("modes", {})
            print(f"{name:32s}" + "".join(
                f"{fmt(modes.get(m, {}).get('ratio', {}).get(ref), '.2f'):>10s}"
                for m in args.modes))
    for label, value, spread, bound, met in targets(target, args):
        status = "" if met is None else "  met" if met else "  NOT MET"
        spread = "" if spread is None else f" (middle half of repeats {spread_text(spread)})"
        print(f"{label}: {value:.2f}{spread}{status}")


# ----------------------------------------------------------------------------- entry points

def profile(args, dictionary):
    from torch.profiler import ProfilerActivity, profile as torch_profile

    runner = Runner(args.profile, args, dictionary, args.batch_size, args.seq_len, args.gen_len)
    for _ in range(max(1, args.warmup)):
        runner.run(args.mode)
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        runner.run(args.mode)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=25))
    if args.trace:
        prof.export_chrome_trace(args.trace)


def quiet():
    """fairseq's INFO logs and hydra's deprecation warnings would bury the results."""
    logging.basicConfig(level=logging.WARNING)
    for name in ("fairseq", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="(?s).*([Hh]ydra|ConfigStore|version_base)")
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.autocast", category=FutureWarning)


def main(argv=None):
    args = parse_args(argv)
    quiet()
    import torch

    torch.set_num_threads(args.threads)
    from fairseq import utils

    utils.import_user_module(argparse.Namespace(user_dir=USER_DIR))
    dictionary = make_dictionary(args.vocab)
    if args.profile:
        return profile(args, dictionary)

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    start = time.perf_counter()
    import fairseq

    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        log(f"warning: load average {load_at_start[0]:.1f} before starting; other processes "
            f"on this machine will slow some runs (ratios are paired per repeat)")

    peak = matmul_peak(args.matmul_size)
    log(f"fp32 matmul peak: {peak:.0f} GFLOP/s at {args.threads} threads")
    log(f"target shape: batch {args.batch_size} x {args.seq_len}, modes {args.modes}")
    progress = Progress(log)  # plans every run of the target shape and the sweep
    progress.plan("target", args.archs, args.modes, warmup_runs(args, True) + args.repeats)
    for length in args.sweep:
        progress.plan(length, args.sweep_archs, args.sweep_modes,
                      warmup_runs(args, False) + args.sweep_repeats)
    report = {"target": measure(args.archs, args, dictionary, args.batch_size, args.seq_len,
                                args.gen_len, args.modes, args.repeats, True, log,
                                progress, "target"),
              "sweep": {}}
    tokens = args.batch_size * args.seq_len
    for length in args.sweep:
        bsz = max(1, tokens // length)
        log(f"sweep: batch {bsz} x {length}")
        report["sweep"][str(length)] = measure(
            args.sweep_archs, args, dictionary, bsz, length, min(args.gen_len, length - 1),
            args.sweep_modes, args.sweep_repeats, False, log, progress, length)
    report["meta"] = {
        "command": shlex.join([".venv/bin/python", "scripts/benchmark.py", *(
            argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "fairseq": fairseq.__version__, "matmul_gflops": peak,
        "width": args.embed_dim or 512, "args": {k: v for k, v in vars(args).items()},
        "wall_minutes": (time.perf_counter() - start) / 60,
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
    }
    cpu_name = read_cpu_name()
    if cpu_name:
        report["meta"]["cpu"] = cpu_name
    print_summary(report, args)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmark.json").write_text(json.dumps(report, indent=1))
        (out / "benchmark.md").write_text(markdown(report, args))
        plot(report, args, out / "benchmark.png")
        log(f"wrote {out / 'benchmark.md'}, benchmark.png, benchmark.json")
    return 0


def read_cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
