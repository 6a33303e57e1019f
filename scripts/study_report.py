#!/usr/bin/env python
"""The report of a study (scripts/study.py) from its finished runs: table, JSON and plots.

Reads ``OUT/runs/<task>/<model>/seed<S>/result.json`` and the test outputs beside them
(``test.hyp`` for translation, ``test.blocks.tsv`` for language models), so the report can be
rebuilt from what is committed, on any machine:

    .venv/bin/python scripts/study_report.py results/study

Writes ``results.md`` (per task: mean and standard deviation over seeds, the seed-averaged
score with its 95% bootstrap interval, the paired bootstrap test against the Transformer),
``study.json`` (every run with its learning curve, and the summaries) and
``val_loss_updates.png`` / ``val_loss_time.png``. ``headline`` is the short table both tasks
side by side that ``scripts/study.py --readme`` keeps in the README between the markers
``<!-- study-results -->`` and ``<!-- /study-results -->``.
"""

import argparse
import json
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study_stats as stats  # noqa: E402

BASELINE = "transformer"
MODEL_ORDER = ["transformer", "lightconv", "dynamicconv", "random", "fixed_random",
               "factorized_random", "dense", "factorized_dense", "random+vanilla", "dense+vanilla"]
HIGHER_IS_BETTER = {"bleu": True, "chrf": True, "ppl": False}
TASK_TITLES = {"translation": "Translation", "lm": "Language model"}
# Each task's main metric, its header in the headline table and whether the table shows its
# seed-averaged 95% interval (a perplexity's is in results.md); and the table's model names.
HEADLINE_METRICS = {"translation": ("bleu", "sacreBLEU", True),
                    "lm": ("ppl", "LM perplexity", False)}
DISPLAY_NAMES = {"transformer": "Transformer", "lightconv": "LightConv",
                 "dynamicconv": "DynamicConv", "random": "Random", "fixed_random": "Fixed Random",
                 "factorized_random": "Factorized Random", "dense": "Dense",
                 "factorized_dense": "Factorized Dense", "random+vanilla": "Random + Vanilla",
                 "dense+vanilla": "Dense + Vanilla"}
# The paper's scores (Tay et al., ICML 2021: BLEU of base-size models on WMT'14 En-De, and
# LM1B perplexity) beside the study's, with their gap to its Transformer: on other data only
# the gaps compare. Models the paper does not report there are left blank, as are Dense and
# Factorized Random on LM1B, which sources quote differently.
PAPER_SCORES = {
    "translation": ("paper, En-De", {"transformer": 27.67, "fixed_random": 23.89,
                                     "random": 27.27, "dense": 27.43, "random+vanilla": 28.47}),
    "lm": ("paper, LM1B", {"transformer": 38.21, "random": 40.60, "random+vanilla": 40.05,
                           "dense+vanilla": 37.27}),
}
HEADLINE_BEGIN, HEADLINE_END = "<!-- study-results -->", "<!-- /study-results -->"
# Flattening criterion for the baseline: its validation loss improved by less than this
# fraction over the last quarter of its updates.
FLAT = 0.02


