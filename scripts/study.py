#!/usr/bin/env python
"""Train a grid of models x seeds the same way, score them, and report with significance.

Every model gets the same data, sizes, optimizer, schedule, dropout and budget (a number of
updates, or of minutes with ``--minutes``); only the architecture differs. Translation is scored
by averaging the last ``--average-last`` checkpoints (fairseq's averaging, as copied in
``examples/wmt/average_checkpoints.py``), ``fairseq-generate`` with beam 4 and sacreBLEU / chrF
on detokenised output against the raw references; language models by ``fairseq-eval-lm``
perplexity of the averaged model. ``scripts/study_report.py`` then writes the table (mean and
standard deviation over seeds, 95% bootstrap intervals, paired bootstrap against the
Transformer), ``study.json`` with every run's learning curve, and plots.

Resumable: re-running the same command continues an interrupted run from its
``checkpoint_last.pt`` (fairseq saves every ``--save-interval-updates``) and skips finished runs;
each run's ``result.json`` is written as soon as it is scored. With several budgets
(``--max-update 4000,8000``) each run is scored at each on its way to the last. Ctrl-C or
``kill PID`` stops the fairseq processes with the runner, so none trains on into a checkpoint
directory that the re-run resumes from.

    .venv/bin/python scripts/study.py --data data/bible --tasks translation \\
        --models transformer:3,random:3,dense --max-update 4000 --out results/mine
    # WMT'14 En-De on GPUs (examples/wmt's data): the paper's base sizes; fairseq-generate
    # undoes the BPE and the Moses tokenization, to compare with the raw references
    python scripts/study.py --data data-bin/wmt14_en_de --tasks translation --size base \\
        --models transformer,random+vanilla --max-update 100000 --max-tokens 4096 \\
        --lr 7e-4 --warmup 4000 --spm-model none --references RAW_TEST.de --fairseq-args "--fp16" \\
        --generate-args "--tokenizer moses --bpe subword_nmt --bpe-codes PREP/code"

A model is ``NAME[:SEEDS]`` (SEEDS seeds 1..SEEDS, default ``--seeds``); names are listed by
``--list-models``.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "fairseq_synth"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "scripts"))

import study_report  # noqa: E402

# Every Synthesizer variant is fairseq's Transformer with synthetic self-attention
# (``--encoder-synthesizer`` also sets the decoder's); the others are fairseq's own models.
SYNTHESIZERS = ["random", "fixed_random", "factorized_random", "dense", "factorized_dense",
                "random+vanilla", "dense+vanilla"]
# fairseq's lightconv and lightconv_lm default to dynamic convolutions (--*-conv-type
# dynamic): LightConv needs "lightweight" spelled out, both kinds are given explicitly.
LIGHTWEIGHT = ["--encoder-conv-type", "lightweight", "--decoder-conv-type", "lightweight"]
DYNAMIC = ["--encoder-conv-type", "dynamic", "--decoder-conv-type", "dynamic"]
TRANSLATION_MODELS = {
    "transformer": ["--arch", "transformer"],
    "lightconv": ["--arch", "lightconv", *LIGHTWEIGHT],
    "dynamicconv": ["--arch", "lightconv", *DYNAMIC],
    **{name: ["--arch", "synth_transformer", "--encoder-synthesizer", name]
       for name in SYNTHESIZERS},
}
LM_MODELS = {
    "transformer": ["--arch", "transformer_lm"],
    "lightconv": ["--arch", "lightconv_lm", *LIGHTWEIGHT[2:]],
    "dynamicconv": ["--arch", "lightconv_lm", *DYNAMIC[2:]],
    **{name: ["--arch", "synth_transformer_lm", "--decoder-synthesizer", name]
       for name in SYNTHESIZERS},
}
MODELS = {"translation": TRANSLATION_MODELS, "lm": LM_MODELS}

# (layers, width, FFN width, heads, longest sequence); "cpu" trains in minutes on 2 cores,
# "base" is the paper's (and fairseq's transformer_wmt_en_de) base size, "tiny" for smoke tests.
SIZES = {"tiny": (1, 32, 64, 2, 32), "cpu": (3, 128, 512, 4, 128),
         "base": (6, 512, 2048, 8, 256)}
KERNELS = {"tiny": "[3]", "cpu": "[3,7,15]", "base": "[3,7,15,31,31,31]"}  # (light|dynamic)conv
# fairseq (main) drops a last batch smaller than --required-batch-size-multiple in generation
# and validation (fairseq issue #5036): 1 keeps every sentence.
EVERY_SENTENCE = ["--required-batch-size-multiple", "1"]


def size_flags(task: str, size: str):
    layers, width, ffn, heads, max_len = SIZES[size]
    sides = ["decoder"] if task == "lm" else ["encoder", "decoder"]
    flags = []
    for side in sides:
        flags += [f"--{side}-layers", layers, f"--{side}-embed-dim", width,
                  f"--{side}-ffn-embed-dim", ffn, f"--{side}-attention-heads", heads]
    if task == "lm":
        # transformer_lm keeps 512-wide input/output embeddings unless these are given.
        flags += ["--decoder-input-dim", width, "--decoder-output-dim", width]
    return flags


def arch_flags(task: str, model: str, size: str):
    flags = list(MODELS[task][model])
    max_len = SIZES[size][4]
    if "lightconv" in flags[1]:
        sides = ["decoder"] if task == "lm" else ["encoder", "decoder"]
        flags += [x for side in sides for x in (f"--{side}-kernel-size-list", KERNELS[size])]
    if "synth" in flags[1]:
        flags += ["--synth-max-len", max_len]
    return flags


def train_flags(args, task: str, seed: int, save_dir: Path):
    max_len = SIZES[args.size][4]
    budget = (["--stop-time-hours", args.minutes / 60, "--max-update", 10 ** 9] if args.minutes
              else ["--max-update", args.max_update])
    common = [
        data_dir(args, task), "--save-dir", save_dir, "--user-dir", USER_DIR, "--seed", seed,
        *budget, "--log-format", "json", "--log-interval", args.log_interval,
        # Validation and checkpoints at the same updates: a curve point is never lost on resume.
        "--save-interval-updates", args.save_interval_updates,
        "--validate-interval-updates", args.save_interval_updates,
        "--keep-interval-updates", args.average_last, "--no-epoch-checkpoints",
        # Without it a resumed process composes later epochs' batches differently.
        "--update-epoch-batch-itr", "True",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
        "--lr", args.lr, "--lr-scheduler", "inverse_sqrt", "--warmup-updates", args.warmup,
        "--dropout", args.dropout, "--weight-decay", "0.0001", "--max-tokens", args.max_tokens,
        "--skip-invalid-size-inputs-valid-test", "--num-workers", "0", *EVERY_SENTENCE,
    ]
    if task == "translation":
        common += ["--task", "translation", "--share-all-embeddings",
                   "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                   "--max-source-positions", max_len, "--max-target-positions", max_len]
    else:
        common += ["--task", "language_modeling", "--share-decoder-input-output-embed",
                   "--tokens-per-sample", max_len, "--sample-break-mode", "none",
                   "--max-target-positions", max_len]
    return common + shlex.split(args.fairseq_args)


def data_dir(args, task: str) -> Path:
    """The data-bin of a task: --data itself, or bible's layout (bin/, lm/bin/) below it."""
    layout = args.data / ("bin" if task == "translation" else "lm/bin")
    return layout if layout.is_dir() else args.data


