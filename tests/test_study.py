"""scripts/study.py: resume after a kill, skipping finished runs, statistics, report files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, cli_env, run_cli, write_reversal_corpus

sys.path.insert(0, str(REPO / "scripts"))

import study  # noqa: E402
import study_report  # noqa: E402
import study_stats  # noqa: E402

STUDY = [sys.executable, str(REPO / "scripts" / "study.py")]
INTERVAL = 5  # updates between checkpoints (and validations)


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    """prepare_bible.py's layout on toy data: bin/, lm/bin/ and raw/test.<tgt>."""
    root = tmp_path_factory.mktemp("study_data")
    raw = write_reversal_corpus(root / "raw", n_train=700, n_valid=30, n_test=30)
    run_cli("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
            "--trainpref", raw / "train", "--validpref", raw / "valid", "--testpref", raw / "test",
            "--destdir", root / "bin", "--joined-dictionary", "--workers", "1")
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", raw / "train.tgt",
            "--validpref", raw / "valid.tgt", "--testpref", raw / "test.tgt",
            "--destdir", root / "lm" / "bin", "--workers", "1")
    return root


def study_args(data, out, models, max_update, tasks="translation"):
    # 300 tokens a batch: 700 toy pairs make epochs of a length that is no multiple of INTERVAL,
    # so interval checkpoints are kept for averaging.
    return ["--data", data, "--tasks", tasks, "--models", models, "--size", "tiny",
            "--max-update", max_update, "--save-interval-updates", INTERVAL,
            "--average-last", 2, "--max-tokens", 300, "--spm-model", "none", "--threads", 1,
            "--out", out, "--checkpoints", out.parent / f"{out.name}_checkpoints"]