def translation_scores(hypotheses, references) -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    return {"bleu": bleu.corpus_score(hypotheses, [references]).score,
            "chrf": chrf.corpus_score(hypotheses, [references]).score,
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


def lm_block_statistics(eval_lm_log: str):
    """[(sum of natural-log probabilities, tokens)] per test block, from fairseq-eval-lm
    --output-word-probs lines '<id> <token> [<logprob>]\\t...' (one block a line)."""
    blocks = {}
    for line in eval_lm_log.splitlines():
        match = re.search(r"fairseq_cli\.eval_lm(?: \| |:)(\d+) (.*\])$", line)
        if not match:
            continue
        log_probs = [float(word.rsplit(" [", 1)[1][:-1]) for word in match.group(2).split("\t")]
        blocks[int(match.group(1))] = (sum(log_probs), len(log_probs))
    return [blocks[i] for i in sorted(blocks)]


def block_perplexity(blocks) -> float:
    return stats.perplexity_from_statistics(np.array(blocks, dtype=np.float64).sum(0))


def load_runs(out: Path):
    runs = []
    for path in sorted(out.glob("runs/*/*/seed*/result.json")):
        result = json.loads(path.read_text())
        result["dir"] = path.parent
        runs.append(result)
    return runs


def test_statistics(run, out: Path, metric: str) -> np.ndarray:
    """Per-unit sufficient statistics of one run's test output, for the bootstrap."""
    if metric == "ppl":
        rows = [line.split("\t") for line in
                (run["dir"] / "test.blocks.tsv").read_text().splitlines()]
        return np.array([[float(lp), float(n)] for lp, n in rows])
    hypotheses = (run["dir"] / "test.hyp").read_text(encoding="utf-8").splitlines()
    references = (out / "test.ref").read_text(encoding="utf-8").splitlines()
    extract = stats.bleu_statistics if metric == "bleu" else stats.chrf_statistics
    return extract(hypotheses, references)


def flattening(curve):
    """Relative improvement of the validation loss over the last quarter of the updates."""
    if len(curve) < 2:
        return None
    last = curve[-1]
    quarter = [p for p in curve if p["update"] <= 0.75 * last["update"]]
    if not quarter:
        return None
    before = quarter[-1]["valid_loss"]
    return (before - last["valid_loss"]) / before


def summarise(task_runs, out: Path, metrics):
    """Per model: seeds, mean/std per metric, CI and paired test against the baseline."""
    by_model = {}
    for run in task_runs:
        by_model.setdefault(run["model"], []).append(run)
    n_units = None
    statistics = {}
    for model, runs in by_model.items():
        statistics[model] = {m: [test_statistics(r, out, m) for r in runs] for m in metrics}
        n_units = len(statistics[model][metrics[0]][0])
    indices = stats.resample_indices(n_units) if n_units else None
    summary = {}
    for model, runs in by_model.items():
        row = {"seeds": [r["seed"] for r in runs], "params": runs[0]["params"],
               "updates": [r["updates"] for r in runs],
               "train_seconds": [r["train_seconds"] for r in runs],
               "final_valid_loss": [r["curve"][-1]["valid_loss"] if r["curve"] else None
                                    for r in runs],
               "flattening": [flattening(r["curve"]) for r in runs]}
        for metric in metrics:
            values = [r[metric] for r in runs]
            seeds_stats = statistics[model][metric]
            row[metric] = {
                "per_seed": values, "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                "ci95": stats.confidence_interval(seeds_stats, stats.METRICS[metric],
                                                  indices=indices),
            }
            if model != BASELINE and BASELINE in statistics:
                test = stats.paired_bootstrap(seeds_stats, statistics[BASELINE][metric],
                                              stats.METRICS[metric], indices=indices)
                test["verdict"] = stats.verdict(test["difference"], test["p_value"],
                                                HIGHER_IS_BETTER[metric])
                row[metric]["vs_baseline"] = test
        summary[model] = row
    return summary


def order(summary):
    """The baseline first, then fairseq's convolutions, then the synthesizers."""
    return sorted(summary, key=lambda m: MODEL_ORDER.index(m) if m in MODEL_ORDER else 99)


def mean_std(entry, digits=2):
    text = f"{entry['mean']:.{digits}f}"
    return text + (f" ± {entry['std']:.{digits}f}" if entry["std"] is not None else "")


def significance(model, entry):
    """The gap to the Transformer with the paired test's verdict and p-value."""
    test = entry.get("vs_baseline")
    if test is None:  # the baseline itself, or a study without it
        return "(baseline)" if model == BASELINE else "-"
    word = {"tie": "tie", "better": "**better**", "worse": "**worse**"}[test["verdict"]]
    return f"{test['difference']:+.2f} ({word}, p = {test['p_value']:.3f})"


