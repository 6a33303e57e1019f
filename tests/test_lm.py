"""synth_transformer_lm: every variant built through fairseq's registry, checked as a causal
incremental decoder, and a tiny preset trained and evaluated through fairseq's command line."""

import math
import random
import re
from pathlib import Path

import pytest
import torch
from fairseq import options
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.models.transformer_lm import TransformerLanguageModelConfig
from fairseq.tasks.language_modeling import LanguageModelingTask

from fairseq_synth.models.synth_layers import SynthTransformerDecoder
from fairseq_synth.models.synth_transformer_lm import (
    SynthTransformerLanguageModel,
    lm_preset_names,
)
from fairseq_synth.modules import ALIGNMENT_REGISTRY, SynthesizerAttention, parse_synthesizer_spec
from helpers import USER_DIR, build_lm_model, run_cli, toy_dictionary

SPECS = sorted(ALIGNMENT_REGISTRY) + ["random+vanilla", "dense+vanilla", "random+dense"]
MAX_LEN = 24
TOKENS_PER_SAMPLE = 100
# Small sizes that keep the structure of every preset (2 layers, 4 heads).
TINY_LM_ARGS = [
    "--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
    "--decoder-attention-heads", "4", "--synth-max-len", str(MAX_LEN), "--dropout", "0.0",
    "--tokens-per-sample", str(TOKENS_PER_SAMPLE),
]
PRESET_SPECS = {name: spec for name, spec, _ in lm_preset_names()}
PRESET_SPECS["synth_transformer_lm"] = "random"  # the dataclass defaults
LM_ARCHS = sorted(
    name for name, cls in ARCH_MODEL_REGISTRY.items() if cls is SynthTransformerLanguageModel
)


def position_indexed(spec):
    return any(ALIGNMENT_REGISTRY[part].position_indexed for part in parse_synthesizer_spec(spec))


def build(spec):
    """A tiny LM with ``spec`` self-attention, mixture weights moved off their uniform init."""
    model, dictionary = build_lm_model(
        "transformer_lm_synth_random_tiny", ["--decoder-synthesizer", spec, *TINY_LM_ARGS]
    )
    for module in model.modules():
        if isinstance(module, SynthesizerAttention) and module.mixture_logits is not None:
            torch.nn.init.normal_(module.mixture_logits)
    return model.eval(), dictionary