def run_study(*args, check=True):
    proc = subprocess.run([*STUDY, *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"study.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def result(out, name):
    return json.loads((out / "runs" / name / "result.json").read_text())


def start_study_until_checkpoint(args, save_dir: Path):
    """Start the study in a process group of its own; return it once training has saved its
    second interval checkpoint in save_dir."""
    proc = subprocess.Popen([*STUDY, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=cli_env(), start_new_session=True)
    deadline = time.time() + 600
    while not list(save_dir.glob(f"checkpoint_*_{2 * INTERVAL}.pt")):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    return proc


def kill_mid_training(args, save_dir: Path, budget: int):
    """Kill the study's whole process group once training has saved its second interval
    checkpoint (mid-training: the budget is many intervals away). The kill may land while
    fairseq copies that checkpoint to checkpoint_last.pt: the runner repairs that."""
    proc = start_study_until_checkpoint(args, save_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reached = study.resume_point(save_dir)
    assert INTERVAL <= reached < budget, f"the kill did not land mid-training ({reached})"


def test_killed_run_resumes_to_the_uninterrupted_result(study_data, tmp_path):
    budget = 12 * INTERVAL
    straight = tmp_path / "straight"
    run_study(*study_args(study_data, straight, "random", budget))

    resumed = tmp_path / "resumed"
    args = study_args(study_data, resumed, "random", budget)
    save_dir = tmp_path / "resumed_checkpoints/translation/random/seed1"
    kill_mid_training(args, save_dir, budget)
    assert not (resumed / "runs/translation/random/seed1/result.json").exists()
    # As if the kill had landed while fairseq copied the checkpoint to checkpoint_last.pt.
    last = save_dir / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    log = run_study(*args).stdout
    assert "checkpoint_last.pt is unreadable" in log
    assert "translation/random/seed1: resuming at update" in log

    a, b = result(straight, "translation/random/seed1"), result(resumed, "translation/random/seed1")
    assert b["updates"] == a["updates"] == budget
    assert [p["update"] for p in b["curve"]] == [p["update"] for p in a["curve"]]
    assert set(range(INTERVAL, budget + 1, INTERVAL)) <= {p["update"] for p in b["curve"]}
    walls = [p["wall"] for p in b["curve"]]
    # fairseq stamps its log to the second: a fast machine validates within the first one.
    assert walls[0] >= 0 and walls == sorted(walls) and b["train_seconds"] == walls[-1]
    assert [p["valid_loss"] for p in b["curve"]] == [p["valid_loss"] for p in a["curve"]]
    assert b["bleu"] == a["bleu"] and b["chrf"] == a["chrf"]
    hyp = "runs/translation/random/seed1/test.hyp"
    assert (resumed / hyp).read_text() == (straight / hyp).read_text()

    # Finished runs are skipped: nothing is trained or rewritten.
    stamp = (resumed / "runs/translation/random/seed1/result.json").stat().st_mtime_ns
    log = run_study(*args).stdout
    assert "1 runs, 1 already finished" in log and "starting" not in log
    assert (resumed / "runs/translation/random/seed1/result.json").stat().st_mtime_ns == stamp


def live_parent(stat: Path):
    """The parent pid of the process of /proc/PID/stat, or None once it has exited (gone or a
    zombie)."""
    try:
        state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError, ValueError):
        return None
    return None if state == "Z" else int(ppid)


def live_children(pid: int):
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
            if live_parent(stat) == pid]


def alive(pid: int) -> bool:
    return live_parent(Path(f"/proc/{pid}/stat")) is not None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_stopping_the_runner_stops_its_training(study_data, tmp_path):
    """SIGTERM to study.py alone (kill PID, not the group) must not leave fairseq-train running
    into the checkpoint directory that a re-run will resume from, nor start queued runs."""
    out = tmp_path / "stopped"
    budget = 1000 * INTERVAL  # far beyond the stop: a runner that waits for it is caught
    args = [*study_args(study_data, out, "random,transformer", budget), "--jobs", 1]
    save_dir = tmp_path / "stopped_checkpoints/translation/random/seed1"
    proc = start_study_until_checkpoint(args, save_dir)
    try:
        trainers = live_children(proc.pid)
        assert trainers, "fairseq-train is not a child of study.py"
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
        assert "stopped by signal" in log and "re-run the same command to resume" in log
        assert not [pid for pid in trainers if alive(pid)], "fairseq-train outlived study.py"
        # The queued run never started; the stopped one resumes from its checkpoint.
        assert not (tmp_path / "stopped_checkpoints/translation/transformer").exists()
        assert 2 * INTERVAL <= study.resume_point(save_dir) < budget, "training was not stopped"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphans keep the group: none may outlive this
        except ProcessLookupError:
            pass


def test_grid_report_and_budget_extension(study_data, tmp_path):
    out = tmp_path / "grid"
    run_study(*study_args(study_data, out, "transformer,random:2", 2 * INTERVAL,
                          tasks="translation,lm"))
    for name in ("results.md", "study.json", "val_loss_updates.png", "val_loss_time.png",
                 "test.ref"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "study.json").read_text())
    assert len(report["runs"]) == 6
    table = (out / "results.md").read_text()
    assert "| transformer |" in table and "| random |" in table and "(baseline)" in table
    assert "Partial study" not in table and report["pending_runs"] == 0
    summary = report["summary"]["translation"]["random"]
    assert summary["seeds"] == [1, 2] and len(summary["bleu"]["per_seed"]) == 2
    assert summary["bleu"]["vs_baseline"]["verdict"] in ("tie", "better", "worse")
    lm = report["summary"]["lm"]["transformer"]
    # The headline table: one row per model, both tasks side by side, seeds in brackets.
    headline = study_report.headline(report)
    assert headline[0].startswith("**Complete**: 6 of 6 runs, 10 updates")
    rows = {line.split(" | ")[0][2:]: line for line in headline if line.startswith("| ")}
    assert list(rows) == ["model", "Transformer", "Random"]
    assert rows["Transformer"].count("(baseline)") == 2
    verdict = summary["bleu"]["vs_baseline"]
    assert (f"| {summary['bleu']['mean']:.2f} ± {summary['bleu']['std']:.2f} (2) | "
            f"[{summary['bleu']['ci95'][0]:.2f}, {summary['bleu']['ci95'][1]:.2f}] | "
            f"{verdict['difference']:+.2f} (") in rows["Random"]
    # Beside each task, the paper's score and its gap to the paper's Transformer (Tay et al.,
    # 2021: WMT'14 En-De BLEU 27.27 against 27.67, LM1B perplexity 40.60 against 38.21).
    assert " | 27.27 (-0.40) | " in rows["Random"]
    assert rows["Random"].endswith(" | 40.60 (+2.39) |")
    assert " | 27.67 | " in rows["Transformer"] and rows["Transformer"].endswith(" | 38.21 |")
    run = result(out, "lm/transformer/seed1")
    # Per-block statistics reproduce fairseq-eval-lm's perplexity.
    assert run["ppl_from_blocks"] == pytest.approx(run["ppl"], rel=1e-3)
    assert lm["ppl"]["ci95"][0] < run["ppl"] < lm["ppl"]["ci95"][1]

    # A run configured but not finished (killed, or not reached yet) marks the report partial.
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "runs/lm/random/seed2/result.json").unlink()
    study_report.write(partial)
    assert "**Partial study: 5 of 6 runs finished.**" in (partial / "results.md").read_text()
    assert json.loads((partial / "study.json").read_text())["pending_runs"] == 1

    # Continuing part of the grid into the same --out keeps the whole grid's command, which
    # the report prints as the one that reproduces its tables.
    log = run_study(*study_args(study_data, out, "random:1", 2 * INTERVAL, tasks="lm")).stdout
    assert "1 runs, 1 already finished" in log
    assert "--models transformer,random:2" in (out / "command.txt").read_text()
    assert "--models transformer,random:2" in (out / "results.md").read_text()

    # Raising the budget resumes every run from its last checkpoint instead of restarting.
    log = run_study(*study_args(study_data, out, "transformer", 3 * INTERVAL)).stdout
    assert f"--max-update {3 * INTERVAL}" in (out / "command.txt").read_text()
    assert f"translation/transformer/seed1: resuming at update {2 * INTERVAL}" in log
    assert result(out, "translation/transformer/seed1")["updates"] == 3 * INTERVAL

    # Other settings in the same --out are refused, naming the fix.
    changed = study_args(study_data, out, "transformer", 3 * INTERVAL) + ["--lr", "1e-3"]
    proc = run_study(*changed, check=False)
    assert proc.returncode != 0 and "trained with other settings" in proc.stderr


