"""End to end through fairseq's own command-line tools: preprocess -> train -> generate/interactive."""

import pickle
import re

import pytest
import torch

import fairseq_synth  # noqa: F401 (allow-lists fairseq's checkpoint types for torch.load)

from helpers import TINY_ARGS, USER_DIR, run_cli

TRAIN_ARGS = [
    "--user-dir", USER_DIR, "--arch", "synth_random_base", *TINY_ARGS,
    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
    "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128",
    "--share-all-embeddings", "--optimizer", "adam", "--lr", "0.003",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50", "--max-tokens", "2000",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--no-epoch-checkpoints", "--cpu", "--seed", "1", "--log-format", "simple",
]


@pytest.fixture(scope="module")
def trained(reversal_data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("synth_random_ckpt")
    run_cli("fairseq-train", reversal_data, *TRAIN_ARGS, "--max-update", "300",
            "--save-dir", save_dir)
    return reversal_data, save_dir / "checkpoint_best.pt"


def bleu_of(output: str) -> float:
    return float(re.search(r"BLEU4? = ([\d.]+)", output).group(1))


def test_generate_reports_bleu_far_above_chance(trained):
    data, checkpoint = trained
    result = run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint,
                     "--beam", "4", "--cpu", "--batch-size", "32",
                     "--required-batch-size-multiple", "1")
    # Every test sentence is translated (fairseq drops a last batch smaller than
    # --required-batch-size-multiple, 8 by default; fairseq issue #5036).
    assert len(re.findall(r"^H-\d+", result.stdout, flags=re.M)) == 100
    # Reversing random letters: chance BLEU is near 0; a trained model gets most n-grams right.
    assert bleu_of(result.stdout + result.stderr) > 50


def test_greedy_and_beam_agree_on_a_learned_task(trained):
    data, checkpoint = trained
    outputs = [run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint,
                       "--beam", beam, "--cpu", "--batch-size", "16") for beam in ("1", "4")]
    assert abs(bleu_of(outputs[0].stdout) - bleu_of(outputs[1].stdout)) < 15


def test_interactive_translates_lines(trained):
    data, checkpoint = trained
    result = run_cli("fairseq-interactive", data, "--user-dir", USER_DIR, "--path", checkpoint,
                     "--beam", "4", "--cpu", "--source-lang", "src", "--target-lang", "tgt",
                     input="a b c d e\nf g h\n")
    hypotheses = re.findall(r"^H-\d+\t[-\d.]+\t(.*)$", result.stdout, flags=re.M)
    assert hypotheses == ["e d c b a", "h g f"]


def test_checkpoint_loads_with_weights_only_and_no_environment_tweaks(trained):
    _, checkpoint = trained
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["args"] is None or hasattr(state["args"], "arch")
    assert any(k.endswith("alignments.random.weight") for k in state["model"])


def test_checkpoint_with_unexpected_object_is_refused(trained, tmp_path):
    _, checkpoint = trained
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["extra_state"]["payload"] = UnexpectedObject()
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(pickle.UnpicklingError, match="UnexpectedObject"):
        torch.load(bad, map_location="cpu", weights_only=True)
    result = run_cli("fairseq-generate", trained[0], "--user-dir", USER_DIR, "--path", bad,
                     "--cpu", check=False)
    assert result.returncode != 0
    assert "UnexpectedObject" in result.stderr


class UnexpectedObject:
    pass
