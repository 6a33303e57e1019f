"""End to end through fairseq's own command-line tools: preprocess -> train -> generate/interactive."""

import pickle
import re

import pytest
import torch

import fairseq_synth  # noqa: F401 (allow-lists fairseq's checkpoint types for torch.load)

from helpers import TINY_ARGS, USER_DIR, agreement_with_reversal, run_cli

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


def hypotheses_of(result):
    """``[(line id, hypothesis)]`` of fairseq-interactive's output."""
    return re.findall(r"^H-(\d+)\t[-\d.]+\t(.*)$", result.stdout, flags=re.M)


def test_interactive_translates_lines(trained):
    lines = ["a b c d e", "f g h", "p o n m l k"]
    alone = interactive(trained, "\n".join(lines) + "\n")
    batched = interactive(trained, "\n".join(lines) + "\n", "--buffer-size", "3",
                          "--batch-size", "3")
    assert alone.returncode == batched.returncode == 0, alone.stderr[-3000:]
    # Line by line or left-padded together in one batch: the same translations.
    assert hypotheses_of(batched) == hypotheses_of(alone)
    translations = [hyp for _, hyp in hypotheses_of(alone)]
    assert len(translations) == 3
    # A 300-update toy model reverses most of each line (exact output varies across CPUs).
    for source, hypothesis in zip(lines, translations):
        assert agreement_with_reversal(source, hypothesis) >= 0.5, (source, hypothesis)


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


def interactive(trained, text, *extra):
    data, checkpoint = trained
    return run_cli("fairseq-interactive", data, "--user-dir", USER_DIR, "--path", checkpoint,
                   "--beam", "2", "--cpu", "--source-lang", "src", "--target-lang", "tgt",
                   *extra, input=text, check=False)


def test_interactive_skips_too_long_source_and_goes_on(trained):
    too_long = " ".join("abcdefghijklmnop"[i % 16] for i in range(40))  # > --synth-max-len 24
    text = f"a b c\n{too_long}\nd e f\n"
    # fairseq's default: it stops, naming the option that skips such inputs instead.
    stopped = interactive(trained, text)
    assert stopped.returncode != 0
    assert "skip-invalid-size-inputs-valid-test" in stopped.stderr
    assert "max_positions=(24, 24)" in stopped.stderr
    # With it, the long line is skipped with a warning and the session translates the rest,
    # exactly as it translates them without the long line between them.
    result = interactive(trained, text, "--skip-invalid-size-inputs-valid-test")
    assert result.returncode == 0, result.stderr[-3000:]
    alone = [hyp for _, hyp in hypotheses_of(interactive(trained, "a b c\nd e f\n"))]
    assert len(alone) == 2
    assert hypotheses_of(result) == [("0", alone[0]), ("2", alone[1])]
    assert "will be skipped" in result.stderr


def test_interactive_empty_lines_do_not_stop_the_session(trained):
    result = interactive(trained, "\na b c\n\n")
    assert result.returncode == 0, result.stderr[-3000:]
    hypotheses = hypotheses_of(result)
    alone = hypotheses_of(interactive(trained, "a b c\n"))
    assert [h for h in hypotheses if h[0] == "1"] == [("1", alone[0][1])]
    assert len(hypotheses) == 3


def sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_of_another_synth_max_len_gets_a_clear_error(trained, tmp_path):
    data, checkpoint = trained
    before = sha256(checkpoint)
    result = run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint,
                     "--cpu", "--model-overrides", "{'synth_max_len': 48}", check=False)
    assert result.returncode != 0
    assert "SynthesizerCheckpointError" in result.stderr
    assert "trained with --synth-max-len 24" in result.stderr
    assert "built with --synth-max-len 48" in result.stderr
    # Resuming training with a larger --synth-max-len: the same message; nothing is written.
    save_dir = checkpoint.parent
    last = save_dir / "checkpoint_last.pt"
    last_before = sha256(last)
    train = run_cli("fairseq-train", data, *TRAIN_ARGS, "--synth-max-len", "48",
                    "--max-update", "310", "--save-dir", save_dir, check=False)
    assert train.returncode != 0
    assert "trained with --synth-max-len 24" in train.stdout + train.stderr
    assert sha256(checkpoint) == before and sha256(last) == last_before


def test_missing_split_names_the_split(trained, tmp_path):
    data, _ = trained
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in data.iterdir():
        if not f.name.startswith("valid."):
            (partial / f.name).symlink_to(f)
    result = run_cli("fairseq-train", partial, *TRAIN_ARGS, "--max-update", "1",
                     "--save-dir", tmp_path / "ckpt", check=False)
    assert result.returncode != 0
    assert "Dataset not found: valid" in result.stdout + result.stderr
