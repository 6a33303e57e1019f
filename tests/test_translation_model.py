"""synth_transformer through fairseq's registry: every architecture, masking, decoding."""

import pytest
import torch
from fairseq import options
from fairseq.models import ARCH_MODEL_REGISTRY, ARCH_CONFIG_REGISTRY

from helpers import TINY_ARGS, USER_DIR, build_translation_model

import fairseq_synth  # noqa: F401 (registers the architectures)
from fairseq_synth.models.architectures import FAIRSEQ_PRESETS, VARIANTS, preset_names

SYNTH_ARCHS = sorted(a for a, m in ARCH_MODEL_REGISTRY.items() if m.__name__ == "SynthTransformerModel")
SPEC_ARCHS = {spec: f"synth_{variant}_base" for variant, spec in VARIANTS.items()}
PAD = 1


def test_every_variant_and_preset_is_registered():
    expected = {name for name, _, _ in preset_names()} | {"synth_transformer"}
    assert expected == set(SYNTH_ARCHS)
    for variant in ("random", "fixed_random", "dense", "factorized_random", "factorized_dense",
                    "random_vanilla", "dense_vanilla"):
        for preset in ("iwslt_de_en", "wmt_en_de", "wmt_en_de_big", "wmt_en_fr"):
            assert f"transformer_synth_{variant}_{preset}" in SYNTH_ARCHS
        assert {f"synth_{variant}_base", f"synth_{variant}_big"} <= set(SYNTH_ARCHS)


def preset_args(arch):
    parser = options.get_training_parser()
    return options.parse_args_and_arch(
        parser, ["/dev/null", "--user-dir", USER_DIR, "--task", "translation", "--arch", arch]
    )


@pytest.mark.parametrize("suffix", sorted(FAIRSEQ_PRESETS))
def test_presets_chain_to_fairseq_sizes(suffix):
    fairseq_arch = {"wmt_en_fr": "transformer"}.get(suffix, f"transformer_{suffix}")
    reference = preset_args(fairseq_arch)
    ARCH_CONFIG_REGISTRY[fairseq_arch](reference)
    for variant, spec in VARIANTS.items():
        args = preset_args(f"transformer_synth_{variant}_{suffix}")
        ARCH_CONFIG_REGISTRY[f"transformer_synth_{variant}_{suffix}"](args)
        for size in ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers",
                     "encoder_attention_heads", "decoder_embed_dim", "dropout",
                     "attention_dropout"):
            assert getattr(args, size) == getattr(reference, size), (variant, size)
        assert args.encoder_synthesizer == args.decoder_synthesizer == spec
        assert args.synth_max_len == 256


def test_command_line_overrides_preset():
    args = preset_args("synth_random_base")
    args.decoder_synthesizer = "dense+vanilla"
    ARCH_CONFIG_REGISTRY["synth_random_base"](args)
    assert (args.encoder_synthesizer, args.decoder_synthesizer) == ("random", "dense+vanilla")


@pytest.mark.parametrize("arch", SYNTH_ARCHS)
def test_every_architecture_builds_and_runs(arch):
    model, dictionary = build_translation_model(arch, TINY_ARGS)
    src = torch.randint(4, len(dictionary), (2, 6))
    out, _ = model(src, torch.tensor([6, 6]), src)
    assert out.shape == (2, 6, len(dictionary))
    assert model.max_positions() == (24, 24)


def model_for(spec):
    model, dictionary = build_translation_model(
        "synth_transformer", TINY_ARGS + ["--encoder-synthesizer", spec,
                                          "--decoder-synthesizer", spec]
    )
    return model.eval(), dictionary


SPECS = list(VARIANTS.values()) + ["vanilla"]


