"""SynthesizerAttention on its own, parametrised over every registered alignment and mixtures."""

import pytest
import torch
from fairseq.modules import MultiheadAttention

from fairseq_synth.modules import ALIGNMENT_REGISTRY, SynthesizerAttention
from fairseq_synth.modules import attention_kernels as kernels

MIXTURES = ["random+vanilla", "dense+vanilla", "random+dense", "factorized_random+vanilla",
            "factorized_dense+random+vanilla"]
SPECS = sorted(ALIGNMENT_REGISTRY) + MIXTURES
EMBED, HEADS, MAX_LEN = 16, 4, 12


def make(spec, **kwargs):
    torch.manual_seed(0)
    attention = SynthesizerAttention(EMBED, HEADS, spec, MAX_LEN, **kwargs)
    if attention.mixture_logits is not None:  # move away from the uniform init
        torch.nn.init.normal_(attention.mixture_logits)
    return attention.eval()


def future_mask(length):
    return torch.triu(torch.full((length, length), float("-inf")), 1)


def left_padded(lengths, max_len=None):
    """(B, T) mask with padding on the left, as fairseq pads sources."""
    max_len = max_len or max(lengths)
    return torch.stack([torch.arange(max_len) < max_len - n for n in lengths])


@pytest.mark.parametrize("spec", SPECS)
def test_shapes_and_weights(spec):
    attention = make(spec)
    x = torch.randn(7, 3, EMBED)
    out, weights = attention(x, x, x, need_weights=True)
    assert out.shape == (7, 3, EMBED)
    assert weights.shape == (3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 7))
    _, head_weights = attention(x, x, x, need_head_weights=True)
    assert head_weights.shape == (HEADS, 3, 7, 7)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("causal", [False, True])