def config_hash(train_cmd) -> str:
    """What makes two runs the same run: every flag but where it writes and how long it trains
    (the schedule does not depend on the budget, so a run trained to 3000 updates and then
    resumed to 4000 is the run trained to 4000 straight away)."""
    identity, skip = [], False
    for flag in (str(c).replace(str(REPO), ".") for c in train_cmd):
        if not skip and flag not in ("--max-update", "--stop-time-hours"):
            identity.append(flag)
        skip = flag in ("--save-dir", "--max-update", "--stop-time-hours")
    return hashlib.sha256(" ".join(identity).encode()).hexdigest()[:16]


class Run:
    """One (task, model, seed): its results directory (committed) and checkpoints (not)."""

    def __init__(self, args, task: str, model: str, seed: int, previous_budget: int = 0,
                 continued: bool = False, label_budget: bool = False):
        self.task, self.model, self.seed = task, model, seed
        name = f"{task}/{model}/seed{seed}"
        self.name = name
        self.out = args.out
        self.dir = args.out / "runs" / name
        self.save_dir = args.checkpoints / name
        self.train_cmd = [BIN / "fairseq-train", *train_flags(args, task, seed, self.save_dir),
                          *arch_flags(task, model, args.size), *size_flags(task, args.size)]
        self.budget = None if args.minutes else args.max_update
        # With several budgets a run is trained to the first, scored, then continued in the
        # same checkpoint directory to the next (previous_budget: where it then starts;
        # continued: a next budget follows, whose averaging may need this one's checkpoints).
        self.previous_budget, self.continued = previous_budget, continued
        self.label = f"{name} to {self.budget}" if label_budget else name
        self.config_hash = config_hash(self.train_cmd)
        self.continue_from = args.continue_from / name if args.continue_from else None

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def finished(self) -> bool:
        """Scored, at the current budget (a raised --max-update resumes the run)."""
        if not self.result_path.exists():
            return False
        updates = json.loads(self.result_path.read_text())["updates"]
        if self.budget is not None and updates > self.budget:
            raise SystemExit(f"{self.dir} holds a run of {updates} updates, more than "
                             f"--max-update {self.budget}: pass another --out")
        return self.budget is None or updates == self.budget

    def check_config(self):
        """Refuse to mix runs of different settings in one --out; record the command."""
        config = self.dir / "config.json"
        if config.exists():
            stored = json.loads(config.read_text())["config_hash"]
            if stored != self.config_hash:
                raise SystemExit(
                    f"{self.dir} was trained with other settings (config {stored}, now "
                    f"{self.config_hash}); keep the original flags to resume, or pass a new --out "
                    f"and --checkpoints")
        self.dir.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({  # the command as run now, with its budget
            "task": self.task, "model": self.model, "seed": self.seed,
            "config_hash": self.config_hash,
            "train_command": [str(c).replace(str(REPO), ".") for c in self.train_cmd]},
            indent=1) + "\n")

    @property
    def log_path(self) -> Path:
        return self.save_dir / "train.log"

    def take_over_shorter_run(self):
        """--continue-from: a run with no checkpoint of its own starts from the same run of a
        shorter study (its checkpoint_last.pt, and its train.log so that the curve is whole)."""
        source = self.continue_from
        if not source or (self.save_dir / "checkpoint_last.pt").exists():
            return
        if not (source / "checkpoint_last.pt").exists():
            return  # not trained there: this run starts from scratch
        commands = [line[2:] for line in (source / "train.log").read_text().splitlines()
                    if line.startswith("$ ")]
        if not commands or config_hash(shlex.split(commands[-1])) != self.config_hash:
            raise SystemExit(f"{source} was trained with other settings than {self.name} has "
                             f"now: --continue-from needs the same flags but the budget")
        updates = checkpoint_updates(source / "checkpoint_last.pt")
        if self.budget is not None and updates > self.budget:
            raise SystemExit(f"{source} is at update {updates}, beyond --max-update "
                             f"{self.budget}: --continue-from takes a shorter study")
        self.save_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "train.log", self.log_path)
        copy_whole(source / "checkpoint_last.pt", self.save_dir / "checkpoint_last.pt")
        print(f"[study] {self.name}: continues {source} from update {updates}", flush=True)


