#!/usr/bin/env python
"""Train Synthesizers and fairseq's baselines on the default real corpus, side by side.

Every model gets the same data, sizes, optimiser, flags and a budget of CPU minutes
(``--stop-time-hours``); translation is scored with sacreBLEU on detokenised test output
(``fairseq-generate --bpe sentencepiece --scoring sacrebleu``), language models with
``fairseq-eval-lm`` perplexity. Writes ``results.md`` (table), ``results.json`` and
``val_loss.png`` (validation loss against training wall time) to ``--out``.

    .venv/bin/python scripts/compare_real_text.py --minutes 5 --out results/real_text
    .venv/bin/python scripts/compare_real_text.py --tasks translation --minutes 1 \
        --models random,transformer
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "fairseq_synth"
BIN = Path(sys.executable).parent

# Model name -> architecture flags. Sizes come from SIZE_FLAGS, identical for every model.
TRANSLATION_MODELS = {
    "random": ["--arch", "synth_transformer", "--encoder-synthesizer", "random"],
    "dense": ["--arch", "synth_transformer", "--encoder-synthesizer", "dense"],
    "random+vanilla": ["--arch", "synth_transformer", "--encoder-synthesizer", "random+vanilla"],
    "dense+vanilla": ["--arch", "synth_transformer", "--encoder-synthesizer", "dense+vanilla"],
    "transformer": ["--arch", "transformer"],
    "dynamicconv": ["--arch", "lightconv", "--encoder-conv-type", "dynamic",
                    "--decoder-conv-type", "dynamic", "--encoder-kernel-size-list", "[3,7,15]",
                    "--decoder-kernel-size-list", "[3,7,15]"],
}
LM_MODELS = {
    "random": ["--arch", "synth_transformer_lm", "--decoder-synthesizer", "random"],
    "dense": ["--arch", "synth_transformer_lm", "--decoder-synthesizer", "dense"],
    "random+vanilla": ["--arch", "synth_transformer_lm", "--decoder-synthesizer",
                       "random+vanilla"],
    "dense+vanilla": ["--arch", "synth_transformer_lm", "--decoder-synthesizer", "dense+vanilla"],
    "transformer": ["--arch", "transformer_lm"],
    "dynamicconv": ["--arch", "lightconv_lm", "--decoder-conv-type", "dynamic",
                    "--decoder-kernel-size-list", "[3,7,15]"],
}
MAX_LEN = 128  # tokens; the synthesizers' --synth-max-len and every model's position limit
# fairseq (main) drops a last batch smaller than --required-batch-size-multiple (default 8):
# sentences silently missing from valid loss and BLEU (fairseq issue #5036). 1 keeps them all.
EVERY_SENTENCE = ["--required-batch-size-multiple", "1"]


def size_flags(task: str):
    sides = ["decoder"] if task == "lm" else ["encoder", "decoder"]
    flags = []
    for side in sides:
        flags += [f"--{side}-layers", "3", f"--{side}-embed-dim", "128",
                  f"--{side}-ffn-embed-dim", "512", f"--{side}-attention-heads", "4"]
    if task == "lm":
        # fairseq's transformer_lm keeps 512-wide input/output embeddings (projected to
        # --decoder-embed-dim) unless these are given; lightconv_lm follows the embed dim.
        flags += ["--decoder-input-dim", "128", "--decoder-output-dim", "128"]
    return flags


def synth_flags(arch_flags):
    return ["--user-dir", USER_DIR, "--synth-max-len", MAX_LEN] if any(
        "synth" in str(f) for f in arch_flags) else ["--user-dir", USER_DIR]


def train_flags(task: str, data: Path, save_dir: Path, minutes: float, seed: int):
    common = [data, "--save-dir", save_dir, "--cpu", "--seed", seed, "--log-format", "json",
              "--log-interval", "10", "--stop-time-hours", minutes / 60,
              "--validate-interval-updates", "50", "--no-epoch-checkpoints",
              "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
              "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100",
              "--dropout", "0.1", "--weight-decay", "0.0001", "--max-tokens", "2048",
              "--skip-invalid-size-inputs-valid-test", "--num-workers", "0",
              *EVERY_SENTENCE]
    if task == "translation":
        return common + ["--task", "translation", "--share-all-embeddings",
                         "--criterion", "label_smoothed_cross_entropy", "--label-smoothing",
                         "0.1", "--max-source-positions", MAX_LEN,
                         "--max-target-positions", MAX_LEN]
    return common + ["--task", "language_modeling", "--share-decoder-input-output-embed",
                     "--tokens-per-sample", MAX_LEN, "--sample-break-mode", "none",
                     "--max-target-positions", MAX_LEN]


def run(cmd, log_path: Path) -> str:
    cmd = [str(c) for c in cmd]
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write(" ".join(cmd) + "\n" + proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}), see {log_path}:\n{proc.stdout[-3000:]}")
    return proc.stdout


def validation_curve(log: str):
    """(seconds since the first log line, valid loss) from fairseq's json log."""
    stamps, curve = [], []
    for line in log.splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| INFO \| (\S+) \| (.*)", line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        stamps.append(stamp)
        if match.group(2) == "valid" and match.group(3).startswith("{"):
            record = json.loads(match.group(3))
            curve.append((stamp - stamps[0], float(record["valid_loss"])))
    return curve