def table(task, summary):
    metric = HEADLINE_METRICS[task][0]
    label = "BLEU" if metric == "bleu" else "test perplexity"
    header = [f"| model | params | seeds | {label}: mean ± sd over seeds | "
              f"seed-averaged, 95% CI | vs Transformer (paired bootstrap) |"]
    if metric == "bleu":
        header[0] += " chrF | final valid loss | updates |"
    else:
        header[0] += " final valid loss | updates |"
    header.append("|" + "---|" * (header[0].count("|") - 1))
    lines = list(header)
    for model in order(summary):
        row = summary[model]
        entry = row[metric]
        low, high = entry["ci95"]
        losses = [x for x in row["final_valid_loss"] if x is not None]
        cells = [model, f"{row['params'] / 1e6:.2f}M" if row["params"] >= 1e5
                 else f"{row['params'] / 1e3:.1f}k", str(len(row["seeds"])),
                 mean_std(entry), f"[{low:.2f}, {high:.2f}]", significance(model, entry)]
        if metric == "bleu":
            cells.append(mean_std(row["chrf"], 1))
        cells += [f"{np.mean(losses):.3f}" if losses else "-",
                  "/".join(sorted({str(u) for u in row["updates"]}))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def convergence_note(summary):
    base = summary.get(BASELINE)
    if not base:
        return []
    flats = [f for f in base["flattening"] if f is not None]
    if not flats:
        return []
    ok = all(f < FLAT for f in flats)
    return [f"Transformer's validation loss improved by "
            f"{', '.join(f'{100 * f:.1f}%' for f in flats)} over the last quarter of its "
            f"updates (flattened: < {100 * FLAT:.0f}%): "
            f"{'flattened' if ok else 'still learning at this budget'}."]


def colour(model: str) -> str:
    """A model's colour, the same in every plot (the baseline's is matplotlib's first)."""
    return f"C{MODEL_ORDER.index(model) % 10}" if model in MODEL_ORDER else "black"


def plots(runs, out: Path):
    # Importing fairseq sets the root logger to DEBUG (fairseq/models/wav2vec/
    # wav2vec2_classification.py calls logging.basicConfig(level=logging.DEBUG)), and
    # matplotlib then logs its configuration and font search: silenced before its import.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in runs}, key=lambda t: list(TASK_TITLES).index(t))
    for axis, name in (("update", "val_loss_updates.png"), ("wall", "val_loss_time.png")):
        fig, axes = plt.subplots(1, len(tasks), figsize=(7 * len(tasks), 4.5), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for run in runs:
                if run["task"] != task or not run["curve"]:
                    continue
                x = [p[axis] / (60 if axis == "wall" else 1) for p in run["curve"]]
                y = [p["valid_loss"] for p in run["curve"]]
                ax.plot(x, y, color=colour(run["model"]), alpha=0.8, linewidth=1,
                        label=run["model"] if run["seed"] == min(
                            r["seed"] for r in runs
                            if r["task"] == task and r["model"] == run["model"]) else None)
            ax.set_title(TASK_TITLES[task])
            ax.set_xlabel("updates" if axis == "update" else "training wall time (min)")
            ax.set_ylabel("validation loss (base 2)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            losses = [p["valid_loss"] for r in runs if r["task"] == task for p in r["curve"]]
            if losses:  # the first points (near log2 |V|) would flatten the interesting part
                ax.set_ylim(min(losses) - 0.1, np.percentile(losses, 90))
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)


def examples(runs, out: Path, count: int):
    """Markdown of `count` test sentences (8 to 25 reference words, evenly spaced through the
    test set) with the reference and each model's translation (its first seed)."""
    if count <= 0 or not (out / "test.src").exists():
        return []
    sources = (out / "test.src").read_text(encoding="utf-8").splitlines()
    references = (out / "test.ref").read_text(encoding="utf-8").splitlines()
    firsts = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        if run["task"] == "translation":
            firsts.setdefault(run["model"], run)
    hypotheses = {model: (run["dir"] / "test.hyp").read_text(encoding="utf-8").splitlines()
                  for model, run in firsts.items()}
    eligible = [i for i, ref in enumerate(references) if 8 <= len(ref.split()) <= 25]
    chosen = [eligible[(2 * k + 1) * len(eligible) // (2 * count)] for k in range(count)]
    lines = ["### Example translations (test set, first seed of each model)", ""]
    for i in chosen:
        lines += [f"Test sentence {i + 1}:", "", f"- source: {sources[i]}",
                  f"- reference: {references[i]}"]
        lines += [f"- {model}: {hypotheses[model][i]}" for model in order(hypotheses)]
        lines.append("")
    return lines


def headline(report):
    """The study's short table: one row per model, its score in each task (mean ± sd over
    seeds, their number in brackets), the translation score's 95% interval, the paired test
    against the Transformer and the paper's score; above it, how many runs it covers."""
    tasks = [task for task in HEADLINE_METRICS if task in report["summary"]]
    summaries = [report["summary"][task] for task in tasks]
    updates = sorted({u for summary in summaries for row in summary.values()
                      for u in row["updates"]})
    budget = (f"{updates[0]:,}" if len(updates) == 1 else f"{updates[0]:,}-{updates[-1]:,}")
    finished, pending = report["finished_runs"], report["pending_runs"]
    lines = [f"**{'Partial' if pending else 'Complete'}**: {finished} of {finished + pending} "
             f"runs, {budget} updates; mean ± sd over seeds (their number in brackets), paired "
             f"bootstrap against the Transformer, and the paper's score (its gap to the "
             f"paper's Transformer):", ""]
    header, rule = ["model"], ["---"]
    for task in tasks:
        _, name, with_ci = HEADLINE_METRICS[task]
        header += [name] + ["95% CI"] * with_ci + ["vs Transformer", PAPER_SCORES[task][0]]
        rule += ["---:"] * (1 + with_ci) + ["---", "---:"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for model in order({model: None for summary in summaries for model in summary}):
        cells = [DISPLAY_NAMES.get(model, model)]
        for task, summary in zip(tasks, summaries):
            metric, _, with_ci = HEADLINE_METRICS[task]
            if model not in summary:
                cells += [""] * (2 + with_ci)
            else:
                row = summary[model]
                entry = row[metric]
                cells.append(f"{mean_std(entry)} ({len(row['seeds'])})")
                if with_ci:
                    cells.append("[{:.2f}, {:.2f}]".format(*entry["ci95"]))
                cells.append(significance(model, entry))
            cells.append(paper_score(task, model))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paper_score(task, model):
    """The paper's score of ``model`` in ``task``'s table, with its gap to the paper's
    Transformer; blank where the paper reports none."""
    scores = PAPER_SCORES[task][1]
    if model not in scores:
        return ""
    if model == BASELINE:
        return f"{scores[model]:.2f}"
    return f"{scores[model]:.2f} ({scores[model] - scores[BASELINE]:+.2f})"


def with_headline(text: str, lines) -> str:
    """``text`` (a README) with the headline ``lines`` between its study-results markers."""
    head, begin, rest = text.partition(HEADLINE_BEGIN)
    _, end, tail = rest.partition(HEADLINE_END)
    if not (begin and end):
        raise ValueError(f"no {HEADLINE_BEGIN} ... {HEADLINE_END} block: add the two markers "
                         f"where the study's table goes")
    return head + begin + "\n" + "\n".join(lines) + "\n\n" + end + tail


def build(out: Path, example_count: int = 3):
    """The report of the finished runs in ``out``: (results.md lines, study.json dict, runs),
    or None without any."""
    runs = load_runs(out)
    if not runs:
        return None
    lines = []
    report = {"runs": [], "summary": {}}
    command = out / "command.txt"
    if command.exists():
        lines += ["Command: `" + command.read_text().strip() + "`", ""]
    # study.py writes every run's config.json before training any: the grid of the study.
    pending = [p.parent for p in out.glob("runs/*/*/seed*/config.json")
               if not (p.parent / "result.json").exists()]
    if pending:
        lines += [f"**Partial study: {len(runs)} of {len(runs) + len(pending)} runs finished.** "
                  f"The tables cover the finished runs only; re-running the study's command "
                  f"continues it.", ""]
    report["finished_runs"], report["pending_runs"] = len(runs), len(pending)
    for task in TASK_TITLES:
        task_runs = [r for r in runs if r["task"] == task]
        if not task_runs:
            continue
        metrics = ["bleu", "chrf"] if task == "translation" else ["ppl"]
        summary = summarise(task_runs, out, metrics)
        report["summary"][task] = summary
        lines += [f"### {TASK_TITLES[task]}", "", *table(task, summary), ""]
        lines += convergence_note(summary)
        if task == "translation":
            lines += ["", f"sacreBLEU: `{task_runs[0]['bleu_signature']}`, chrF: "
                      f"`{task_runs[0]['chrf_signature']}`."]
        lines.append("")
    lines += examples(runs, out, example_count)
    lines += [
        "Significance: paired bootstrap resampling of the test set (1,000 resamples, "
        "sacreBLEU's test; where a model has several seeds, each resample also redraws its "
        "seeds and scores their average, so training noise counts). **better**/**worse**: "
        "p < 0.05; tie otherwise. 95% CI: percentile bootstrap of the seed-averaged score, "
        "over the same two levels.", ""]
    for run in runs:
        record = {k: v for k, v in run.items() if k != "dir"}
        report["runs"].append(record)
    return lines, report, runs


def write(out: Path, example_count: int = 3):
    """Writes results.md, study.json and the plots of ``out``; returns results.md's lines and
    the headline table's (None without finished runs)."""
    built = build(out, example_count)
    if built is None:
        return None
    lines, report, runs = built
    (out / "results.md").write_text("\n".join(lines))
    (out / "study.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plots(runs, out)
    return lines, headline(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a study's --out directory (holding runs/)")
    out = parser.parse_args().out
    if not (out / "runs").is_dir():
        parser.error(f"{out} has no runs/ directory: pass the --out directory of a "
                     f"scripts/study.py run, e.g. results/study")
    written = write(out)
    print("\n".join(written[0] if written else ["no finished runs"]))