def test_fast_paths_match_general_path(spec, causal):
    """need_weights=True takes the per-example path; False takes shared/fused kernels."""
    attention = make(spec)
    x = torch.randn(9, 4, EMBED)
    padding = left_padded([9, 5, 7, 2]) if not causal else ~left_padded([9, 5, 7, 2])
    mask = future_mask(9) if causal else None
    fast, _ = attention(x, x, x, key_padding_mask=padding, attn_mask=mask, need_weights=False)
    general, _ = attention(x, x, x, key_padding_mask=padding, attn_mask=mask, need_weights=True)
    real = ~padding.t()
    torch.testing.assert_close(fast[real], general[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_padding_invariance(spec):
    """A sentence gives the same output alone and left-padded in a batch with a longer one."""
    attention = make(spec)
    alone = torch.randn(5, 1, EMBED)
    longer = torch.randn(9, 1, EMBED)
    batch = torch.cat([torch.cat([torch.zeros(4, 1, EMBED), alone]), longer], dim=1)
    padding = left_padded([5, 9])
    expected, _ = attention(alone, alone, alone, need_weights=False)
    got, _ = attention(batch, batch, batch, key_padding_mask=padding, need_weights=False)
    torch.testing.assert_close(got[4:, 0], expected[:, 0], atol=1e-5, rtol=1e-5)


def sentence_mask(kind, length):
    """A (T, T) attn_mask of one sentence: additive with finite values and key 3 blocked, bool
    with random blocked pairs (never the diagonal), or fairseq's future mask."""
    if kind == "future":
        return future_mask(length)
    if kind == "bool":
        return (torch.rand(length, length) > 0.6).fill_diagonal_(False)
    mask = torch.randn(length, length)
    mask[:, 3] = float("-inf")
    return mask


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("kind", ["additive", "bool", "future"])
@pytest.mark.parametrize("path", ["weights", "fast", "factored"])
def test_attn_mask_moves_with_left_padding(spec, kind, path, monkeypatch):
    """attn_mask addresses the input's time steps: a sentence left-padded by two in a batch,
    its mask moved with it, gives its output alone (position-indexed parts compact each row
    before attending, padding.py, so the mask must follow the tokens). ``path``: the
    per-example path (need_weights), the fast kernels, or the factored kernel's too."""
    if path == "factored":
        monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    need_weights = path == "weights"
    attention = make(spec)
    alone, longer = torch.randn(7, 1, EMBED), torch.randn(9, 1, EMBED)
    batch = torch.cat([torch.cat([torch.zeros(2, 1, EMBED), alone]), longer], dim=1)
    mask = sentence_mask(kind, 7)
    batch_mask = sentence_mask(kind, 9) if kind == "future" else torch.zeros(9, 9, dtype=mask.dtype)
    batch_mask[2:, 2:] = mask
    expected, _ = attention(alone, alone, alone, attn_mask=mask, need_weights=need_weights)
    got, _ = attention(batch, batch, batch, key_padding_mask=left_padded([7, 9]),
                       attn_mask=batch_mask, need_weights=need_weights)
    torch.testing.assert_close(got[2:, 0], expected[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_causality(spec):
    attention = make(spec)
    x = torch.randn(8, 2, EMBED)
    changed = x.clone()
    changed[5:] = torch.randn(3, 2, EMBED)
    out, _ = attention(x, x, x, attn_mask=future_mask(8), need_weights=False)
    out_changed, _ = attention(changed, changed, changed, attn_mask=future_mask(8),
                               need_weights=False)
    torch.testing.assert_close(out[:5], out_changed[:5], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out[5:], out_changed[5:])


@pytest.mark.parametrize("spec", SPECS)
def test_incremental_equals_full(spec):
    """Step-by-step decoding (attn_mask None, one query per step) equals the causal forward,
    also across a beam reordering."""
    attention = make(spec)
    length, bsz = 8, 3
    x = torch.randn(length, bsz, EMBED)
    full, _ = attention(x, x, x, attn_mask=future_mask(length), need_weights=False)
    state = {}
    order = torch.tensor([2, 0, 1])
    steps = []
    for t in range(length):
        if t == 4:  # beam search reorders hypotheses between steps
            attention.reorder_incremental_state(state, order)
            x, full = x[:, order], full[:, order]
            steps = [s[:, order] for s in steps]
        query = x[t:t + 1]
        step, _ = attention(query, query, query, incremental_state=state, need_weights=False)
        steps.append(step)
    torch.testing.assert_close(torch.cat(steps), full, atol=1e-5, rtol=1e-5)
    cached = attention._get_input_buffer(state)
    assert cached["prev_value"].shape == (bsz, HEADS, length, EMBED // HEADS)
    assert ("prev_key" in cached) == ("vanilla" in spec.split("+"))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("factored", [False, True])
def test_every_tensor_follows_the_input_device(spec, factored, monkeypatch):
    """Device-agnostic code (no GPU here): while the default device is ``meta``, a tensor made
    without naming the input's device lands on ``meta``, and mixing it with the CPU inputs
    raises. Full, padded, causal and step-by-step (with a beam reorder) forwards and backward;
    ``factored`` sends short inputs of low-rank parts through the factored kernel too."""
    if factored:
        monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    attention = make(spec).train()
    x = torch.randn(6, 3, EMBED, requires_grad=True)
    padding, causal, beam_order = left_padded([6, 4, 2]), future_mask(6), torch.tensor([2, 0, 1])
    with torch.device("meta"):
        outputs = [attention(x, x, x, need_weights=need, **masks)[0]
                   for need in (False, True)
                   for masks in ({}, {"key_padding_mask": padding}, {"attn_mask": causal})]
        state = {}
        for t in range(4):
            if t == 2:
                attention.reorder_incremental_state(state, beam_order)
            step = x[t:t + 1]
            outputs.append(attention(step, step, step, incremental_state=state,
                                     need_weights=False)[0])
        torch.stack([out.sum() for out in outputs]).sum().backward()
    assert all(out.device.type == "cpu" for out in outputs)
    assert x.grad.device.type == "cpu"


def test_empty_buffer_is_a_dict():
    attention = make("random")
    assert attention._get_input_buffer(None) == {}
    assert attention._get_input_buffer({}) == {}


@pytest.mark.parametrize("spec", SPECS)
def test_gradients_reach_every_trainable_parameter(spec):
    attention = make(spec).train()
    x = torch.randn(6, 2, EMBED)
    out, _ = attention(x, x, x, key_padding_mask=left_padded([6, 4]), need_weights=False)
    out.pow(2).sum().backward()
    for name, parameter in attention.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_fixed_random_is_a_buffer_without_gradient():
    attention = make("fixed_random+vanilla").train()
    fixed = attention.alignments["fixed_random"]
    assert "weight" in dict(fixed.named_buffers())
    assert not any(p is fixed.weight for p in attention.parameters())
    assert "alignments.fixed_random.weight" in attention.state_dict()
    before = fixed.weight.clone()
    optimizer = torch.optim.SGD(attention.parameters(), lr=1.0)
    x = torch.randn(6, 2, EMBED)
    attention(x, x, x, need_weights=False)[0].sum().backward()
    optimizer.step()
    assert fixed.weight.grad is None
    torch.testing.assert_close(fixed.weight, before)


@pytest.mark.parametrize("incremental", [False, True])
def test_vanilla_reproduces_fairseq_multihead_attention(incremental):
    torch.manual_seed(1)
    reference = MultiheadAttention(EMBED, HEADS, self_attention=True).eval()
    attention = make("vanilla")
    vanilla = attention.alignments["vanilla"]
    for name in ("q_proj", "k_proj"):
        getattr(vanilla, name).load_state_dict(getattr(reference, name).state_dict())
    for name in ("v_proj", "out_proj"):
        getattr(attention, name).load_state_dict(getattr(reference, name).state_dict())
    x = torch.randn(7, 3, EMBED)
    if incremental:
        states = [{}, {}]
        outs = [[], []]
        for t in range(7):
            step = x[t:t + 1]
            for module, state, out in zip((reference, attention), states, outs):
                out.append(module(step, step, step, incremental_state=state)[0])
        expected, got = torch.cat(outs[0]), torch.cat(outs[1])
    else:
        padding = left_padded([7, 3, 5])
        expected, _ = reference(x, x, x, key_padding_mask=padding, need_weights=False)
        got, _ = attention(x, x, x, key_padding_mask=padding, need_weights=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", [s for s in SPECS if s != "vanilla"])
def test_too_long_input_names_the_option(spec):
    attention = make(spec)
    x = torch.randn(MAX_LEN + 1, 2, EMBED)
    with pytest.raises(ValueError, match="--synth-max-len"):
        attention(x, x, x)


def test_vanilla_has_no_length_limit():
    attention = make("vanilla")
    x = torch.randn(MAX_LEN * 3, 2, EMBED)
    assert attention(x, x, x)[0].shape == x.shape


def test_unknown_spec_lists_valid_parts():
    with pytest.raises(ValueError, match="valid parts are .*dense.*random"):
        SynthesizerAttention(EMBED, HEADS, "random+vanila", MAX_LEN)
    with pytest.raises(ValueError, match="twice"):
        SynthesizerAttention(EMBED, HEADS, "random+random", MAX_LEN)


def test_factorized_dense_factors_must_be_positive_and_multiply_to_max_len():
    for factors in [(2, 5), (-3, -4), (0, 12)]:
        with pytest.raises(ValueError, match="positive integers multiplying to --synth-max-len "
                                             "12; choose a,b with a\\*b = 12"):
            SynthesizerAttention(EMBED, HEADS, "factorized_dense", MAX_LEN, dense_factors=factors)
    assert SynthesizerAttention(EMBED, HEADS, "factorized_dense", MAX_LEN,
                                dense_factors=(2, 6)).alignments["factorized_dense"].factors == (2, 6)


@pytest.mark.parametrize("spec", SPECS)
def test_large_logits_do_not_overflow(spec):
    attention = make(spec)
    with torch.no_grad():
        for parameter in attention.alignments.parameters():
            parameter.mul_(1e4)
        for buffer in attention.alignments.buffers():
            if buffer.is_floating_point():  # Fixed Random's matrix, not Factorized Dense's sizes
                buffer.mul_(1e4)
    x = torch.randn(9, 3, EMBED)
    padding = left_padded([9, 4, 6])
    fast, _ = attention(x, x, x, key_padding_mask=padding, need_weights=False)
    general, _ = attention(x, x, x, key_padding_mask=padding, need_weights=True)
    assert torch.isfinite(fast).all() and torch.isfinite(general).all()
    real = ~padding.t()
    torch.testing.assert_close(fast[real], general[real], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_padded_rows_give_zeros(spec, need_weights):
    attention = make(spec).train()
    x = torch.randn(5, 2, EMBED, requires_grad=True)
    padding = torch.tensor([[False] * 5, [True] * 5])
    out, _ = attention(x, x, x, key_padding_mask=padding, need_weights=need_weights)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], attention.out_proj.bias.expand(5, EMBED))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_backward(spec, dtype):
    attention = make(spec).train().to(dtype)
    x = torch.randn(6, 2, EMBED, dtype=dtype, requires_grad=True)
    padding = left_padded([6, 3])
    out, _ = attention(x, x, x, key_padding_mask=padding, need_weights=False)
    assert out.dtype == dtype and torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    reference = make(spec).train()
    x32 = x.detach().float()
    expected, _ = reference(x32, x32, x32, key_padding_mask=padding, need_weights=False)
    real = ~padding.t()
    torch.testing.assert_close(out.float()[real], expected[real], atol=0.05, rtol=0.05)


def test_paper_letters_and_preset_names_are_accepted():
    from fairseq_synth.modules import parse_synthesizer_spec

    assert parse_synthesizer_spec("R+V") == ["random", "vanilla"]
    assert parse_synthesizer_spec("random_vanilla") == ["random", "vanilla"]
    assert parse_synthesizer_spec("FR") == ["factorized_random"]
    assert parse_synthesizer_spec("dense_vanilla+fixed_random") == ["dense", "vanilla",
                                                                     "fixed_random"]
    attention = SynthesizerAttention(EMBED, HEADS, "D+V", MAX_LEN)
    assert sorted(attention.alignments) == ["dense", "vanilla"]
