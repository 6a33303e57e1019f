"""Trained checkpoints loaded the fairseq way: ``from_pretrained`` then translate / sample.

Generation decodes incrementally (with beam reordering); its scores are checked against a full
forward of the same tokens.
"""

import math
import random
from pathlib import Path

import pytest
import sentencepiece
import torch
from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE

from fairseq_synth.models.synth_transformer import SynthTransformerModel
from fairseq_synth.models.synth_transformer_lm import SynthTransformerLanguageModel
from helpers import (
    LETTERS,
    TINY_ARGS,
    USER_DIR,
    is_argmax_path,
    run_cli,
    same_or_near_tie,
    teacher_forced,
    token_scores,
)
from test_lm import SUBJECTS, VERBS, preprocess_lm, train_lm, write_grammar_corpus

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
    """Checks that hold on any CPU (a toy model's exact outputs do not: near-ties flip):
    generation's scores are the model's own, greedy follows the model's argmax, a sentence
    batched and alone gets the same translation up to a near-tie, and the model has learned
    the task (by its likelihood of the true reversals, not by its outputs)."""
    hub = SynthTransformerModel.from_pretrained(
        str(reversal_model), checkpoint_file=CHECKPOINT, data_name_or_path=str(reversal_data)
    )
    assert isinstance(hub.models[0], SynthTransformerModel)
    model, task = hub.models[0], hub.task
    sentences = reversal_inputs()
    for beam in (1, 5):
        batched = [hyps[0] for hyps in hub.generate([hub.encode(s) for s in sentences],
                                                     beam=beam)]
        assert hub.translate(sentences, beam=beam) == [hub.decode(h["tokens"]) for h in batched]
        for sentence, in_batch in zip(sentences, batched):
            alone = hub.generate([hub.encode(sentence)], beam=beam)[0][0]
            scored = {}
            for name, hyp in (("batched", in_batch), ("alone", alone)):
                # Incremental decoding (and beam reordering) scored each token as one full
                # forward of the finished hypothesis does.
                tokens, lprobs = scored[name] = teacher_forced(model, task, sentence,
                                                               hub.decode(hyp["tokens"]))
                assert torch.equal(tokens, hyp["tokens"]), (sentence, name)
                torch.testing.assert_close(hyp["positional_scores"], token_scores(tokens, lprobs),
                                           atol=1e-4, rtol=0)
                if beam == 1:
                    assert is_argmax_path(tokens, lprobs), (sentence, name, hyp)
            # Left-padded in one batch or alone: the same translation, or a near-tie.
            if torch.equal(in_batch["tokens"], alone["tokens"]):
                assert abs(in_batch["score"] - alone["score"]) <= 1e-4, sentence
            else:
                assert same_or_near_tie(scored["batched"], scored["alone"]), (
                    sentence, hub.decode(in_batch["tokens"]), hub.decode(alone["tokens"]))
    # Learned: the true reversals cost under 1.5 bits a token (0.01-0.18 after 600 updates,
    # mean 0.05; uniform over the 16 letters is 4 bits, so an untrained model is far above).
    bits = [-token_scores(*teacher_forced(model, task, s, " ".join(s.split()[::-1]))).mean()
            / math.log(2) for s in sentences]
    assert sum(bits) / len(bits) < 1.5, bits


def lm_forward(lm, tokens):
    """Log-probabilities (natural log, a row per position) of ``tokens`` (ending in </s>) from
    one full forward of the language model, after </s> as fairseq's LM inference prepends it."""
    model = lm.models[0]
    inputs = torch.cat([tokens.new_tensor([lm.src_dict.eos()]), tokens[:-1]])[None]
    with torch.no_grad():
        return model.get_normalized_probs(model(inputs), log_probs=True)[0].float()


def test_language_model_samples_through_sentencepiece(sentencepiece_lm):
    """Sampling through the hub (sentencepiece in and out) does what its search promises, on
    any CPU: greedy emits the model's most probable next piece at every step, top-3 sampling
    only pieces among the model's 3 most probable, both after the prompt; and the model has
    learned the grammar (it prefers every agreeing verb to the disagreeing one)."""
    lm = load_lm(sentencepiece_lm)
    assert isinstance(lm.models[0], SynthTransformerLanguageModel)
    assert isinstance(lm.bpe, SentencepieceBPE)
    greedy = lm.sample("the cats", beam=1)
    assert isinstance(greedy, str) and "\u2581" not in greedy and greedy.startswith("the cats")
    prompt = len(lm.encode("the cats")) - 1  # without its </s>
    hyp = lm.generate([lm.encode("the cats")], beam=1)[0][0]
    assert lm.decode(hyp["tokens"]) == greedy
    lprobs = lm_forward(lm, hyp["tokens"])
    torch.testing.assert_close(hyp["positional_scores"][prompt:],
                               token_scores(hyp["tokens"], lprobs)[prompt:], atol=1e-4, rtol=0)
    assert is_argmax_path(hyp["tokens"][prompt:], lprobs[prompt:]), greedy
    torch.manual_seed(0)
    prompt_tokens = lm.encode("my friend")
    sampled = lm.generate([prompt_tokens] * 4, beam=1, sampling=True, sampling_topk=3)
    prompt = len(prompt_tokens) - 1
    for hyps in sampled:
        tokens = hyps[0]["tokens"]
        assert lm.decode(tokens).startswith("my friend")
        lprobs = lm_forward(lm, tokens)[prompt:]
        third = lprobs.topk(3, dim=1).values[:, -1]
        # Every sampled piece is among the 3 most probable (up to a near-tie with the 4th).
        assert (token_scores(tokens[prompt:], lprobs) >= third - 1e-4).all(), lm.decode(tokens)
    assert len({lm.decode(h[0]["tokens"]) for h in sampled}) > 1  # it does sample
    # Learned: "the cats see ..." is more probable than "the cats sees ..." for every subject
    # and verb of the grammar by over 1 nat. The margins are 5-11 nats (the grammar never has
    # them disagree); CPU rounding moves log-probabilities by about 1e-5.
    margins = {}
    for subject, number in SUBJECTS.items():
        other = "s" if number == "p" else "p"
        for good, bad in zip(VERBS[number], VERBS[other]):
            score = {verb: lm.score(f"{subject} {verb} the ball .")["positional_scores"].sum()
                     for verb in (good, bad)}
            margins[subject, good] = float(score[good] - score[bad])
    assert min(margins.values()) > 1.0, margins


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