def train(task, name, arch_flags, args, out: Path):
    save_dir = out / "checkpoints" / f"{task}_{name}"
    data = args.data / ("bin" if task == "translation" else "lm/bin")
    started = time.time()
    log = run([BIN / "fairseq-train", *train_flags(task, data, save_dir, args.minutes, args.seed),
               *arch_flags, *synth_flags(arch_flags), *size_flags(task)],
              out / "logs" / f"train_{task}_{name}.log")
    updates = re.findall(r'"(?:valid_)?num_updates": "(\d+)"', log)
    return {
        "params": int(re.search(r"num\. trained: ([\d,]+)", log).group(1).replace(",", "")),
        "updates": int(updates[-1]) if updates else 0,
        "wall_s": round(time.time() - started, 1),
        "curve": validation_curve(log),
        "checkpoint": str(save_dir / "checkpoint_best.pt"),
    }


def score_translation(result, args, out, name):
    log = run([BIN / "fairseq-generate", args.data / "bin", "--user-dir", USER_DIR,
               "--path", result["checkpoint"], "--beam", "4", "--batch-size", "64", "--cpu",
               # An undertrained model babbles to fairseq's default 200 tokens; verses are
               # similar in length across languages, so bound outputs at 1.5 x source + 10.
               "--max-len-a", "1.5", "--max-len-b", "10",
               "--bpe", "sentencepiece", "--sentencepiece-model", args.data / "bpe" / "spm.model",
               "--scoring", "sacrebleu", "--skip-invalid-size-inputs-valid-test", *EVERY_SENTENCE],
              out / "logs" / f"generate_{name}.log")
    result["bleu"] = float(re.search(r"BLEU = ([\d.]+)", log).group(1))


def score_lm(result, args, out, name):
    log = run([BIN / "fairseq-eval-lm", args.data / "lm" / "bin", "--user-dir", USER_DIR,
               "--path", result["checkpoint"], "--tokens-per-sample", MAX_LEN,
               "--max-tokens", "4096", "--cpu", "--gen-subset", "test", *EVERY_SENTENCE],
              out / "logs" / f"eval_lm_{name}.log")
    result["ppl"] = float(re.search(r"Perplexity: ([\d.]+)", log).group(1))


def write_report(results, args, out: Path):
    lines = [f"Budget: {args.minutes} CPU minutes of training per model "
             f"({args.threads} threads), seed {args.seed}, data {args.data}.", ""]
    for task, metric in (("translation", "bleu"), ("lm", "ppl")):
        if task not in results:
            continue
        header = "sacreBLEU (test)" if metric == "bleu" else "perplexity (test)"
        lines += [f"### {'French-English translation' if task == 'translation' else 'English LM'}",
                  "", f"| model | {header} | final valid loss | params | updates | wall (s) |",
                  "|---|---|---|---|---|---|"]
        for name, r in results[task].items():
            final = f"{r['curve'][-1][1]:.3f}" if r["curve"] else "-"
            lines.append(f"| {name} | {r[metric]:.2f} | {final} | {r['params'] / 1e6:.2f}M | "
                         f"{r['updates']} | {r['wall_s']} |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


def plot(results, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (task, runs) in zip(axes[0], results.items()):
        for name, r in runs.items():
            if r["curve"]:
                seconds, losses = zip(*r["curve"])
                ax.plot(seconds, losses, marker="o", markersize=3, label=name)
        ax.set_title("fr-en translation" if task == "translation" else "English LM")
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel("validation loss (base 2)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "val_loss.png", dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "bible",
                        help="output of scripts/prepare_bible.py --binarize")
    parser.add_argument("--tasks", default="translation,lm")
    parser.add_argument("--models", default=",".join(TRANSLATION_MODELS))
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "real_text")
    args = parser.parse_args(argv)

    tasks = args.tasks.split(",")
    for task in tasks:
        needed = args.data / ("bin" if task == "translation" else "lm/bin") / "dict.txt"
        if not list(needed.parent.glob("dict*.txt")):
            raise SystemExit(f"no binarized data at {needed.parent}: run "
                             f"{sys.executable} scripts/prepare_bible.py --out {args.data} --binarize")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    results = {}
    for task in tasks:
        catalogue = TRANSLATION_MODELS if task == "translation" else LM_MODELS
        results[task] = {}
        for name in args.models.split(","):
            if name not in catalogue:
                raise SystemExit(f"unknown model {name!r}; choose from {', '.join(catalogue)}")
            print(f"[{task}] training {name} for {args.minutes} min ...", flush=True)
            result = train(task, name, catalogue[name], args, args.out)
            (score_translation if task == "translation" else score_lm)(result, args, args.out, name)
            results[task][name] = result
    write_report(results, args, args.out)
    plot(results, args.out)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'val_loss.png'}")


if __name__ == "__main__":
    main()