def test_missing_data_names_the_fix(tmp_path):
    proc = run_study("--data", tmp_path, "--out", tmp_path / "out", check=False)
    assert proc.returncode != 0 and "prepare_bible.py" in proc.stderr


# Statistics -----------------------------------------------------------------------------

def mean_metric(summed):
    """A 'corpus score' that is the mean of one value per unit: rows are (value, 1)."""
    return summed[0] / summed[1]


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    values = rng.normal(10.0, 2.0, size=2000)
    rows = np.stack([values, np.ones_like(values)], axis=1)
    indices = study_stats.resample_indices(len(rows), n_resamples=2000)
    low, high = study_stats.confidence_interval([rows], mean_metric, indices=indices)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # the known answer, ~0.088
    assert low == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.15 * half)


def test_paired_bootstrap_known_answers():
    rng = np.random.default_rng(1)
    base = np.stack([rng.normal(0, 1, 500), np.ones(500)], axis=1)
    # A system against itself: no difference, a tie (sacreBLEU's p-value is degenerate here,
    # every resampled difference is 0 too).
    same = study_stats.paired_bootstrap([base], [base], mean_metric)
    assert same["difference"] == 0
    assert study_stats.verdict(same["difference"], same["p_value"], True) == "tie"
    # Noise of mean zero on every unit is not a difference.
    noisy = base.copy()
    noisy[:, 0] += rng.normal(0, 0.5, 500)
    noisy[:, 0] -= noisy[:, 0].mean() - base[:, 0].mean()
    tie = study_stats.paired_bootstrap([noisy], [base], mean_metric)
    assert abs(tie["difference"]) < 1e-9 and tie["p_value"] > 0.2
    # A shift of 10 standard errors is significant, in the right direction.
    shifted = base.copy()
    shifted[:, 0] += 10 * 1 / np.sqrt(500)
    test = study_stats.paired_bootstrap([shifted], [base], mean_metric)
    assert test["difference"] == pytest.approx(10 / np.sqrt(500))
    assert test["p_value"] < 0.01
    assert study_stats.verdict(test["difference"], test["p_value"], True) == "better"
    assert study_stats.verdict(test["difference"], test["p_value"], False) == "worse"
    # Seeds are averaged: a seed far above and one as far below the baseline (each with its
    # own unit-level noise) average to a tie, though each alone is significant.
    plus, minus = base.copy(), base.copy()
    plus[:, 0] += 10 / np.sqrt(500) + rng.normal(0, 0.3, 500)
    minus[:, 0] += -10 / np.sqrt(500) + rng.normal(0, 0.3, 500)
    for seed in (plus, minus):
        assert study_stats.paired_bootstrap([seed], [base], mean_metric)["p_value"] < 0.01
    both = study_stats.paired_bootstrap([plus, minus], [base], mean_metric)
    assert abs(both["difference"]) < 0.05 and both["p_value"] > 0.05