def copy_whole(source: Path, target: Path):
    """Copy through a temporary file and an atomic rename: a kill mid-copy leaves no half
    checkpoint under the target's name."""
    partial = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def checkpoint_updates(path: Path) -> int:
    """Updates a fairseq checkpoint was saved at (0 when there is none)."""
    if not path.exists():
        return 0
    import torch

    import fairseq_synth.checkpoint_safety  # noqa: F401  (weights_only allow-list)

    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["optimizer_history"][-1]["num_updates"])


def resume_point(save_dir: Path) -> int:
    """Updates of the checkpoint fairseq-train will resume from, after repairing a
    checkpoint_last.pt cut short by a kill: fairseq saves the interval checkpoint, then *copies*
    it to checkpoint_last.pt (not atomically), so the interval checkpoint is whole when
    checkpoint_last.pt may not be. It is then replaced by the newest interval checkpoint."""
    last = save_dir / "checkpoint_last.pt"
    try:
        return checkpoint_updates(last)
    except Exception as error:  # a truncated file: EOF, bad zip archive, unpickling error
        intervals = sorted(save_dir.glob("checkpoint_*_*.pt"),
                           key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if not intervals:
            raise SystemExit(f"{last} is unreadable ({error}) and no interval checkpoint is "
                             f"left: delete {save_dir} to restart this run")
        print(f"[study] {last.name} is unreadable ({type(error).__name__}); resuming from "
              f"{intervals[-1].name}", flush=True)
        copy_whole(intervals[-1], last)
        return checkpoint_updates(last)


# The fairseq processes under way. A signal that stops the runner stops them too: left
# running, a re-run of the study would start a second trainer in the same checkpoint directory.
RUNNING = set()
LAUNCH = threading.Lock()  # no process starts while stop_training is stopping them
REPORTING = threading.Lock()  # two runs ending together report and commit one after the other
STOPPING = threading.Event()


def stop_training(signum, frame):
    """SIGTERM/SIGINT/SIGHUP handler: stop every fairseq process, start no other, and exit."""
    with LAUNCH:
        STOPPING.set()
        for proc in list(RUNNING):
            proc.terminate()
    for proc in list(RUNNING):
        proc.wait()
    print(f"[study] stopped by signal {signum}; re-run the same command to resume", flush=True)
    raise SystemExit(128 + signum)


def run_logged(cmd, log_path: Path, env=None, append=False, on_poll=None) -> str:
    """Run cmd, writing its output to log_path (on_poll() every 10 s while it runs); a failure
    stops with the log's tail."""
    cmd = [str(c) for c in cmd]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a" if append else "w") as log:
        with LAUNCH:
            if STOPPING.is_set():
                raise RuntimeError("the study is stopping")
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            RUNNING.add(proc)
        try:
            while True:
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    if on_poll:
                        on_poll()
        finally:
            RUNNING.discard(proc)
    text = log_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}), see {log_path}:\n"
                           f"{text[-3000:]}")
    return text


