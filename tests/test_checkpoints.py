"""The weights_only allow-list (fairseq_synth/checkpoint_safety.py) is exactly what is needed.

Checkpoints of several configurations (translation, translation with --eval-bleu, a language
model) load with ``torch.load(weights_only=True)``; removing any single allow-list entry
makes at least one of them fail, so the list holds nothing superfluous.
"""

import math

import pytest
import torch

from fairseq_synth.checkpoint_safety import FAIRSEQ_CHECKPOINT_GLOBALS
from helpers import USER_DIR, run_cli
from reliability_helpers import language_model_data, train, train_losses

SHORT = ["--max-update", "4", "--seed", "1"]


@pytest.fixture(scope="module")
def checkpoints(reversal_data, tmp_path_factory):
    paths = {}
    eval_bleu = tmp_path_factory.mktemp("eval_bleu")
    train(reversal_data, eval_bleu, *SHORT, "--eval-bleu", "--eval-bleu-args",
          '{"beam": 1, "max_len_b": 12}', "--best-checkpoint-metric", "bleu",
          "--maximize-best-checkpoint-metric", "--max-tokens-valid", "400")
    paths["translation --eval-bleu"] = eval_bleu / "checkpoint_last.pt"

    plain = tmp_path_factory.mktemp("plain")
    proc = train(reversal_data, plain, *SHORT)
    paths["translation"] = plain / "checkpoint_last.pt"
    losses = train_losses(proc.stdout + proc.stderr)
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses.values())

    lm = tmp_path_factory.mktemp("lm")
    run_cli("fairseq-train", language_model_data(reversal_data), "--task", "language_modeling",
            "--user-dir", USER_DIR, "--arch", "transformer_lm_synth_random_vanilla_tiny",
            "--synth-max-len", "24", "--tokens-per-sample", "24", "--optimizer", "adam",
            "--lr", "0.001", "--batch-size", "16", "--cpu", "--num-workers", "0",
            "--no-epoch-checkpoints", "--save-dir", lm, *SHORT)
    paths["language model"] = lm / "checkpoint_last.pt"
    return paths


def test_every_configuration_loads_with_weights_only(checkpoints):
    for name, path in checkpoints.items():
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["model"], name


def pickled_by_this_numpy(entry) -> bool:
    """(function, name) entries name the function as some numpy version pickles it; this
    numpy's checkpoints can only need the spelling of this numpy."""
    if not isinstance(entry, tuple):
        return True
    function, name = entry
    return name == f"{function.__module__}.{function.__name__}"


def test_each_allow_list_entry_is_needed_by_some_checkpoint(checkpoints):
    try:
        for entry in filter(pickled_by_this_numpy, FAIRSEQ_CHECKPOINT_GLOBALS):
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals(
                [e for e in FAIRSEQ_CHECKPOINT_GLOBALS if e is not entry]
            )
            failures = []
            for name, path in checkpoints.items():
                try:
                    torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 (torch raises UnpicklingError or others)
                    failures.append(name)
            assert failures, f"{entry} is allow-listed but no checkpoint needs it"
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_GLOBALS)
