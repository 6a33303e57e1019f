"""Every Synthesizer formula against an independent reference written from the paper's equations.

Tay et al., "Synthesizer: Rethinking Self-Attention in Transformer Models", ICML 2021:
section 3.1 (Dense), 3.2 (Random, Fixed Random), 3.3 (Factorized Dense, Factorized Random),
3.4 (mixtures). The references below are plain torch on explicit (B, H, T, S) logits with a plain
softmax and each token's position within its own sentence. They call no plugin code: they only
read the module's parameters (the Random matrix, Dense's W1/b1/W2/b2, the factors, the q/k/v/out
projections and the mixture logits). Every parameter, biases included, is redrawn away from its
initialisation and the mixture logits are moved off zero, so a wrong weighting or a dropped bias
shows.

Each synthesizer is compared, output and attention weights, in a full forward, with left padding
(fairseq's default for sources), with fairseq's causal future mask or an arbitrary additive
attn_mask, with padding and a mask together, and step by step in incremental decoding (one step
or several at a time, with and without padding). ``need_weights`` False / True / per head
sends the module through its different kernels (shared Random kernel, SDPA with a bias, the
materialized logits, shared rows while decoding); a long input (>= FACTORED_MIN_KEYS keys)
reaches the factored SDPA kernel.
"""

import itertools

import pytest
import torch
from fairseq import utils as fairseq_utils

from fairseq_synth.models.architectures import VARIANTS
from fairseq_synth.modules import ALIGNMENT_REGISTRY, SynthesizerAttention
from fairseq_synth.modules import attention_kernels as kernels

# Every registered part, every preset's synthesizer, and mixtures beyond the presets: a 3-part
# mixture, and low-rank mixtures that reach the factored kernel.
SPECS = list(dict.fromkeys(
    sorted(ALIGNMENT_REGISTRY) + list(VARIANTS.values())
    + ["factorized_random+vanilla", "factorized_dense+vanilla", "random+dense+vanilla",
       "dense+factorized_random+vanilla"]
))
MIXTURE_LOGITS = [0.7, -0.4, 0.2]  # a, moved off the uniform init; softmax(a) != sigmoid(a)