def validation_curve(log: str):
    """[{update, valid_loss, wall}] from fairseq's json log, one point per update (a point
    validated again after a resume keeps its latest value).

    wall: seconds of training up to the point, from the log's timestamps (fairseq logs no wall
    time with validations, and its "wall" restarts at 0 on resume). An attempt resumed at
    update U continues from the wall time of U's point, so work lost to a kill after the last
    checkpoint is not counted; a paused process (SIGSTOP) is.
    """
    points = {}
    started = None  # first timestamp of the current attempt
    carried = 0.0  # wall time at the update the current attempt resumed from
    for line in log.splitlines():
        if line.startswith("$ "):  # study.py's header of each attempt
            started, carried = None, 0.0
            continue
        stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)
        if not stamp:
            continue
        now = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
        started = now if started is None else started
        resumed = re.search(r"Loaded checkpoint .* \(epoch \d+ @ (\d+) updates\)", line)
        if resumed:
            earlier = [p["wall"] for u, p in points.items() if u <= int(resumed.group(1))]
            carried = max(earlier, default=0.0)
            started = now
        match = re.search(r"\| valid \| (\{.*\})$", line)
        if match:
            record = json.loads(match.group(1))
            update = int(record["valid_num_updates"])
            points[update] = {"update": update, "valid_loss": float(record["valid_loss"]),
                              "wall": carried + now - started}
    return [points[u] for u in sorted(points)]


def train_seconds(curve) -> float:
    """Training wall time: that of the last validation (see validation_curve)."""
    return curve[-1]["wall"] if curve else 0.0


def parameter_count(log: str) -> int:
    # The first count is the shared model's (fairseq then logs expert parameters, 0 here).
    return int(re.findall(r"num\. trained: ([\d,]+)", log)[0].replace(",", ""))


def average(run: Run, args) -> Path:
    """fairseq's checkpoint averaging over the last --average-last interval checkpoints."""
    kept = sorted(run.save_dir.glob("checkpoint_*_*.pt"),
                  key=lambda p: int(p.stem.rsplit("_", 1)[1]))[-args.average_last:]
    if not kept:  # a budget below --save-interval-updates
        return run.save_dir / "checkpoint_last.pt"
    output = run.save_dir / f"checkpoint.avg{len(kept)}.pt"
    run_logged([sys.executable, REPO / "examples" / "wmt" / "average_checkpoints.py",
                "--inputs", *kept, "--output", output], run.save_dir / "average.log")
    return output