def random_tokens(dictionary, bsz, length, seed=0):
    """(B, T) real tokens (no special symbols)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(dictionary.nspecial, len(dictionary), (bsz, length), generator=generator)


def self_attentions(model):
    return [layer.self_attn for layer in model.decoder.layers]


@pytest.mark.parametrize("spec", SPECS)
def test_shapes_and_modules(spec):
    model, dictionary = build(spec)
    assert isinstance(model.decoder, SynthTransformerDecoder)
    assert all(a.synthesizer == spec and a.max_len == MAX_LEN for a in self_attentions(model))
    tokens = random_tokens(dictionary, 3, 7)
    logits, extra = model(tokens)
    assert logits.shape == (3, 7, len(dictionary))
    assert len(extra["inner_states"]) == 3 and extra["inner_states"][-1].shape == (7, 3, 32)


@pytest.mark.parametrize("spec", SPECS)
def test_causality(spec):
    model, dictionary = build(spec)
    tokens = random_tokens(dictionary, 2, 10)
    changed = tokens.clone()
    changed[:, 6:] = random_tokens(dictionary, 2, 4, seed=1)
    with torch.no_grad():
        logits, changed_logits = model(tokens)[0], model(changed)[0]
    torch.testing.assert_close(logits[:, :6], changed_logits[:, :6], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(logits[:, 6:], changed_logits[:, 6:])


@pytest.mark.parametrize("spec", SPECS)
def test_incremental_decoding_equals_full_forward(spec):
    """Token-by-token decoding equals the full forward, also across a beam reordering."""
    model, dictionary = build(spec)
    tokens = random_tokens(dictionary, 3, 9)
    order = torch.tensor([2, 0, 1])
    state, steps = {}, []
    with torch.no_grad():
        full = model(tokens)[0]  # (B, T, V)
        for t in range(tokens.size(1)):
            if t == 5:  # as beam search does between steps
                model.decoder.reorder_incremental_state_scripting(state, order)
                tokens, full = tokens[order], full[order]
                steps = [step[order] for step in steps]
            steps.append(model.decoder(tokens[:, : t + 1], incremental_state=state)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_right_padding_leaves_real_outputs_unchanged(spec):
    model, dictionary = build(spec)
    alone = random_tokens(dictionary, 1, 6)
    longer = random_tokens(dictionary, 1, 10, seed=1)
    padded = torch.cat([alone, torch.full((1, 4), dictionary.pad())], dim=1)
    with torch.no_grad():
        expected = model(alone)[0]
        batch = model(torch.cat([padded, longer]))[0]
    torch.testing.assert_close(batch[:1, :6], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_max_positions_and_too_long_inputs(spec):
    model, dictionary = build(spec)
    too_long = random_tokens(dictionary, 2, MAX_LEN + 1)
    if not position_indexed(spec):
        assert model.max_positions() == TOKENS_PER_SAMPLE
        assert model(too_long)[0].shape[1] == MAX_LEN + 1
        return
    assert model.max_positions() == MAX_LEN
    with pytest.raises(ValueError, match="--synth-max-len"):
        model(too_long)
    state = {}
    for t in range(MAX_LEN):
        model.decoder(too_long[:, : t + 1], incremental_state=state)
    with pytest.raises(ValueError, match="--synth-max-len"):
        model.decoder(too_long, incremental_state=state)


@pytest.mark.parametrize("spec", ["random", "vanilla"])
def test_add_bos_token_takes_one_position_from_fairseq_length_filter(spec):
    """language_modeling's --add-bos-token prepends BOS after fairseq filters samples by the
    model's max_positions, so a position-indexed synthesizer must let one token less through."""
    plain, _ = build_lm_model("transformer_lm_synth_random_tiny",
                              ["--decoder-synthesizer", spec, *TINY_LM_ARGS])
    with_bos, dictionary = build_lm_model("transformer_lm_synth_random_tiny",
                                          ["--decoder-synthesizer", spec, *TINY_LM_ARGS,
                                           "--add-bos-token"])
    if not position_indexed(spec):
        assert plain.max_positions() == with_bos.max_positions() == TOKENS_PER_SAMPLE
        return
    assert (plain.max_positions(), with_bos.max_positions()) == (MAX_LEN, MAX_LEN - 1)
    longest = random_tokens(dictionary, 2, with_bos.max_positions())
    bos = torch.full((2, 1), dictionary.bos())
    assert with_bos.eval()(torch.cat([bos, longest], dim=1))[0].shape[1] == MAX_LEN


def test_too_long_input_error_names_eval_lm_context_window():
    model, dictionary = build("random")
    with pytest.raises(ValueError, match="--context-window N, keep --tokens-per-sample \\+ N "
                                         f"<= {MAX_LEN}"):
        model(random_tokens(dictionary, 1, MAX_LEN + 1))


@pytest.mark.parametrize("arch", LM_ARCHS)
def test_every_registered_architecture_builds(arch):
    assert arch in PRESET_SPECS, f"{arch}: register LM presets through lm_preset_names()"
    model, dictionary = build_lm_model(arch, TINY_LM_ARGS)
    assert all(a.synthesizer == PRESET_SPECS[arch] for a in self_attentions(model))
    assert model(random_tokens(dictionary, 2, 5))[0].shape == (2, 5, len(dictionary))


def parse_arch(arch, extra=()):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", USER_DIR, "--task", "language_modeling",
                 "--arch", arch, *extra]
    )


def test_gbw_preset_has_fairseq_gbw_settings():
    """Every TransformerLanguageModelConfig option of ours equals fairseq's transformer_lm_gbw."""
    ours, theirs = vars(parse_arch("transformer_lm_synth_random_gbw")), vars(parse_arch(
        "transformer_lm_gbw"))
    for name in TransformerLanguageModelConfig.__dataclass_fields__:
        assert ours.get(name) == theirs.get(name), name
    assert ours["decoder_embed_dim"] == 512 and ours["decoder_layers"] == 12