def test_a_gap_within_the_spread_of_seeds_is_a_tie():
    """Training noise counts: the seeds are resampled as well as the test units."""
    rng = np.random.default_rng(3)
    n = 2000
    unit_values = rng.normal(0, 1, n)  # the same test units for every run

    def run(offset):  # one training run: the baseline's units shifted, little own noise
        return np.stack([unit_values + offset + rng.normal(0, 0.05, n), np.ones(n)], axis=1)

    baseline = [run(0.0), run(0.0), run(0.0)]
    # Three seeds 0.5 ahead on average, spread -1.5 .. +2.5: each seed alone is far outside
    # the test-set noise (standard error 0.0016), but the mean is inside the seeds' spread.
    scattered = [run(-1.5), run(0.5), run(2.5)]
    scattered_test = study_stats.paired_bootstrap(scattered, baseline, mean_metric)
    assert scattered_test["difference"] == pytest.approx(0.5, abs=0.01)
    assert scattered_test["p_value"] > 0.05
    low, high = study_stats.confidence_interval(scattered, mean_metric)
    assert low < -0.5 and high > 1.5  # the seeds' spread, not the test set's
    # The same mean, reached by every seed, is significant.
    steady = [run(0.5), run(0.5), run(0.5)]
    steady_test = study_stats.paired_bootstrap(steady, baseline, mean_metric)
    assert steady_test["difference"] == pytest.approx(0.5, abs=0.01)
    assert steady_test["p_value"] < 0.01
    low, high = study_stats.confidence_interval(steady, mean_metric)
    assert high - low < 0.2


def test_paired_bootstrap_is_sacrebleus_for_one_seed():
    from sacrebleu.significance import PairedTest

    rng = np.random.default_rng(2)
    words = "the of and to in a that he is for his was with not".split()
    references = [" ".join(rng.choice(words, rng.integers(5, 15))) for _ in range(200)]

    def noisy(p):
        return [" ".join(w if rng.random() > p else "x" for w in r.split()) for r in references]

    baseline, system = noisy(0.5), noisy(0.4)
    _, results = PairedTest([("baseline", baseline), ("system", system)], metrics={
        "BLEU": __import__("sacrebleu").metrics.BLEU()}, references=[references],
        test_type="bs", n_samples=study_stats.N_RESAMPLES)()
    theirs = results["BLEU"][1]
    ours = study_stats.paired_bootstrap(
        [study_stats.bleu_statistics(system, references)],
        [study_stats.bleu_statistics(baseline, references)], study_stats.bleu_from_statistics)
    assert ours["difference"] == pytest.approx(theirs.score - results["BLEU"][0].score, abs=1e-6)
    assert ours["p_value"] == pytest.approx(theirs.p_value, abs=2e-3)


