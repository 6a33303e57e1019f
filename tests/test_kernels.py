"""The fast paths of attention_kernels / SynthesizerAttention agree with the general path."""

import copy
import itertools

import pytest
import torch

from fairseq_synth.modules import ALIGNMENT_REGISTRY, SynthesizerAttention
from fairseq_synth.modules import attention_kernels as kernels
from fairseq_synth.modules.synthesizer_attention import shared_rows
from test_synthesizer_attention import future_mask, left_padded

MIXTURES = ["random+vanilla", "dense+vanilla", "random+dense", "factorized_random+vanilla",
            "factorized_dense+random+vanilla"]
SPECS = sorted(ALIGNMENT_REGISTRY) + MIXTURES
EMBED, HEADS, MAX_LEN = 16, 4, 12


def make(spec):
    torch.manual_seed(0)
    attention = SynthesizerAttention(EMBED, HEADS, spec, MAX_LEN)
    if attention.mixture_logits is not None:
        torch.nn.init.normal_(attention.mixture_logits)
    return attention.eval()


def count_calls(monkeypatch, name):
    """Count the calls of kernels.<name> (still carried out) for the rest of the test."""
    calls = []
    original = getattr(kernels, name)
    monkeypatch.setattr(kernels, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def decode(attention, x, chunks, padded):
    """Feed x (T, B, C) in chunks of new steps; ``padded`` passes an all-False padding mask,
    which sends every step through the general (position-gathering) path."""
    state, outs, start = {}, [], 0
    for size in chunks:
        query = x[start:start + size]
        mask = torch.zeros(x.size(1), size, dtype=torch.bool) if padded else None
        out, _ = attention(query, query, query, key_padding_mask=mask, incremental_state=state,
                           need_weights=False)
        outs.append(out)
        start += size
    return torch.cat(outs)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 2, 1]])