def test_gbw_preset_through_fairseq_train_config():
    """fairseq-train turns args into a DictConfig; the model built from it keeps the preset."""
    cfg = convert_namespace_to_omegaconf(parse_arch("transformer_lm_synth_dense_vanilla_gbw"))
    model = LanguageModelingTask(cfg.task, toy_dictionary()).build_model(cfg.model)
    layer = model.decoder.layers[0]
    assert len(model.decoder.layers) == 12 and model.decoder.embed_dim == 512
    assert layer.fc1.out_features == 4096 and layer.self_attn.num_heads == 16
    assert layer.normalize_before and model.decoder.layer_norm is None
    assert layer.self_attn.synthesizer == "dense+vanilla" and layer.self_attn.max_len == 256
    assert model.max_positions() == 256


# A small deterministic English grammar: subject-verb agreement, objects, endings.
SUBJECTS = {"the cat": "s", "the dog": "s", "a bird": "s", "my friend": "s",
            "the cats": "p", "the dogs": "p", "two birds": "p", "my friends": "p"}
VERBS = {"s": ["sees", "likes", "follows", "finds"], "p": ["see", "like", "follow", "find"]}
OBJECTS = ["the ball", "a tree", "the house", "some water", "the river", "a small box"]
ENDINGS = ["today .", "again .", "in the garden .", "."]


def write_grammar_corpus(directory: Path, sizes=(("train", 400), ("valid", 40), ("test", 40))):
    """train/valid/test .txt files; the grammar's entropy is about 1.1 bits per token."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, size in sizes:
        lines = []
        for _ in range(size):
            subject, number = rng.choice(sorted(SUBJECTS.items()))
            words = [subject, rng.choice(VERBS[number]), rng.choice(OBJECTS), rng.choice(ENDINGS)]
            lines.append(" ".join(words) + "\n")
        (directory / f"{split}.txt").write_text("".join(lines))
    return directory


def preprocess_lm(text_dir: Path, destdir: Path) -> Path:
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", text_dir / "train.txt",
            "--validpref", text_dir / "valid.txt", "--testpref", text_dir / "test.txt",
            "--destdir", destdir, "--workers", "1")
    return destdir


def train_lm(data: Path, save_dir: Path, arch: str, max_update=300, extra=()) -> Path:
    """Train with fairseq-train on CPU; returns the last checkpoint."""
    run_cli("fairseq-train", data, "--task", "language_modeling", "--user-dir", USER_DIR,
            "--arch", arch, "--tokens-per-sample", "64", "--sample-break-mode", "eos",
            "--dropout", "0.0", "--optimizer", "adam", "--lr", "0.005",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "30", "--batch-size", "32",
            "--max-update", str(max_update), "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--save-interval", "1000", "--validate-interval", "1000", "--seed", "1",
            "--num-workers", "0", "--log-format", "simple", *extra)
    return save_dir / "checkpoint_last.pt"


def test_train_and_evaluate_through_the_cli(tmp_path):
    data = preprocess_lm(write_grammar_corpus(tmp_path / "text"), tmp_path / "bin")
    checkpoint = train_lm(data, tmp_path / "checkpoints", "transformer_lm_synth_random_tiny")
    proc = run_cli("fairseq-eval-lm", data, "--path", checkpoint, "--user-dir", USER_DIR,
                   "--tokens-per-sample", "64", "--sample-break-mode", "eos",
                   "--batch-size", "16", "--gen-subset", "test")
    perplexity = float(re.search(r"Perplexity: ([\d.]+)", proc.stdout + proc.stderr).group(1))
    vocabulary = len(Dictionary.load(str(data / "dict.txt")))
    # Uniform guessing gives the vocabulary size; the grammar allows about 2.2.
    assert math.isfinite(perplexity) and perplexity < vocabulary / 8, perplexity
