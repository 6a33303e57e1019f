"""Trained checkpoints loaded the fairseq way: ``from_pretrained`` then translate / sample.

Generation decodes incrementally (with beam reordering); its scores are checked against a full
forward of the same tokens.
"""

import random
from pathlib import Path

import pytest
import sentencepiece
import torch
from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE

from fairseq_synth.models.synth_transformer import SynthTransformerModel
from fairseq_synth.models.synth_transformer_lm import SynthTransformerLanguageModel
from helpers import LETTERS, TINY_ARGS, USER_DIR, agreement_with_reversal, run_cli
from test_lm import VERBS, preprocess_lm, train_lm, write_grammar_corpus

CHECKPOINT = "checkpoint_last.pt"


@pytest.fixture(scope="module")
def reversal_model(reversal_data, tmp_path_factory) -> Path:
    """A tiny Random Synthesizer translation model trained to reverse its input."""
    save_dir = tmp_path_factory.mktemp("reversal_model")
    run_cli("fairseq-train", reversal_data, "--task", "translation", "--user-dir", USER_DIR,
            "--arch", "synth_random_base", *TINY_ARGS, "--share-all-embeddings",
            "--optimizer", "adam", "--lr", "0.005", "--lr-scheduler", "inverse_sqrt",
            "--warmup-updates", "50", "--batch-size", "64", "--max-update", "600",
            "--save-dir", save_dir, "--no-epoch-checkpoints", "--save-interval", "1000",
            "--validate-interval", "1000", "--seed", "1", "--num-workers", "0")
    return save_dir


@pytest.fixture(scope="module")
def sentencepiece_lm(tmp_path_factory):
    """A tiny Dense+Vanilla LM trained on sentencepiece pieces of the grammar corpus.

    Returns (checkpoint dir, data dir, sentencepiece model path).
    """
    root = tmp_path_factory.mktemp("sentencepiece_lm")
    text = write_grammar_corpus(root / "text")
    model_prefix = root / "spm"
    sentencepiece.SentencePieceTrainer.train(
        input=str(text / "train.txt"), model_prefix=str(model_prefix), vocab_size=48,
        model_type="bpe", character_coverage=1.0, minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(model_file=f"{model_prefix}.model")
    pieces = root / "pieces"
    pieces.mkdir()
    for split in ("train", "valid", "test"):
        lines = (text / f"{split}.txt").read_text().splitlines()
        encoded = [" ".join(processor.encode(line, out_type=str)) for line in lines]
        (pieces / f"{split}.txt").write_text("\n".join(encoded) + "\n")
    data = preprocess_lm(pieces, root / "bin")
    train_lm(data, root / "checkpoints", "transformer_lm_synth_dense_vanilla_tiny")
    return root / "checkpoints", data, Path(f"{model_prefix}.model")


def load_lm(sentencepiece_lm):
    checkpoints, data, spm_model = sentencepiece_lm
    return SynthTransformerLanguageModel.from_pretrained(
        str(checkpoints), checkpoint_file=CHECKPOINT, data_name_or_path=str(data),
        bpe="sentencepiece", sentencepiece_model=str(spm_model),
    )


def reversal_inputs(count=10, seed=123):
    rng = random.Random(seed)
    return [" ".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6))) for _ in range(count)]


def test_translation_model_translates(reversal_model, reversal_data):
    hub = SynthTransformerModel.from_pretrained(
        str(reversal_model), checkpoint_file=CHECKPOINT, data_name_or_path=str(reversal_data)
    )
    assert isinstance(hub.models[0], SynthTransformerModel)
    assert agreement_with_reversal("a b c d", hub.translate("a b c d")) >= 0.5
    sentences = reversal_inputs()
    expected = [" ".join(reversed(s.split())) for s in sentences]
    for beam in (1, 5):
        batched = hub.translate(sentences, beam=beam)
        # Left-padded in one batch or alone: a sentence's translation must not change.
        assert batched == [hub.translate(s, beam=beam) for s in sentences]
        # A 600-update toy model is not perfect; it must still reverse nearly every input.
        correct = sum(out == ref for out, ref in zip(batched, expected))
        assert correct >= 8, list(zip(batched, expected))


def test_language_model_samples_through_sentencepiece(sentencepiece_lm):
    lm = load_lm(sentencepiece_lm)
    assert isinstance(lm.models[0], SynthTransformerLanguageModel)
    assert isinstance(lm.bpe, SentencepieceBPE)
    greedy = lm.sample("the cats", beam=1)
    assert isinstance(greedy, str) and "\u2581" not in greedy
    words = greedy.split()
    assert words[:2] == ["the", "cats"] and words[2] in VERBS["p"] and words[-1] == ".", greedy
    torch.manual_seed(0)
    sampled = lm.sample(["my friend"] * 4, beam=1, sampling=True, sampling_topk=3)
    assert all(s.startswith("my friend") and s.endswith(".") for s in sampled), sampled


def test_beam_search_scores_equal_full_forward_scores(sentencepiece_lm):
    """Beam search decodes incrementally and reorders its cache; scoring the hypothesis with
    one full forward must give the same log-probabilities."""
    lm = load_lm(sentencepiece_lm)
    for hypothesis in lm.generate([lm.encode("the dog")], beam=3)[0]:
        tokens = hypothesis["tokens"]  # the prefix, the continuation and </s>
        reference = lm.generate([tokens], score_reference=True)[0][0]
        assert reference["tokens"].tolist() == tokens[:-1].tolist()
        torch.testing.assert_close(
            reference["positional_scores"], hypothesis["positional_scores"][:-1],
            atol=1e-4, rtol=1e-4,
        )