def test_unpadded_steps_match_general_steps_and_full(spec, chunks):
    attention = make(spec)
    x = torch.randn(7, 3, EMBED)
    fast = decode(attention, x, chunks, padded=False)
    general = decode(attention, x, chunks, padded=True)
    full, _ = attention(x, x, x, attn_mask=future_mask(7), need_weights=False)
    torch.testing.assert_close(fast, general, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", ["random", "fixed_random", "factorized_random"])
def test_shared_rows_are_rows_of_the_shared_logits(spec):
    alignment = make(spec).alignments[spec]
    full = alignment.shared_logits(MAX_LEN, 9)
    torch.testing.assert_close(shared_rows(alignment, 4, 3, 9), full[:, 4:7])


def brute_force_empty_rows(attn_mask, key_padding_mask, bsz, tgt_len, src_len):
    masked = torch.zeros(bsz, tgt_len, src_len, dtype=torch.bool)
    if attn_mask is not None:
        blocked = attn_mask if attn_mask.dtype == torch.bool else torch.isinf(attn_mask)
        masked |= blocked if blocked.dim() == 2 else blocked[:, 0]  # (B, 1, T, S) per example
    if key_padding_mask is not None:
        masked |= key_padding_mask[:, None, :]
    return bool(masked.all(dim=-1).any())


def test_has_empty_rows_matches_brute_force():
    torch.manual_seed(0)
    causal = future_mask(5)
    blocked_row = torch.zeros(5, 5).index_fill_(0, torch.tensor([2]), float("-inf"))
    right_padded = torch.tensor([[False] * 5, [False, False, True, True, True]])
    left_padded = right_padded.flip(1)
    fully_padded = torch.tensor([[False] * 5, [True] * 5])
    per_example = torch.stack([causal, blocked_row]).unsqueeze(1)  # (B, 1, T, S)
    masks = [None, causal, causal.isinf(), blocked_row, per_example, per_example.isinf()]
    paddings = [None, right_padded, left_padded, fully_padded]
    for attn_mask, padding in itertools.product(masks, paddings):
        expected = brute_force_empty_rows(attn_mask, padding, 2, 5, 5)
        assert kernels.has_empty_rows(attn_mask, padding) == expected, (attn_mask, padding)


def test_native_softmax_equals_the_careful_one_without_empty_rows():
    logits = torch.randn(2, 3, 4, 5) * 30
    padding = torch.tensor([[False, False, True, True, True], [False] * 5])
    torch.testing.assert_close(kernels.masked_softmax(logits, padding, empty_rows=False),
                               kernels.masked_softmax(logits, padding, empty_rows=True))


@pytest.mark.parametrize("spec", ["random+vanilla", "dense+vanilla", "vanilla"])
def test_fused_path_without_grad_matches_general_path(spec):
    """Under no_grad the bias is detached, so SDPA can take its flash kernel."""
    attention = make(spec)
    x = torch.randn(9, 3, EMBED)
    padding = torch.stack([torch.arange(9) < 9 - n for n in (9, 4, 6)])
    with torch.no_grad():
        fast, _ = attention(x, x, x, key_padding_mask=padding, need_weights=False)
        general, _ = attention(x, x, x, key_padding_mask=padding, need_weights=True)
    real = ~padding.t()
    torch.testing.assert_close(fast[real], general[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("spec", ["dense", "factorized_dense"])
def test_dense_rows_equal_per_head_reference(spec):
    """The batched two-layer network equals W2_h relu(W1 x + b1)_h + b2_h head by head."""
    rows = make(spec).alignments[spec].rows
    x = torch.randn(6, 2, EMBED)
    hidden = torch.relu(rows.hidden(x)).view(6, 2, HEADS, EMBED // HEADS)  # (T, B, H, D)
    expected = torch.stack([
        hidden[:, :, h] @ rows.out_weight[h] + rows.out_bias[h] for h in range(HEADS)
    ], dim=0).permute(2, 0, 1, 3)  # (H, T, B, out) -> (B, H, T, out)
    torch.testing.assert_close(rows(x), expected)


@pytest.mark.parametrize("spec, kernel", [
    ("random", "shared_rows_attention"), ("factorized_random", "shared_rows_attention"),
    ("random+vanilla", "fused_attention"), ("dense+vanilla", "fused_attention"),
])
def test_decoding_steps_take_the_fast_kernels(spec, kernel, monkeypatch):
    calls = count_calls(monkeypatch, kernel)
    attention = make(spec)
    x = torch.randn(4, 2, EMBED)
    decode(attention, x, [1, 1, 1, 1], padded=False)
    assert len(calls) >= 3  # every step after the first


@pytest.mark.parametrize("spec, kernel", [
    ("random", "shared_alignment_attention"), ("fixed_random", "shared_alignment_attention"),
    ("factorized_random", "shared_alignment_attention"), ("random+vanilla", "fused_attention"),
    ("dense+vanilla", "fused_attention"),
])
def test_full_forward_takes_the_fast_kernels(spec, kernel, monkeypatch):
    calls = count_calls(monkeypatch, kernel)
    attention = make(spec).train()
    x = torch.randn(6, 2, EMBED)
    padding = torch.tensor([[False] * 6, [True, True] + [False] * 4])
    attention(x, x, x, key_padding_mask=padding, need_weights=False)[0].sum().backward()
    assert calls


LOW_RANK = ["dense", "dense+vanilla", "factorized_random+vanilla",
            "dense+factorized_random+vanilla"]


def outputs_and_gradients(attention, x, padding, mask, need_weights):
    attention.zero_grad()
    out, _ = attention(x, x, x, key_padding_mask=padding, attn_mask=mask,
                       need_weights=need_weights)
    real = ~padding.t()
    out[real].pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in attention.named_parameters()}
    return out[real].detach(), grads


def assert_factored_equals_general(attention, x, padding, mask, calls):
    """The fast forward (which must call the factored kernel) gives the outputs at real
    positions and the gradient of every parameter of the per-example (need_weights) path."""
    factored, factored_grads = outputs_and_gradients(attention, x, padding, mask, False)
    assert len(calls) == 1
    general, general_grads = outputs_and_gradients(attention, x, padding, mask, True)
    torch.testing.assert_close(factored, general, atol=1e-5, rtol=1e-5)
    for name, grad in general_grads.items():
        torch.testing.assert_close(factored_grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("spec", LOW_RANK)
@pytest.mark.parametrize("causal", [False, True])
def test_factored_path_matches_general_path_with_gradients(spec, causal, monkeypatch):
    """Low-rank parts as one SDPA of concatenated features: same outputs and same gradient for
    every parameter as per-example logits, with left padding (compacted) and causal masks."""
    monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    calls = count_calls(monkeypatch, "factored_attention")
    attention = make(spec).train()
    x = torch.randn(9, 3, EMBED)
    padding = torch.stack([torch.arange(9) < 9 - n for n in (9, 4, 6)])
    if causal:
        padding = padding.flip(1)  # a decoder's padding is on the right
    mask = future_mask(9) if causal else None
    assert_factored_equals_general(attention, x, padding, mask, calls)


@pytest.mark.parametrize("spec", LOW_RANK)
def test_factored_full_forward_equals_incremental_steps(spec, monkeypatch):
    monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    calls = count_calls(monkeypatch, "factored_attention")
    attention = make(spec)
    x = torch.randn(7, 3, EMBED)
    full, _ = attention(x, x, x, attn_mask=future_mask(7), need_weights=False)
    assert len(calls) == 1
    torch.testing.assert_close(decode(attention, x, [1] * 7, padded=False), full,
                               atol=1e-5, rtol=1e-5)


def test_long_dense_input_takes_the_factored_path_by_default(monkeypatch):
    """At FACTORED_MIN_KEYS keys and more (no test override), Dense trains through SDPA."""
    length = kernels.FACTORED_MIN_KEYS + 16
    calls = count_calls(monkeypatch, "factored_attention")
    torch.manual_seed(0)
    attention = SynthesizerAttention(EMBED, HEADS, "dense", length).train()
    x = torch.randn(length, 2, EMBED)
    padding = torch.zeros(2, length, dtype=torch.bool)
    padding[1, -100:] = True
    assert_factored_equals_general(attention, x, padding, None, calls)


@pytest.mark.parametrize("spec", ["random", "random+vanilla", "factorized_random",
                                  "factorized_dense+vanilla"])
def test_parts_without_a_low_rank_form_keep_their_kernels(spec, monkeypatch):
    """Random (full rank), Factorized Dense (a product of two rows is not a dot product of
    fixed-width features) and input-independent parts alone never take the factored path."""
    monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    calls = count_calls(monkeypatch, "factored_attention")
    attention = make(spec)
    x = torch.randn(6, 2, EMBED)
    attention(x, x, x, need_weights=False)
    assert not calls


def test_is_future_mask_recognises_only_the_causal_mask():
    causal = future_mask(5)
    assert kernels.is_future_mask(causal)
    assert kernels.is_future_mask(causal.isinf())
    assert not kernels.is_future_mask(None)
    assert not kernels.is_future_mask(torch.triu(torch.full((5, 5), float("-inf")), 2))
    assert not kernels.is_future_mask(causal + 1.0)  # a bias besides the mask
    assert not kernels.is_future_mask(causal[:4])  # not square
    blocked = causal.clone()
    blocked[3, 0] = float("-inf")
    assert not kernels.is_future_mask(blocked)


def test_fp16_padded_batch_with_large_random_logits_stays_on_the_shared_kernel(monkeypatch):
    """Random logits of scale 3 in fp16 with padding: a row's real keys can sum to less than
    fp16 can hold relative to a padded key's exp; the shared kernel keeps the batch (its
    products then in fp32) with the per-example path's accuracy against fp32."""
    torch.manual_seed(0)
    reference = SynthesizerAttention(EMBED, HEADS, "random", 24).eval()
    with torch.no_grad():
        reference.alignments["random"].weight.mul_(3.0)
    half = copy.deepcopy(reference).half()
    padding = left_padded([20, 3, 7, 12, 5, 16, 9, 4, 18, 6])
    x = torch.randn(20, 10, EMBED)
    x16 = x.half()
    shared = count_calls(monkeypatch, "shared_alignment_attention")
    per_example = count_calls(monkeypatch, "materialized_attention")
    with torch.no_grad():
        fast, _ = half(x16, x16, x16, key_padding_mask=padding, need_weights=False)
        assert len(shared) == 1 and not per_example
        general, _ = half(x16, x16, x16, key_padding_mask=padding, need_weights=True)
        expected, _ = reference(x, x, x, key_padding_mask=padding, need_weights=True)
    real = ~padding.t()
    fast_error = (fast.float() - expected)[real].abs().max()
    general_error = (general.float() - expected)[real].abs().max()
    assert fast_error <= 1.5 * general_error
