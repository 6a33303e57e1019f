"""scripts/plot_alignments.py on tiny checkpoints trained through the CLI (LM and translation)."""

import importlib.util

import pytest
import torch
from matplotlib import image

from helpers import REPO, TINY_ARGS, USER_DIR, run_cli
from test_lm import preprocess_lm, train_lm, write_grammar_corpus

SCRIPT = REPO / "scripts" / "plot_alignments.py"
spec = importlib.util.spec_from_file_location("plot_alignments", SCRIPT)
plot_alignments = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_alignments)


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory):
    """A Random+Dense LM after a few updates: (checkpoint, data dir)."""
    root = tmp_path_factory.mktemp("plot_lm")
    data = preprocess_lm(write_grammar_corpus(root / "text"), root / "bin")
    return train_lm(data, root / "checkpoints", "transformer_lm_synth_random_dense_tiny",
                    max_update=20), data


@pytest.fixture(scope="module")
def translation_checkpoint(reversal_data, tmp_path_factory):
    """A Random Synthesizer translation model after a few updates."""
    save_dir = tmp_path_factory.mktemp("plot_translation")
    run_cli("fairseq-train", reversal_data, "--task", "translation", "--user-dir", USER_DIR,
            "--arch", "synth_random_base", *TINY_ARGS, "--optimizer", "adam", "--lr", "0.001",
            "--batch-size", "64", "--max-update", "20", "--save-dir", save_dir,
            "--no-epoch-checkpoints", "--seed", "1", "--num-workers", "0")
    return save_dir / "checkpoint_last.pt"


def plot(checkpoint, out, *args):
    """Run the script as a user would; returns the paths it printed."""
    proc = run_cli("python", SCRIPT, checkpoint, "--out", out, *args)
    return sorted(line for line in proc.stdout.splitlines() if line.endswith(".png"))


def check_images(paths):
    for path in paths:
        pixels = image.imread(path)  # (height, width, RGBA)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, path
        assert pixels.std() > 0.01, f"{path} is blank"


def test_language_model_plots(lm_checkpoint, tmp_path):
    checkpoint, data = lm_checkpoint
    paths = plot(checkpoint, tmp_path, "--data", data, "--sentence", "the cat sees a tree .")
    expected = [f"decoder_layer{i}_{kind}.png" for i in (0, 1) for kind in ("random", "sentence")]
    assert [p.split("/")[-1] for p in paths] == sorted(expected + ["mixture_weights.png"])
    assert sorted(map(str, tmp_path.iterdir())) == paths
    check_images(paths)


def test_translation_plots(translation_checkpoint, tmp_path):
    paths = plot(translation_checkpoint, tmp_path, "--sentence", "a b c d", "--target", "d c b a")
    expected = [f"{stack}_layer{i}_{kind}.png" for stack in ("encoder", "decoder")
                for i in (0, 1) for kind in ("random", "sentence")]
    assert [p.split("/")[-1] for p in paths] == sorted(expected + ["mixture_weights.png"])
    check_images(paths)


def test_random_heatmaps_are_the_softmax_of_r(lm_checkpoint):
    model, _ = plot_alignments.load_model(str(lm_checkpoint[0]))
    for _, attention, causal in plot_alignments.self_attentions(model):
        assert causal
        probs = plot_alignments.input_independent_probs(attention, 10, causal)["random"]
        weight = attention.alignments["random"].weight.detach()[:, :10, :10]
        expected = torch.softmax(weight.masked_fill(torch.ones(10, 10).triu(1).bool(),
                                                    float("-inf")), dim=-1)
        torch.testing.assert_close(probs, expected)
        assert probs.shape == (attention.num_heads, 10, 10)


def test_sentence_weights_of_a_pure_random_model_are_its_matrices(translation_checkpoint):
    """Random ignores its input: the weights captured from a forward equal softmax(R[:T, :T])."""
    model, task = plot_alignments.load_model(str(translation_checkpoint))
    net_input = plot_alignments.sentence_inputs(model, task, "a b c d e", "e d c b a")
    captured = plot_alignments.sentence_head_weights(model, net_input)
    attentions = list(plot_alignments.self_attentions(model))
    assert sorted(captured) == sorted(label for label, _, _ in attentions)
    for label, attention, causal in attentions:
        length = 6  # five letters and </s>
        expected = plot_alignments.input_independent_probs(attention, length, causal)["random"]
        torch.testing.assert_close(captured[label], expected, atol=1e-5, rtol=1e-5)
    # The hooks are gone: the model's own forward asks for no weights again.
    assert all(not a._forward_hooks and not a._forward_pre_hooks for _, a, _ in attentions)