def score_translation(run: Run, args, checkpoint: Path) -> dict:
    """Beam-4 fairseq-generate on the test set, detokenised, against the raw references."""
    spm = [] if args.spm_model == "none" else ["--bpe", "sentencepiece",
                                                "--sentencepiece-model", args.spm_model]
    log = run_logged([BIN / "fairseq-generate", data_dir(args, "translation"),
                      "--user-dir", USER_DIR, "--path", checkpoint, "--gen-subset", "test",
                      "--beam", "4", "--lenpen", "0.6", "--batch-size", "64",
                      "--max-len-a", "1.5", "--max-len-b", "10", *spm, *EVERY_SENTENCE,
                      *shlex.split(args.generate_args)], run.save_dir / "generate.log")
    hypotheses = {}
    for line in log.splitlines():
        match = re.match(r"D-(\d+)\t[^\t]*\t(.*)$", line)
        if match:
            hypotheses[int(match.group(1))] = match.group(2)
    references = args.references.read_text(encoding="utf-8").splitlines()
    if len(hypotheses) != len(references):
        raise RuntimeError(f"{run.name}: {len(hypotheses)} translations for {len(references)} "
                           f"references in {args.references}; see {run.save_dir / 'generate.log'}")
    ordered = [hypotheses[i] for i in range(len(references))]
    (run.dir / "test.hyp").write_text("\n".join(ordered) + "\n", encoding="utf-8")
    return study_report.translation_scores(ordered, references)


def score_lm(run: Run, args, checkpoint: Path) -> dict:
    """fairseq-eval-lm on the test set; per-block log-likelihoods kept for the bootstrap."""
    max_len = SIZES[args.size][4]
    log = run_logged([BIN / "fairseq-eval-lm", data_dir(args, "lm"), "--user-dir", USER_DIR,
                      "--path", checkpoint, "--gen-subset", "test",
                      "--tokens-per-sample", max_len, "--max-tokens", 4096,
                      "--output-word-probs", *EVERY_SENTENCE, *shlex.split(args.generate_args)],
                     run.save_dir / "eval_lm.log")
    blocks = study_report.lm_block_statistics(log)
    with open(run.dir / "test.blocks.tsv", "w") as out:
        out.write("".join(f"{lp!r}\t{n}\n" for lp, n in blocks))
    perplexity = float(re.findall(r"Perplexity: ([\d.]+)", log)[-1])
    return {"ppl": perplexity, "ppl_from_blocks": study_report.block_perplexity(blocks)}


def train_and_score(run: Run, args, progress) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    run.take_over_shorter_run()
    resumed_from = resume_point(run.save_dir)
    if run.budget is not None and resumed_from > run.budget:
        raise SystemExit(f"{run.save_dir} holds a checkpoint at update {resumed_from}, beyond "
                         f"{run.name}'s budget of {run.budget}: pass another --checkpoints")
    progress.started(run, resumed_from)
    started = time.time()
    if run.budget is None or resumed_from < run.budget:
        log = run_logged(run.train_cmd, run.log_path, env=env, append=True,
                         on_poll=lambda: progress.training(run, resumed_from, started))
    else:  # trained, not scored: fairseq-train would take one more update on resume
        log = run.log_path.read_text()
    trained = time.time()
    checkpoint = average(run, args) if args.average_last > 1 else run.save_dir / "checkpoint_last.pt"
    scores = (score_translation if run.task == "translation" else score_lm)(run, args, checkpoint)
    curve = validation_curve(log)
    result = {
        "task": run.task, "model": run.model, "seed": run.seed,
        "params": parameter_count(log), "updates": curve[-1]["update"] if curve else 0,
        "train_seconds": train_seconds(curve), "curve": curve,
        "checkpoint_averaged": checkpoint.name, "config_hash": run.config_hash,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **scores,
    }
    run.result_path.write_text(json.dumps(result, indent=1) + "\n")
    if not (args.keep_checkpoints or run.continued):  # the averaged model, checkpoint_last stay
        for path in run.save_dir.glob("checkpoint_*_*.pt"):
            path.unlink()
    progress.finished(run, result, trained - started, time.time() - trained, resumed_from)
    return result


