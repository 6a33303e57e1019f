"""Test helpers (fairseq's own tests/utils.py is not installed): toy data, CLI runs, models.

Models are built the way fairseq-train builds them: arguments parsed by fairseq's parser with
``--user-dir``, the architecture looked up in fairseq's registry, the model built by the task.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.data import Dictionary

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_synth")
BIN = Path(sys.executable).parent

# Small sizes that keep every architecture's structure (2 layers, 4 heads).
TINY_ARGS = [
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
    "--synth-max-len", "24", "--dropout", "0.0",
]

LETTERS = "abcdefghijklmnop"


def write_reversal_corpus(directory: Path, n_train=2000, n_valid=100, n_test=100, seed=0,
                          min_len=3, max_len=10):
    """A learnable toy translation task: the target is the source reversed."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, size in [("train", n_train), ("valid", n_valid), ("test", n_test)]:
        with open(directory / f"{split}.src", "w") as src, open(directory / f"{split}.tgt", "w") as tgt:
            for _ in range(size):
                words = [rng.choice(LETTERS) for _ in range(rng.randint(min_len, max_len))]
                src.write(" ".join(words) + "\n")
                tgt.write(" ".join(reversed(words)) + "\n")
    return directory


def cli_env(**overrides) -> dict:
    """The environment of every fairseq process a test starts. Runs whose results are compared
    bit for bit must use the same number of threads (a float sum's order depends on it), so the
    thread count is the caller's OMP_NUM_THREADS (run_tests.sh sets 2) or 1, never per test."""
    env = dict(os.environ, **overrides)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_cli(tool: str, *args, env=None, check=True, timeout=900,
            input=None) -> subprocess.CompletedProcess:
    """Run a fairseq console script of this venv (``input`` goes to its stdin); on failure
    raise with its output."""
    proc = subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True,
                          env=cli_env(**(env or {})), timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{tool} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def preprocess_reversal(directory: Path) -> Path:
    write_reversal_corpus(directory)
    run_cli("fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt",
            "--trainpref", directory / "train", "--validpref", directory / "valid",
            "--testpref", directory / "test", "--destdir", directory / "bin",
            "--joined-dictionary", "--workers", "1")
    return directory / "bin"


def toy_dictionary(size=20) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size):
        dictionary.add_symbol(f"w{i}")
    return dictionary



def build_translation_model(arch: str, extra=(), dictionary=None):
    """Build ``arch`` through fairseq's argument parser and model registry."""
    dictionary = dictionary or toy_dictionary()
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", USER_DIR, "--task", "translation", "--arch", arch,
                 "--source-lang", "src", "--target-lang", "tgt", *extra]
    )
    task = tasks.get_task("translation")(args, dictionary, dictionary)
    torch.manual_seed(0)
    return task.build_model(args), dictionary


def build_lm_model(arch: str, extra=(), dictionary=None):
    """Build a language model ``arch`` through fairseq's parser and registry."""
    dictionary = dictionary or toy_dictionary()
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", USER_DIR, "--task", "language_modeling",
                 "--arch", arch, *extra]
    )
    task = tasks.get_task("language_modeling")(args, dictionary, dictionary)
    torch.manual_seed(0)
    return task.build_model(args), dictionary


# --- the model's own scoring, independent of generation (for checks that hold on any CPU) ----

def load_translation_checkpoint(path, data):
    """``(model, task)`` of a translation checkpoint, loaded as fairseq-generate loads it."""
    from fairseq import checkpoint_utils

    import fairseq_synth  # noqa: F401 (registers the architectures)

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(path)], arg_overrides={"data": str(data)})
    return models[0].eval(), task


def teacher_forced(model, task, source: str, target: str):
    """``(tokens, lprobs)``: ``target``'s tokens then </s>, and the model's log-probabilities
    (natural log, one row of the vocabulary per target position) from ONE full forward of the
    pair alone, teacher forced: no incremental decoding, no beam, no padding. Generation's
    scores of a hypothesis must equal ``lprobs`` at its tokens."""
    src = task.source_dictionary.encode_line(source, add_if_not_exist=False).long()[None]
    tgt = task.target_dictionary.encode_line(target, add_if_not_exist=False).long()[None]
    prev = torch.cat([tgt[:, -1:], tgt[:, :-1]], dim=1)  # </s> first, as fairseq shifts
    model.eval()
    with torch.no_grad():
        out = model(src, torch.tensor([src.size(1)]), prev)
        lprobs = model.get_normalized_probs(out, log_probs=True)[0].float()
    return tgt[0], lprobs


def token_scores(tokens, lprobs):
    """Log-probability of each of ``tokens`` under ``lprobs`` (rows = positions)."""
    return lprobs.gather(1, tokens[:, None])[:, 0]


def is_argmax_path(tokens, lprobs, tol=1e-4) -> bool:
    """Every token is the model's most probable next token, up to ``tol`` (a near-tie may go
    either way between computations that differ by float rounding): what greedy search emits."""
    return bool((token_scores(tokens, lprobs) >= lprobs.max(dim=1).values - tol).all())


def same_or_near_tie(first, second, tol=1e-4) -> bool:
    """Whether two outputs for one input (say batched and alone) are the same generation up to
    float noise: ``first``, ``second`` are ``(tokens, lprobs)`` of ``teacher_forced``. Equal
    tokens; or different tokens the model scores within ``tol`` of each other (mean
    log-probability per token, the beam's ranking); or, where they first differ after a shared
    prefix, two next tokens within ``tol`` of each other (greedy's choice at a near-tie)."""
    (a, lp_a), (b, lp_b) = first, second
    if torch.equal(a, b):
        return True
    if abs(token_scores(a, lp_a).mean() - token_scores(b, lp_b).mean()) <= tol:
        return True
    n = min(len(a), len(b))
    i = next(i for i in range(n + 1) if i == n or a[i] != b[i])
    if i == n:  # one is a prefix of the other: they differ where one ends (</s>)
        return False
    return bool(abs(lp_a[i, a[i]] - lp_a[i, b[i]]) <= tol)