def test_the_scripts_grids_are_valid():
    """run_study.sh and run_main.sh name only models study.py knows."""
    import re

    from study import parse_models

    for script, tasks in (("run_study.sh", ["translation", "lm"]), ("run_main.sh", ["translation"])):
        text = (REPO / "scripts" / script).read_text()
        models = re.search(r"--models (\S+)", text).group(1)
        for task in tasks:
            assert parse_models(models, task, 1)
    grid = parse_models(re.search(r"--models (\S+)", (REPO / "scripts" / "run_study.sh")
                                  .read_text()).group(1), "translation", 1)
    assert len(grid) == 20 and len({m for m, _ in grid}) == 10  # the issue's grid


def study_model(study_data, tmp_path, task, model):
    """The model that the study's own training command for (task, model) builds, its flags
    parsed by fairseq-train's parser, at the tiny size."""
    from fairseq import options, tasks

    args = study.build_parser().parse_args(["--data", str(study_data), "--size", "tiny"])
    args.checkpoints = tmp_path
    stage = study.stage_args(args, args.max_update[0], first=True)
    command = [str(c) for c in study.Run(stage, task, model, 1).train_cmd[1:]]
    parsed = options.parse_args_and_arch(options.get_training_parser(), command)
    return tasks.setup_task(parsed).build_model(parsed)


def convolution_kinds(study_data, tmp_path, task, model):
    """fairseq's convolution modules in the study's model, by module name
    (lightweight_convolution, dynamic_convolution)."""
    built = study_model(study_data, tmp_path, task, model)
    return {type(m).__module__.rpartition(".")[2] for m in built.modules()
            if type(m).__module__.endswith("_convolution")}


@pytest.mark.parametrize("task", ["translation", "lm"])
def test_lightconv_is_lightweight_and_dynamicconv_dynamic(study_data, tmp_path, task):
    """fairseq's lightconv and lightconv_lm default to dynamic convolutions: the study's
    LightConv must ask for lightweight ones, else it trains a second DynamicConv."""
    assert convolution_kinds(study_data, tmp_path, task, "lightconv") == {
        "lightweight_convolution"}
    assert convolution_kinds(study_data, tmp_path, task, "dynamicconv") == {"dynamic_convolution"}


@pytest.mark.parametrize("task", ["translation", "lm"])
@pytest.mark.parametrize("model", study.SYNTHESIZERS)
def test_every_self_attention_of_a_study_synthesizer_is_the_named_one(study_data, tmp_path,
                                                                      task, model):
    """The study's Synthesizer runs synthesize every self-attention, encoder and decoder, with
    exactly the named parts (R+V: random and vanilla), and keep dot-product cross-attention."""
    built = study_model(study_data, tmp_path, task, model)
    layers = list(built.decoder.layers)
    if task == "translation":
        layers += list(built.encoder.layers)
        assert all(not hasattr(layer.encoder_attn, "alignments") for layer in built.decoder.layers)
    assert [sorted(layer.self_attn.alignments) for layer in layers] == (
        [sorted(model.split("+"))] * len(layers))