class Progress:
    """One line per run as it starts and ends, with the grid's progress and an ETA."""

    def __init__(self, runs, args, parallel: int):
        self.parallel = parallel
        self.minutes = args.minutes
        self.total = len(runs)
        self.done = sum(r.finished() for r in runs)
        self.clock = time.time()
        self.seconds_per_update = []  # training seconds per update of runs finished here
        self.scoring_seconds = []  # averaging + generate/eval-lm of each run finished here
        self.remaining_updates = {r.label: (r.budget or 0) - r.previous_budget
                                  for r in runs if not r.finished()}
        self.lock = threading.Lock()
        self.reported = {}  # run label -> update of its last progress line
        self.running_rates = {}  # run label -> seconds per update so far

    def _stamp(self):
        elapsed = time.time() - self.clock
        return f"[study {self.done}/{self.total} done | {fmt(elapsed)} elapsed | ETA {self._eta()}]"

    def _eta(self):
        if self.minutes:
            return fmt(self.minutes * 60 * len(self.remaining_updates) / self.parallel)
        # Training and scoring apart: a run resumed near its end trains few updates, and its
        # scoring time spread over them would inflate the rate many times.
        rates = self.seconds_per_update or list(self.running_rates.values())
        if not rates:
            return "?"
        rate = sum(rates) / len(rates)
        scoring = (sum(self.scoring_seconds) / len(self.scoring_seconds)
                   if self.scoring_seconds else 0.0)
        left = rate * sum(self.remaining_updates.values()) + scoring * len(self.remaining_updates)
        return fmt(left / self.parallel)

    def started(self, run, resumed_from):
        with self.lock:
            self.remaining_updates[run.label] = max((run.budget or 0) - resumed_from, 0)
            how = f"resuming at update {resumed_from}" if resumed_from else "starting"
            print(f"{self._stamp()} {run.label}: {how}", flush=True)

    def training(self, run, resumed_from, started):
        """A line at each new validation point of a run: its update, loss and ETA."""
        curve = validation_curve(run.log_path.read_text())
        # Points of earlier attempts (the log is appended to) are not news.
        if not curve or curve[-1]["update"] in (self.reported.get(run.label), resumed_from):
            return
        point = curve[-1]
        self.reported[run.label] = point["update"]
        trained = point["update"] - resumed_from
        eta = ""
        with self.lock:
            if run.budget and trained > 0:
                rate = self.running_rates[run.label] = (time.time() - started) / trained
                left = self.remaining_updates[run.label] = run.budget - point["update"]
                eta = f", run ETA {fmt(rate * left)}"
            print(f"{self._stamp()} {run.label}: update {point['update']}"
                  f"{f'/{run.budget}' if run.budget else ''}, valid loss "
                  f"{point['valid_loss']:.3f}{eta}", flush=True)

    def finished(self, run, result, training_seconds, scoring_seconds, resumed_from):
        with self.lock:
            self.done += 1
            self.remaining_updates.pop(run.label, None)
            self.running_rates.pop(run.label, None)
            trained = result["updates"] - resumed_from
            if trained > 0:
                self.seconds_per_update.append(training_seconds / trained)
            self.scoring_seconds.append(scoring_seconds)
            score = (f"BLEU {result['bleu']:.2f}" if "bleu" in result
                     else f"ppl {result['ppl']:.2f}")
            print(f"{self._stamp()} {run.label}: done, {result['updates']} updates, "
                  f"{score}, {fmt(training_seconds + scoring_seconds)}", flush=True)


def fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def grid_of(args):
    """(seed, task, model) of every run of the command, every model's first seed (of every
    task) before any second one: the first results cover the grid."""
    grid = [(seed, t, task, model) for t, task in enumerate(args.tasks.split(","))
            for model, seed in parse_models(args.models, task, args.seeds)]
    return [(seed, task, model) for seed, _, task, model in
            sorted(grid, key=lambda cell: cell[:2])]


def parse_models(spec: str, task: str, default_seeds: int):
    grid = []
    for item in spec.split(","):
        name, _, seeds = item.strip().partition(":")
        if name not in MODELS[task]:
            raise SystemExit(f"unknown model {name!r} for {task}; choose from "
                             f"{', '.join(MODELS[task])}")
        grid += [(name, seed) for seed in range(1, int(seeds or default_seeds) + 1)]
    return grid


def commit(paths, message: str):
    """git add + commit of ``paths`` alone (other staged work is left as it is)."""
    paths = [str(path) for path in paths]
    for _ in range(20):
        add = subprocess.run(["git", "add", "--", *paths], cwd=REPO, capture_output=True,
                             text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *paths], cwd=REPO,
            capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(3)  # another git process holds the index lock
    print(f"warning: could not commit {' '.join(paths)}", flush=True)