# Short inputs: L > T so that slicing [:T, :S] matters; Factorized Dense with a != b.
EMBED, HEADS, MAX_LEN, FACTORS = 16, 4, 24, (4, 6)
LENGTHS = [7, 4, 6]  # sentence lengths of the padded batch (T = 7)
# Long inputs for the factored kernel (taken from 256 keys): small width, two heads.
LONG_T = max(260, kernels.FACTORED_MIN_KEYS + 4)
LONG_FACTORS = (16, -(-(LONG_T + 8) // 16))
LONG_EMBED, LONG_HEADS, LONG_MAX_LEN = 8, 2, LONG_FACTORS[0] * LONG_FACTORS[1]
LONG_LENGTHS = [LONG_T, LONG_T - 37]

TOL = dict(atol=2e-5, rtol=1e-5)  # float64 inputs; the plugin softmaxes in float32


def make(spec, embed=EMBED, heads=HEADS, max_len=MAX_LEN, factors=FACTORS):
    """The module in float64, eval mode, no dropout, every parameter and buffer redrawn."""
    torch.manual_seed(0)
    module = SynthesizerAttention(embed, heads, spec, max_len, dropout=0.0,
                                  dense_factors=factors).double().eval()
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.5)
        if module.mixture_logits is not None:
            n = module.mixture_logits.numel()
            module.mixture_logits.copy_(torch.tensor(MIXTURE_LOGITS[:n]))
    return module


def spec_parts(spec):
    return spec.split("+")


# --------------------------------------------------------------------------------------------
# References (paper equations, plain torch)
# --------------------------------------------------------------------------------------------

def split_heads(x, heads):
    """(T, B, C) -> (B, H, T, D); head h holds channels h*D .. (h+1)*D-1."""
    tgt_len, bsz, channels = x.shape
    return x.reshape(tgt_len, bsz, heads, channels // heads).permute(1, 2, 0, 3)


def at_positions(matrix, query_positions, key_positions):
    """A per-head (H, L, L) alignment at each sentence's positions.

    query_positions (B, T), key_positions (B, S) -> (B, H, T, S),
    out[b, h, t, s] = matrix[h, query_positions[b, t], key_positions[b, s]].
    """
    return torch.stack([matrix[:, q][:, :, k] for q, k in zip(query_positions, key_positions)])


def columns_at(rows, key_positions):
    """Per-query rows (B, H, T, L) -> the columns of each sentence's keys (B, H, T, S)."""
    return torch.stack([r[..., k] for r, k in zip(rows, key_positions)])


def random_reference(matrix, query_positions, key_positions):
    """Random Synthesizer (section 3.2): B = R, a (L, L) matrix per head, block [:T, :S] at
    each sentence's positions (row t of R for the token at position t). -> (B, H, T, S)"""
    return at_positions(matrix, query_positions, key_positions)


def factorized_random_reference(r1, r2, query_positions, key_positions):
    """Factorized Random (section 3.3): R = R1 R2^T, R1, R2 (H, L, k). -> (B, H, T, S)"""
    matrix = r1 @ r2.transpose(1, 2)  # (H, L, L)
    return at_positions(matrix, query_positions, key_positions)


def dense_rows_reference(w1, b1, w2, b2, x, heads):
    """Dense Synthesizer (section 3.1): F(x_i) = W2 relu(W1 x_i + b1) + b2 per head.

    x (T, B, C); W1 (C, C), b1 (C,) give every head's hidden vector at once (head h: channels
    h*D..(h+1)*D-1); W2 (H, D, N), b2 (H, 1, N) map it to N values. -> (B, H, T, N)
    """
    hidden = split_heads(torch.relu(x @ w1.t() + b1), heads)  # (B, H, T, D)
    return torch.einsum("bhtd,hdn->bhtn", hidden, w2) + b2.unsqueeze(0)  # (B, H, T, N)


def dense_reference(two_layer, x, heads, key_positions):
    """Row of token i = F(x_i) (length L); key j takes column j, its position. -> (B, H, T, S)"""
    rows = dense_rows_reference(two_layer.hidden.weight, two_layer.hidden.bias,
                                two_layer.out_weight, two_layer.out_bias, x, heads)
    return columns_at(rows, key_positions)


def factorized_dense_reference(two_layer, x, heads, factors, key_positions):
    """Factorized Dense (section 3.3): A = F_A(x_i) (a values), B = F_B(x_i) (b values), row
    C = H_A(A) * H_B(B), each tiled to length a * b = L: column p * b + q is A_p * B_q (the
    README's "outer product of a and b values per token"). -> (B, H, T, S)"""
    a, b = factors
    values = dense_rows_reference(two_layer.hidden.weight, two_layer.hidden.bias,
                                  two_layer.out_weight, two_layer.out_bias, x, heads)
    fa, fb = values[..., :a], values[..., a:]  # (B, H, T, a), (B, H, T, b)
    rows = fa.repeat_interleave(b, dim=-1) * fb.repeat(1, 1, 1, a)  # (B, H, T, a * b)
    return columns_at(rows, key_positions)


def dot_product_reference(alignment, query, key, heads):
    """Vanilla attention (the V of R+V, D+V): Q K^T / sqrt(d), d the head width.
    query (T, B, C), key (S, B, C) -> (B, H, T, S)"""
    q = split_heads(query @ alignment.q_proj.weight.t() + alignment.q_proj.bias, heads)
    k = split_heads(key @ alignment.k_proj.weight.t() + alignment.k_proj.bias, heads)
    return q @ k.transpose(-1, -2) / q.size(-1) ** 0.5


def part_reference(module, name, query, key, query_positions, key_positions):
    """Unweighted logits B_i (B, H, T, S) of one part, from the module's parameters only."""
    alignment, heads = module.alignments[name], module.num_heads
    if name in ("random", "fixed_random"):
        return random_reference(alignment.weight, query_positions, key_positions)
    if name == "factorized_random":
        return factorized_random_reference(alignment.left, alignment.right, query_positions,
                                           key_positions)
    if name == "dense":
        return dense_reference(alignment.rows, query, heads, key_positions)
    if name == "factorized_dense":
        return factorized_dense_reference(alignment.rows, query, heads, alignment.factors,
                                          key_positions)
    if name == "vanilla":
        return dot_product_reference(alignment, query, key, heads)
    raise AssertionError(f"no reference for the part {name!r}: write one from the paper")


def mixed_reference(module, parts, query, key, query_positions, key_positions):
    """Mixture (section 3.4): sum_i alpha_i B_i, alpha = softmax(a) over the parts, taken over
    logits, before the one softmax. -> (B, H, T, S)"""
    logits = [part_reference(module, name, query, key, query_positions, key_positions)
              for name in parts]
    if len(parts) == 1:
        return logits[0]
    alpha = torch.softmax(module.mixture_logits.detach().double(), dim=0)  # (n,)
    return sum(w * b for w, b in zip(alpha, logits))


def attention_reference(module, parts, query, key, query_positions, key_positions,
                        key_padding_mask=None, attn_mask=None):
    """Y = softmax(mixed B + masks) G(X), then the output projection (sections 3.1-3.4).

    query (T, B, C) at query_positions (B, T); key (S, B, C) at key_positions (B, S);
    key_padding_mask (B, S) True at padding; attn_mask (T, S) additive (fairseq's future mask).
    Masks are applied to the mixed logits. Returns output (T, B, C), probabilities (B, H, T, S).
    """
    with torch.no_grad():
        logits = mixed_reference(module, parts, query, key, query_positions, key_positions)
        if attn_mask is not None:
            logits = logits + attn_mask
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(logits, dim=-1)  # (B, H, T, S)
        values = split_heads(key @ module.v_proj.weight.t() + module.v_proj.bias,
                             module.num_heads)  # (B, H, S, D)
        out = (probs @ values).permute(2, 0, 1, 3).flatten(2)  # (T, B, C)
        return out @ module.out_proj.weight.t() + module.out_proj.bias, probs


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def left_padding(lengths):
    """(B, T) True at padding, sentences right-aligned as fairseq pads sources."""
    tgt_len = max(lengths)
    return torch.stack([torch.arange(tgt_len) < tgt_len - n for n in lengths])


def sentence_positions(lengths):
    """(B, T) each token's position within its own left-padded sentence (pads: 0, unused)."""
    tgt_len = max(lengths)
    return torch.stack([(torch.arange(tgt_len) - (tgt_len - n)).clamp_min(0) for n in lengths])


def future_mask(length, dtype):
    """fairseq's causal mask as TransformerDecoder.buffered_future_mask builds it."""
    return torch.triu(fairseq_utils.fill_with_neg_inf(torch.zeros([length, length])), 1).to(dtype)


def arbitrary_mask(length, dtype):
    """An additive (T, T) attn_mask that is not causal: finite values and some -inf entries,
    never a whole row. Indexed like the input tensor (padding included), as fairseq does."""
    generator = torch.Generator().manual_seed(3)
    mask = torch.randn(length, length, generator=generator, dtype=dtype)
    blocked = torch.rand(length, length, generator=generator) < 0.3
    blocked.fill_diagonal_(False)
    return mask.masked_fill(blocked, float("-inf"))


def inputs(lengths, embed, padded):
    """x (T, B, C) float64, padding (B, T) or None, positions (B, T)."""
    torch.manual_seed(1)
    tgt_len = max(lengths)
    x = torch.randn(tgt_len, len(lengths), embed, dtype=torch.float64)
    if not padded:
        lengths = [tgt_len] * len(lengths)
    padding = left_padding(lengths)
    return x, (padding if padding.any() else None), sentence_positions(lengths)


def run(module, x, padding, attn_mask, need, incremental_state=None):
    """Call the module as fairseq's layers do; weights as (B, H, T, S), (B, T, S) or None."""
    out, weights = module(x, x, x, key_padding_mask=padding, attn_mask=attn_mask,
                          incremental_state=incremental_state,
                          need_weights=need == "weights", need_head_weights=need == "heads")
    if need == "heads":
        weights = weights.transpose(0, 1)  # (H, B, T, S) -> (B, H, T, S)
    return out, weights


def compare(out, weights, need, ref_out, ref_probs, real):
    """Outputs (T, B, C) and weights at the real query tokens, real (T, B)."""
    torch.testing.assert_close(out[real], ref_out[real], **TOL)
    if need == "none":
        assert weights is None
        return
    ref = ref_probs if need == "heads" else ref_probs.mean(dim=1)  # (B, [H,] T, S)
    got = weights.to(ref.dtype)
    if need == "heads":  # (B, H, T, S) -> (B, T, H, S): index by (sentence, query)
        got, ref = got.transpose(1, 2), ref.transpose(1, 2)
    torch.testing.assert_close(got[real.t()], ref[real.t()], **TOL)


MODES = {  # name: (left padding, attn_mask: None, "causal" or "arbitrary")
    "full": (False, None), "left_pad": (True, None), "causal": (False, "causal"),
    "left_pad_causal": (True, "causal"), "arbitrary_mask": (False, "arbitrary"),
    "left_pad_arbitrary_mask": (True, "arbitrary"),
}
MASKS = {None: lambda length, dtype: None, "causal": future_mask, "arbitrary": arbitrary_mask}
NEEDS = ["none", "weights", "heads"]  # need_weights False / True / need_head_weights


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("need", NEEDS)
def test_full_forward_matches_paper(spec, mode, need):
    padded, mask_kind = MODES[mode]
    module = make(spec)
    x, padding, positions = inputs(LENGTHS, EMBED, padded)
    mask = MASKS[mask_kind](x.size(0), x.dtype)
    out, weights = run(module, x, padding, mask, need)
    ref_out, ref_probs = attention_reference(module, spec_parts(spec), x, x, positions,
                                             positions, padding, mask)
    real = torch.ones(x.shape[:2], dtype=torch.bool) if padding is None else ~padding.t()
    compare(out, weights, need, ref_out, ref_probs, real)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("mode", sorted(MODES))
def test_long_inputs_match_paper(spec, mode):
    """From FACTORED_MIN_KEYS keys on, low-rank synthesizers attend through the factored SDPA
    kernel; everything else through its usual fast kernel (no weights asked)."""
    padded, mask_kind = MODES[mode]
    module = make(spec, LONG_EMBED, LONG_HEADS, LONG_MAX_LEN, LONG_FACTORS)
    x, padding, positions = inputs(LONG_LENGTHS, LONG_EMBED, padded)
    mask = MASKS[mask_kind](x.size(0), x.dtype)
    out, _ = run(module, x, padding, mask, "none")
    ref_out, _ = attention_reference(module, spec_parts(spec), x, x, positions, positions,
                                     padding, mask)
    real = torch.ones(x.shape[:2], dtype=torch.bool) if padding is None else ~padding.t()
    torch.testing.assert_close(out[real], ref_out[real], **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_long_dense_input_reaches_the_factored_kernel(causal, monkeypatch):
    """The long case above is only a test of the factored kernel if that kernel runs: Dense
    alone (no dot product, so no SDPA with a bias) calls SDPA only through it."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    test_long_inputs_match_paper("dense", "causal" if causal else "full")
    assert calls, "Dense at >= FACTORED_MIN_KEYS keys no longer takes the factored SDPA kernel"


DECODE_MODES = {"steps": (False, [1] * 7), "steps_left_pad": (True, [1] * 7),
                "chunks": (False, [3, 1, 2, 1])}


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("mode", sorted(DECODE_MODES))
@pytest.mark.parametrize("need", NEEDS)
def test_incremental_decoding_matches_paper(spec, mode, need):
    """At step t the query x_t sits at position t (of its own sentence): Random uses row t
    restricted to keys 0..t, Dense F(x_t)[:t+1]. The padding mask is passed as fairseq's decoder
    passes it while decoding: for the newest tokens only, and only when one of them is a pad."""
    padded, chunks = DECODE_MODES[mode]
    module = make(spec)
    x, padding, positions = inputs(LENGTHS, EMBED, padded)
    state, start = {}, 0
    for size in chunks:
        end = start + size
        step_padding = None
        if padding is not None and padding[:, start:end].any():
            step_padding = padding[:, start:end]
        out, weights = run(module, x[start:end], step_padding, None, need, state)
        keys_padding = None if padding is None else padding[:, :end]
        # Several new tokens at once must not see each other's future.
        mask = future_mask(end, x.dtype)[start:end] if size > 1 else None
        ref_out, ref_probs = attention_reference(
            module, spec_parts(spec), x[start:end], x[:end], positions[:, start:end],
            positions[:, :end], keys_padding, mask)
        real = torch.ones(size, x.size(1), dtype=torch.bool)
        if padding is not None:
            real = ~padding[:, start:end].t()
        compare(out, weights, need, ref_out, ref_probs, real)
        start = end


@pytest.mark.parametrize("name", sorted(ALIGNMENT_REGISTRY))
def test_alignment_logits_match_paper(name):
    """Each part's own logits, where the alignment exposes them: forward at identity and at
    arbitrary positions, shared_logits of input-independent parts, logit_factors of low-rank
    parts (query features @ key features^T)."""
    module = make(name)
    alignment = module.alignments[name]
    x, _, _ = inputs([7, 7, 7], EMBED, False)
    bsz, tgt_len = x.size(1), x.size(0)
    keys = alignment.project_keys(x)
    identity = torch.arange(tgt_len).expand(bsz, tgt_len)
    expected = part_reference(module, name, x, x, identity, identity)
    with torch.no_grad():
        torch.testing.assert_close(alignment(x, keys, tgt_len), expected, **TOL)
        if alignment.position_indexed:
            generator = torch.Generator().manual_seed(2)
            query_positions = torch.randint(0, MAX_LEN, (bsz, tgt_len), generator=generator)
            key_positions = torch.randint(0, MAX_LEN, (bsz, tgt_len), generator=generator)
            torch.testing.assert_close(
                alignment(x, keys, tgt_len, query_positions, key_positions),
                part_reference(module, name, x, x, query_positions, key_positions), **TOL)
        if not alignment.input_dependent:
            torch.testing.assert_close(alignment.shared_logits(tgt_len, tgt_len), expected[0],
                                       **TOL)
        if alignment.low_rank:
            query_features, key_features = alignment.logit_factors(x, keys, tgt_len)
            product = query_features @ key_features.transpose(-1, -2)
            torch.testing.assert_close(product.expand_as(expected).to(expected.dtype), expected,
                                       **TOL)


def test_every_part_has_a_reference():
    """A newly registered part fails here until part_reference knows its formula."""
    for name in ALIGNMENT_REGISTRY:
        module = make(name)
        x, _, positions = inputs([3, 3], EMBED, False)
        logits = part_reference(module, name, x, x, positions, positions)
        assert logits.shape == (2, HEADS, 3, 3)
