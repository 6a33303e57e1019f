"""End to end through fairseq's own command-line tools: preprocess -> train -> generate/interactive."""

import math
import pickle
import re

import pytest
import sacrebleu
import torch

import fairseq_synth  # noqa: F401 (allow-lists fairseq's checkpoint types for torch.load)

from helpers import (
    TINY_ARGS,
    USER_DIR,
    is_argmax_path,
    load_translation_checkpoint,
    run_cli,
    same_or_near_tie,
    teacher_forced,
    token_scores,
)

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


def generations(output: str) -> dict:
    """``{sentence id: (source, reference, hypothesis, score)}`` of fairseq-generate's output;
    the score is the H line's: mean log2-probability per token (</s> included)."""
    sources = dict(re.findall(r"^S-(\d+)\t(.*)$", output, flags=re.M))
    references = dict(re.findall(r"^T-(\d+)\t(.*)$", output, flags=re.M))
    return {int(i): (sources[i], references[i], hypothesis, float(score))
            for i, score, hypothesis in re.findall(r"^H-(\d+)\t(\S+)\t(.*)$", output, flags=re.M)}


def bits_per_token(model, task, source, target) -> float:
    """The model's own score of ``target`` for ``source`` (one full teacher-forced forward), in
    fairseq-generate's unit: mean log2-probability per token, </s> included."""
    return (token_scores(*teacher_forced(model, task, source, target)).mean()
            / math.log(2)).item()


def generate(trained, beam):
    data, checkpoint = trained
    # --required-batch-size-multiple 1: fairseq drops a last batch smaller than it (8 by
    # default; fairseq issue #5036), and 100 sentences in batches of 32 or 16 leave 4 over.
    return run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--path", checkpoint,
                   "--beam", beam, "--cpu", "--batch-size", "32",
                   "--required-batch-size-multiple", "1")


def test_generate_scores_are_the_models_and_bleu_is_sacrebleus(trained):
    """Checks that hold on any CPU: each hypothesis is printed with the model's own score of
    it, fairseq's BLEU is sacreBLEU's on the written hypotheses, and the model has learned the
    task by its likelihood of the references (a toy model's exact outputs and BLEU vary across
    CPUs, a near-tie can flip a token)."""
    result = generate(trained, "4")
    output = generations(result.stdout)
    assert sorted(output) == list(range(100))  # every test sentence translated
    model, task = load_translation_checkpoint(trained[1], trained[0])
    for i, (source, _, hypothesis, score) in output.items():
        own = bits_per_token(model, task, source, hypothesis)
        assert abs(own - score) < 1e-4, (i, source, hypothesis, score, own)
    ids = sorted(output)
    bleu = sacrebleu.corpus_bleu([output[i][2] for i in ids], [[output[i][1] for i in ids]],
                                 tokenize="none")
    assert abs(bleu_of(result.stdout + result.stderr) - bleu.score) < 0.006  # printed rounded
    # Learned: the references cost under 1.5 bits a token (about 0.4 after 300 updates with
    # label smoothing 0.1; an untrained model pays about log2(16) = 4 for a random letter).
    reference = [-bits_per_token(model, task, source, target)
                 for source, target, _, _ in output.values()]
    assert sum(reference) / len(reference) < 1.5, sum(reference) / len(reference)


def test_greedy_and_beam_agree_on_a_learned_task(trained):
    model, task = load_translation_checkpoint(trained[1], trained[0])
    outputs, bleu = {}, {}
    for beam in ("1", "4"):
        result = generate(trained, beam)
        outputs[beam] = generations(result.stdout)
        assert sorted(outputs[beam]) == list(range(100)), beam  # all 100 scored
        for source, _, hypothesis, score in outputs[beam].values():
            tokens, lprobs = teacher_forced(model, task, source, hypothesis)
            # Incremental decoding with beam reordering scored what a full forward scores.
            own = (token_scores(tokens, lprobs).mean() / math.log(2)).item()
            assert abs(own - score) < 1e-4, (beam, source, hypothesis, score, own)
            if beam == "1":  # greedy: the model's most probable token at every step
                assert is_argmax_path(tokens, lprobs), (source, hypothesis)
        bleu[beam] = bleu_of(result.stdout)
    # On a learned task the two searches mostly agree: 4 BLEU apart here; 15 is a wide margin
    # (a flipped token moves corpus BLEU by about 1).
    assert abs(bleu["1"] - bleu["4"]) < 15, bleu


def hypotheses_of(result):
    """``[(line id, hypothesis)]`` of fairseq-interactive's output."""
    return re.findall(r"^H-(\d+)\t[-\d.]+\t(.*)$", result.stdout, flags=re.M)


def scored_hypotheses_of(result):
    """``{line id: (hypothesis, score)}`` of fairseq-interactive's output (score as generate's)."""
    return {int(i): (hypothesis, float(score)) for i, score, hypothesis in
            re.findall(r"^H-(\d+)\t(\S+)\t(.*)$", result.stdout, flags=re.M)}


def test_interactive_translates_lines(trained):
    lines = ["a b c d e", "f g h", "p o n m l k"]
    alone = interactive(trained, "\n".join(lines) + "\n")
    batched = interactive(trained, "\n".join(lines) + "\n", "--buffer-size", "3",
                          "--batch-size", "3")
    assert alone.returncode == batched.returncode == 0, alone.stderr[-3000:]
    alone, batched = scored_hypotheses_of(alone), scored_hypotheses_of(batched)
    assert sorted(alone) == sorted(batched) == [0, 1, 2]
    model, task = load_translation_checkpoint(trained[1], trained[0])
    for i, line in enumerate(lines):
        scored = {}
        for name, (hypothesis, score) in (("alone", alone[i]), ("batched", batched[i])):
            # Each line's hypothesis, with the score the model gives it for THAT line.
            scored[name] = teacher_forced(model, task, line, hypothesis)
            own = (token_scores(*scored[name]).mean() / math.log(2)).item()
            assert abs(own - score) < 1e-4, (line, name, hypothesis, score, own)
        # Line by line or left-padded together in one batch: the same translation (then the
        # same score to float noise) or, where a near-tie flipped, one the model scores alike.
        if alone[i][0] == batched[i][0]:
            assert abs(alone[i][1] - batched[i][1]) < 1e-4, (line, alone[i], batched[i])
        else:
            assert same_or_near_tie(scored["alone"], scored["batched"]), (line, alone[i],
                                                                           batched[i])
    # Learned (the exact outputs of a 300-update toy model vary across CPUs): the true
    # reversals of the lines cost under 1.5 bits a token (uniform over 16 letters: 4).
    reference = [-bits_per_token(model, task, line, " ".join(line.split()[::-1]))
                 for line in lines]
    assert sum(reference) / len(reference) < 1.5, reference


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