def report(out: Path, args, last_budget: bool):
    """Rewrite a budget's report in ``out`` and, for the last budget, the --readme table;
    results.md's lines, or None without finished runs."""
    written = study_report.write(out, args.examples)
    if written and args.readme and last_budget:
        text = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(study_report.with_headline(text, written[1]), encoding="utf-8")
    return written[0] if written else None


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "bible",
                        help="a fairseq data-bin, or scripts/prepare_bible.py's --out "
                             "(bin/ and lm/bin/ are used)")
    parser.add_argument("--tasks", default="translation", help="translation,lm")
    parser.add_argument("--models", default="transformer,random",
                        help="NAME[:SEEDS],... (see --list-models)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per model unless NAME:SEEDS")
    parser.add_argument("--size", choices=SIZES, default="cpu",
                        help="cpu: 3 layers x 128 wide, 4 heads, FFN 512, length 128; "
                             "base: 6 x 512, 8 heads, FFN 2048, length 256; tiny: 1 x 32")
    parser.add_argument("--max-update", type=budget_list, default=[4000],
                        help="budget in updates; several (4000,8000): each run is trained to "
                             "the first and scored, then continued to the next and scored "
                             "again, the results of a later budget B going to OUT_B")
    parser.add_argument("--minutes", type=float, default=0,
                        help="budget in training minutes instead (results then depend on the "
                             "machine's speed)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--save-interval-updates", type=int, default=250,
                        help="checkpoint and validation interval")
    parser.add_argument("--average-last", type=int, default=5,
                        help="average the last N interval checkpoints before scoring")
    parser.add_argument("--log-interval", type=int, default=50)
    parser.add_argument("--fairseq-args", default="", help="more fairseq-train flags, for all")
    parser.add_argument("--generate-args", default="",
                        help="more fairseq-generate / fairseq-eval-lm flags, e.g. --cpu")
    parser.add_argument("--spm-model", default=None,
                        help="sentencepiece model to detokenise with (default: DATA/bpe/spm.model;"
                             " 'none': output is compared as fairseq prints it)")
    parser.add_argument("--references", type=Path, default=None,
                        help="raw test references, one a line (default: DATA/raw/test.<tgt>)")
    parser.add_argument("--threads", type=int, default=2, help="OMP threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "study")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="where checkpoints go (default: checkpoints/<name of --out>)")
    parser.add_argument("--continue-from", type=Path, default=None,
                        help="checkpoints directory of a shorter study with the same flags: "
                             "runs start from its runs' last checkpoints (a longer-budget "
                             "study that reuses the shorter one's training)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep the interval checkpoints after averaging")
    parser.add_argument("--commit", action="store_true",
                        help="git-commit --out (and --readme) after each finished run")
    parser.add_argument("--readme", type=Path, default=None,
                        help="a Markdown file (README.md in scripts/run_study.sh) whose block "
                             f"between {study_report.HEADLINE_BEGIN} and "
                             f"{study_report.HEADLINE_END} gets the last budget's short table "
                             "after each run")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from finished runs, train nothing")
    parser.add_argument("--examples", type=int, default=3,
                        help="test sentences shown with every model's translation")
    parser.add_argument("--list-models", action="store_true")
    return parser


def budget_list(text: str):
    budgets = [int(b) for b in text.split(",")]
    if budgets != sorted(set(budgets)) or budgets[0] <= 0:
        raise argparse.ArgumentTypeError(f"{text}: budgets must be positive and increasing")
    return budgets


def stage_args(args, budget: int, first: bool):
    """The settings of one budget's study: its own --out (OUT_B after the first budget), the
    checkpoints shared (a later budget continues the runs of the one before)."""
    stage = argparse.Namespace(**vars(args))
    stage.max_update = budget
    if not first:
        stage.out = args.out.with_name(f"{args.out.name}_{budget}")
        stage.continue_from = None
    return stage


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for budget in args.max_update:
        if not args.minutes and budget % args.save_interval_updates:
            parser.error(f"--max-update {budget} is no multiple of --save-interval-updates "
                         f"{args.save_interval_updates}: the last update would not be among the "
                         f"averaged checkpoints")
    if args.minutes and len(args.max_update) > 1:
        parser.error("several --max-update budgets need an update budget, not --minutes")
    if args.readme:
        try:
            study_report.with_headline(args.readme.read_text(encoding="utf-8"), [])
        except (OSError, ValueError) as error:
            parser.error(f"--readme {args.readme}: {error}")
        args.readme = args.readme.resolve()
    if args.list_models:
        for task, models in MODELS.items():
            print(f"{task}: {', '.join(models)}")
        return
    args.data = args.data.resolve()
    args.checkpoints = args.checkpoints or REPO / "checkpoints" / args.out.name
    if args.spm_model is None:
        args.spm_model = args.data / "bpe" / "spm.model"
    tasks = args.tasks.split(",")
    budgets = args.max_update
    stages = [stage_args(args, budget, i == 0) for i, budget in enumerate(budgets)]
    # A chain is one run at each budget, trained one after the other.
    chains = [[Run(stage, task, model, seed, previous_budget=([0] + budgets)[i],
                   continued=i + 1 < len(stages), label_budget=len(budgets) > 1)
               for i, stage in enumerate(stages)]
              for seed, task, model in grid_of(args)]
    runs = [run for chain in chains for run in chain]
    if not args.report_only:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop_training)
        prepare(args, tasks)
        for stage in stages:
            keep_with_results(stage, args, tasks)
        for run in runs:
            run.check_config()
        pending = [chain for chain in chains if not all(run.finished() for run in chain)]
        progress = Progress(runs, args, parallel=max(1, min(args.jobs, len(pending))))
        finished = sum(run.finished() for run in runs)
        budget = (f"{args.minutes} min" if args.minutes
                  else f"{' then '.join(map(str, budgets))} updates")
        print(f"[study] {len(runs)} runs, {finished} already finished; budget {budget} per "
              f"run, {args.jobs} at a time x {args.threads} threads", flush=True)

        def one(chain):
            for run in chain:
                if run.finished() or STOPPING.is_set():
                    continue
                train_and_score(run, args, progress)
                last_budget = run.out == stages[-1].out
                with REPORTING:
                    report(run.out, args, last_budget)
                    if args.commit:
                        shown = [args.readme] if args.readme and last_budget else []
                        commit([run.out, *shown], f"study: {run.name} finished ({run.out.name})")

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(one, chain) for chain in pending]:
                future.result()
    for stage in stages:
        lines = report(stage.out, args, stage is stages[-1]) or ["no finished runs"]
        print("\n".join(lines))
        print(f"[study] wrote {stage.out / 'results.md'}, study.json and plots", flush=True)