@pytest.mark.parametrize("spec", SPECS)
def test_source_padding_invariance(spec):
    """A source translates the same alone and left-padded in a batch (fairseq's default)."""
    model, dictionary = model_for(spec)
    torch.manual_seed(1)
    short = torch.randint(4, len(dictionary), (1, 5))
    long = torch.randint(4, len(dictionary), (1, 9))
    batch = torch.cat([torch.cat([torch.full((1, 4), PAD), short], 1), long])
    prev = torch.randint(4, len(dictionary), (1, 7))
    with torch.no_grad():
        alone = model.encoder(short, torch.tensor([5]))["encoder_out"][0]
        padded = model.encoder(batch, torch.tensor([5, 9]))["encoder_out"][0]
        torch.testing.assert_close(padded[4:, 0], alone[:, 0], atol=1e-5, rtol=1e-5)
        logits_alone, _ = model(short, torch.tensor([5]), prev)
        logits_batch, _ = model(batch, torch.tensor([5, 9]), prev.repeat(2, 1))
    torch.testing.assert_close(logits_batch[0], logits_alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spec", SPECS)
def test_decoder_causality(spec):
    model, dictionary = model_for(spec)
    src = torch.randint(4, len(dictionary), (2, 6))
    prev = torch.randint(4, len(dictionary), (2, 8))
    changed = prev.clone()
    changed[:, 5:] = torch.randint(4, len(dictionary), (2, 3))
    with torch.no_grad():
        out, _ = model(src, torch.tensor([6, 6]), prev)
        out_changed, _ = model(src, torch.tensor([6, 6]), changed)
    torch.testing.assert_close(out[:, :5], out_changed[:, :5], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_incremental_decoding_equals_full_forward(spec):
    """fairseq's decoder step by step, as SequenceGenerator runs it: two left-padded sources
    with two beams each, hypotheses reordered within their beams half way."""
    model, dictionary = model_for(spec)
    src = torch.randint(4, len(dictionary), (2, 6))
    src[1, :2] = PAD
    src, src_lengths = src.repeat_interleave(2, 0), torch.tensor([6, 6, 4, 4])
    prev = torch.randint(4, len(dictionary), (4, 9))
    with torch.no_grad():
        encoder_out = model.encoder(src, src_lengths)
        full, _ = model.decoder(prev, encoder_out)
        state = {}
        order = torch.tensor([1, 1, 3, 2])  # beam search may also duplicate a hypothesis
        steps = []
        for t in range(prev.size(1)):
            if t == 5:
                model.decoder.reorder_incremental_state_scripting(state, order)
                prev, full = prev[order], full[order]
                steps = [s[order] for s in steps]
            step, _ = model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)
            steps.append(step)
        # After the reorder, the recomputed full forward of the new prefixes must agree too.
        full_after, _ = model.decoder(prev, encoder_out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full_after[:, 5:], full[:, 5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_gradients_reach_every_trainable_parameter(spec):
    model, dictionary = model_for(spec)
    model.train()
    src = torch.randint(4, len(dictionary), (2, 6))
    src[0, :2] = PAD
    prev = torch.randint(4, len(dictionary), (2, 7))
    out, _ = model(src, torch.tensor([4, 6]), prev)
    out.logsumexp(-1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    fixed = [n for n, _ in model.named_buffers() if "fixed_random" in n]
    assert bool(fixed) == ("fixed_random" in spec)


@pytest.mark.parametrize("spec", [s for s in SPECS if s != "vanilla"])
def test_too_long_source_names_the_option(spec):
    model, dictionary = model_for(spec)
    src = torch.randint(4, len(dictionary), (1, 25))
    with pytest.raises(ValueError, match="--synth-max-len"):
        model(src, torch.tensor([25]), src[:, :3])


def test_unknown_synthesizer_fails_at_build_with_valid_names():
    with pytest.raises(ValueError, match="valid parts are"):
        build_translation_model("synth_transformer", TINY_ARGS + ["--encoder-synthesizer",
                                                                  "rnadom"])


def test_beam_search_skipping_unchanged_encoder_reorders_is_exact(monkeypatch):
    """The encoder skips reorders that keep every row's sentence; beam search must give exactly
    what fairseq's always-copying reorder gives, with sentences finishing at different steps."""
    from fairseq.models.transformer import TransformerEncoderBase
    from fairseq.sequence_generator import SequenceGenerator

    model, dictionary = model_for("random+vanilla")
    generator = SequenceGenerator([model], dictionary, beam_size=4, max_len_b=12)
    torch.manual_seed(1)
    tokens = torch.randint(4, len(dictionary), (5, 9))
    tokens[:2, :3] = PAD  # left padding: sentences of different lengths
    sample = {"net_input": {"src_tokens": tokens, "src_lengths": (tokens != PAD).sum(1)}}
    copies = {"count": 0}
    original = TransformerEncoderBase.reorder_encoder_out

    def counting(self, encoder_out, new_order):
        copies["count"] += 1
        return original(self, encoder_out, new_order)

    monkeypatch.setattr(TransformerEncoderBase, "reorder_encoder_out", counting)
    fast = generator.generate([model], sample)
    fast_copies, copies["count"] = copies["count"], 0
    monkeypatch.setattr(type(model.encoder), "reorder_encoder_out", counting)  # always copy
    reference = generator.generate([model], sample)
    assert 0 < fast_copies < copies["count"]  # some reorders were skipped, not all
    for hyps, expected in zip(fast, reference):
        assert len(hyps) == len(expected)
        for hyp, ref in zip(hyps, expected):
            assert torch.equal(hyp["tokens"], ref["tokens"])
            assert torch.equal(hyp["positional_scores"], ref["positional_scores"])


@pytest.mark.parametrize("spec", SPECS)
def test_bf16_training_step_through_fairseq_criterion(spec):
    """fairseq's --bf16 implies --tpu and --fp16 needs CUDA, so on CPU the half-precision path
    is exercised here: the whole model in bf16, fairseq's label-smoothed criterion, backward,
    an Adam step; every gradient finite and the loss close to the fp32 model's."""
    from fairseq.criterions.label_smoothed_cross_entropy import (
        LabelSmoothedCrossEntropyCriterion,
    )

    model, dictionary = model_for(spec)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    src = torch.randint(4, len(dictionary), (3, 10))
    src[0, :4] = PAD  # left padding
    tgt = torch.randint(4, len(dictionary), (3, 8))
    prev = torch.cat([torch.full((3, 1), dictionary.eos()), tgt[:, :-1]], dim=1)
    sample = {"net_input": {"src_tokens": src, "src_lengths": (src != PAD).sum(1),
                            "prev_output_tokens": prev},
              "target": tgt, "ntokens": tgt.numel()}

    class Task:
        target_dictionary = dictionary

    criterion = LabelSmoothedCrossEntropyCriterion(Task(), sentence_avg=False,
                                                   label_smoothing=0.1)
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.load_state_dict(reference)
        model.train().to(dtype)
        loss, _, _ = criterion(model, sample)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g.float()).all() for g in grads), dtype
        torch.optim.Adam(model.parameters(), lr=1e-3).step()
        assert all(torch.isfinite(p.float()).all() for p in model.parameters())
        losses[dtype] = loss.item()
        model.zero_grad()
        model.float()
    assert abs(losses[torch.bfloat16] - losses[torch.float32]) < 0.02 * losses[torch.float32]


def factorized_dense_model(factors):
    return build_translation_model("synth_factorized_dense_base", [
        *TINY_ARGS, "--synth-max-len", "12", "--synth-dense-factors", factors])[0]


def test_checkpoint_of_other_dense_factors_gets_a_clear_error():
    """(3, 4) and (4, 3) give the same tensor shapes but lay every row out differently: the
    factors are saved with the weights and a model built with others refuses them."""
    trained = factorized_dense_model("3,4").state_dict()
    with pytest.raises(ValueError, match="trained with --synth-dense-factors 3,4, this model is "
                                         "built with --synth-dense-factors 4,3"):
        factorized_dense_model("4,3").load_state_dict(trained)
    same = factorized_dense_model("3,4")
    same.load_state_dict(trained)
    for name, tensor in same.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    # A checkpoint written before the factors were saved loads as before (unchecked).
    older = {k: v for k, v in trained.items() if not k.endswith("factor_sizes")}
    assert len(older) < len(trained)
    factorized_dense_model("3,4").load_state_dict(older)


@pytest.mark.parametrize("option, value, message", [
    ("--synth-random-rank", "0", "--synth-random-rank must be a positive integer, got 0"),
    ("--synth-dense-factors", "-3,-4", "--synth-dense-factors -3,-4 are not two positive"),
])
def test_non_positive_factor_sizes_get_a_clear_error(option, value, message):
    arch = {"--synth-random-rank": "synth_factorized_random_base"}.get(
        option, "synth_factorized_dense_base")
    with pytest.raises(ValueError, match=message):
        build_translation_model(arch, [*TINY_ARGS, "--synth-max-len", "12", f"{option}={value}"])