def test_eta_counts_training_rate_and_scoring_apart():
    """A run resumed near its end trains few updates: its scoring time must not be spread over
    them as if it were training time (it made the first ETA of the resumed study 19.5 h, not 13)."""
    from types import SimpleNamespace

    from study import Progress

    runs = [SimpleNamespace(name=name, label=name, budget=4000, previous_budget=0,
                            finished=lambda: False) for name in ("a", "b")]
    progress = Progress(runs, SimpleNamespace(minutes=None), parallel=1)
    progress.started(runs[0], resumed_from=3750)
    progress.finished(runs[0], {"updates": 4000, "bleu": 1.0}, training_seconds=125.0,
                      scoring_seconds=180.0, resumed_from=3750)
    # Run b: 4,000 updates at 0.5 s each, then one scoring of 180 s.
    assert progress._eta() == "0:36:20"


def test_wall_time_of_a_resumed_run_continues_from_its_checkpoint():
    """fairseq logs no wall time with validations and restarts its own at 0 on resume: the
    curve's wall time comes from the log's timestamps, carried over from the resumed update."""
    from study import validation_curve

    def valid(stamp, update, loss):
        return (f"2026-01-05 {stamp} | INFO | valid | {{\"epoch\": 1, \"valid_loss\": "
                f"\"{loss}\", \"valid_num_updates\": \"{update}\"}}")

    log = "\n".join([
        "$ fairseq-train ...",
        "2026-01-05 10:00:00 | INFO | fairseq_cli.train | model built",
        valid("10:01:40", 250, 8.0),
        valid("10:03:20", 500, 7.0),
        "2026-01-05 10:04:00 | INFO | train_inner | {\"num_updates\": \"550\"}",  # then killed
        "$ fairseq-train ...",
        "2026-01-05 11:00:00 | INFO | fairseq_cli.train | model built",
        "2026-01-05 11:00:05 | INFO | fairseq.trainer | Loaded checkpoint /x/checkpoint_last.pt "
        "(epoch 1 @ 500 updates)",
        valid("11:01:45", 750, 6.5),
    ])
    curve = validation_curve(log)
    assert [(p["update"], p["valid_loss"], p["wall"]) for p in curve] == [
        (250, 8.0, 100.0), (500, 7.0, 200.0), (750, 6.5, 300.0)]


def test_a_longer_study_continues_a_shorter_one(study_data, tmp_path):
    """--continue-from: a longer-budget study starts each run from the shorter study's last
    checkpoint (whole curve kept) and refuses a shorter study trained with other flags."""
    short = tmp_path / "short"
    run_study(*study_args(study_data, short, "transformer", 2 * INTERVAL))
    source = tmp_path / "short_checkpoints"

    longer = tmp_path / "longer"
    log = run_study(*study_args(study_data, longer, "transformer", 3 * INTERVAL),
                    "--continue-from", source).stdout
    assert f"translation/transformer/seed1: continues {source}" in log
    assert f"translation/transformer/seed1: resuming at update {2 * INTERVAL}" in log
    run = result(longer, "translation/transformer/seed1")
    assert run["updates"] == 3 * INTERVAL
    assert {INTERVAL, 2 * INTERVAL, 3 * INTERVAL} <= {p["update"] for p in run["curve"]}
    # The shorter study is left as it was.
    assert result(short, "translation/transformer/seed1")["updates"] == 2 * INTERVAL

    other = run_study(*study_args(study_data, tmp_path / "other", "transformer", 3 * INTERVAL),
                      "--continue-from", source, "--lr", "1e-3", check=False)
    assert other.returncode != 0 and "trained with other settings" in other.stderr