def prepare(args, tasks):
    """Fail early, naming the fix, when data or references are missing."""
    for task in tasks:
        if not list(data_dir(args, task).glob("dict*.txt")):
            raise SystemExit(f"no fairseq data-bin for {task} at {data_dir(args, task)}: run "
                             f"{sys.executable} scripts/prepare_bible.py --out {args.data} "
                             f"--binarize, or pass --data")
    if "translation" in tasks:
        source, target = language_pair(args)
        args.references = args.references or args.data / "raw" / f"test.{target}"
        if not args.references.exists():
            raise SystemExit(f"no test references at {args.references}: pass --references")
        if args.spm_model != "none" and not Path(args.spm_model).exists():
            raise SystemExit(f"no sentencepiece model at {args.spm_model}: pass --spm-model "
                             f"(or 'none')")


def keep_with_results(stage, args, tasks):
    """The command and the test references beside a budget's results, so that its report
    rebuilds anywhere."""
    stage.out.mkdir(parents=True, exist_ok=True)
    command = stage.out / "command.txt"
    if not names_every_run_of(command, args):
        command.write_text(shlex.join(["python", *sys.argv]) + "\n")
    if "translation" in tasks:
        kept = stage.out / "test.ref"
        if kept.exists() and kept.read_bytes() != args.references.read_bytes():
            raise SystemExit(f"{args.references} differs from the references of the runs in "
                             f"{stage.out}: pass another --out")
        shutil.copyfile(args.references, kept)
        source, _ = language_pair(args)
        sources = args.references.parent / f"test.{source}"
        if sources.exists():  # for the example translations of the report
            shutil.copyfile(sources, stage.out / "test.src")


def names_every_run_of(command: Path, args) -> bool:
    """Whether the study command kept in ``command`` has the budgets of ``args`` and every run
    of its grid: a study continued a few models at a time keeps the whole grid's command in
    its report."""
    if not command.exists():
        return False
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # "python study.py ARGS", as written
            kept = build_parser().parse_args(shlex.split(command.read_text())[2:])
        kept_runs = set(grid_of(kept))
    except (SystemExit, KeyError, ValueError):  # a command of another version of study.py
        return False
    return ((kept.max_update, kept.minutes) == (args.max_update, args.minutes)
            and kept_runs >= set(grid_of(args)))


def language_pair(args):
    """(source, target) of the translation data-bin, from its test files' names."""
    for idx in data_dir(args, "translation").glob("test.*-*.*.idx"):
        return tuple(idx.name.split(".")[1].split("-"))
    raise SystemExit(f"no test split in {data_dir(args, 'translation')}")


if __name__ == "__main__":
    main()