def test_several_budgets_score_each_run_on_its_way(study_data, tmp_path):
    """--max-update 10,15: each run is scored at 10 updates (in --out) and then continued in
    the same checkpoint directory to 15 (in OUT_15), with the result of a run trained to 15
    straight away (its averaging takes a checkpoint of the first budget)."""
    straight = tmp_path / "straight"
    run_study(*study_args(study_data, straight, "random", 3 * INTERVAL))

    out = tmp_path / "chain"
    budgets = f"{2 * INTERVAL},{3 * INTERVAL}"
    readme = tmp_path / "README.md"
    around = ("# A project\n\nIts study: <!-- study-results -->\nold table\n"
              "<!-- /study-results -->\n\nThe rest.\n")
    readme.write_text(around)
    log = run_study(*study_args(study_data, out, "random", budgets), "--readme", readme).stdout
    longer = tmp_path / f"chain_{3 * INTERVAL}"
    assert f"translation/random/seed1 to {2 * INTERVAL}: starting" in log
    assert f"translation/random/seed1 to {3 * INTERVAL}: resuming at update {2 * INTERVAL}" in log
    first, second = result(out, "translation/random/seed1"), result(longer, "translation/random/seed1")
    alone = result(straight, "translation/random/seed1")
    assert first["updates"] == 2 * INTERVAL and second["updates"] == 3 * INTERVAL
    assert [p["valid_loss"] for p in second["curve"]] == [p["valid_loss"] for p in alone["curve"]]
    assert second["bleu"] == alone["bleu"] and second["chrf"] == alone["chrf"]
    hyp = "runs/translation/random/seed1/test.hyp"
    assert (longer / hyp).read_text() == (straight / hyp).read_text()
    for directory in (out, longer):
        assert (directory / "results.md").stat().st_size > 0
        assert (directory / "test.ref").read_bytes() == (straight / "test.ref").read_bytes()
    # --readme shows the last budget's headline between the markers, the rest untouched.
    shown = readme.read_text()
    assert shown.startswith("# A project\n\nIts study: <!-- study-results -->\n**Complete**: "
                            f"1 of 1 runs, {3 * INTERVAL} updates")
    # Random alone: no Transformer to compare with, so no "(baseline)" either.
    assert f"| Random | {second['bleu']:.2f} (1) |" in shown and "old table" not in shown
    assert "(baseline)" not in shown and shown.count("| - |") == 1
    assert shown.endswith("|\n\n<!-- /study-results -->\n\nThe rest.\n")

    # Re-run: both budgets are finished, nothing is trained.
    log = run_study(*study_args(study_data, out, "random", budgets)).stdout
    assert "2 runs, 2 already finished" in log and "starting" not in log

    # A checkpoint beyond a run's budget is refused rather than averaged into its result.
    (out / "runs/translation/random/seed1/result.json").unlink()
    proc = run_study(*study_args(study_data, out, "random", budgets), check=False)
    assert proc.returncode != 0 and "beyond" in proc.stderr and "--checkpoints" in proc.stderr


def test_readme_without_markers_names_the_fix(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    proc = run_study("--data", tmp_path, "--readme", readme, check=False)
    assert proc.returncode == 2 and "<!-- /study-results -->" in proc.stderr
    assert readme.read_text() == "# no markers\n"


def test_readme_shows_the_committed_study():
    """The README's study table is the headline of the committed runs of its last budget
    (results/study_8000, scripts/run_study.sh): a run committed without the README, or a
    hand-edited number, fails here."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    _, report, _ = study_report.build(REPO / "results" / "study_8000")
    assert text == study_report.with_headline(text, study_report.headline(report)), (
        "README.md's study table differs from results/study_8000: run bash "
        "scripts/run_study.sh --report-only")


def test_committed_report_rebuilds_from_its_runs(tmp_path):
    """study_report.py's CLI rebuilds results/study's committed table from the committed runs
    (on any machine), and names the fix when given a directory that is not a study's."""
    report = [sys.executable, str(REPO / "scripts" / "study_report.py")]
    copy = tmp_path / "study"
    shutil.copytree(REPO / "results" / "study", copy)
    (copy / "results.md").unlink()
    subprocess.run(report + [str(copy)], check=True, capture_output=True, env=cli_env())
    committed = (REPO / "results" / "study" / "results.md").read_text()
    assert (copy / "results.md").read_text() == committed
    wrong = subprocess.run(report + [str(tmp_path)], capture_output=True, text=True,
                           env=cli_env())
    assert wrong.returncode == 2 and "--out directory" in wrong.stderr
