"""The logits -> normalise -> weighted sum core of synthetic attention: the five kernels that
kernel_choice.choose_kernel picks among (docs/design.md).

B batch, H heads, T queries, S keys, D head width. Values arrive as (B, H, S, D); every function
returns the attention output as (T, B, H * D), fairseq's Time x Batch x Channel layout.
Masks follow fairseq: ``attn_mask`` (T, S) is additive (0 / -inf) or bool (True = masked);
``key_padding_mask`` (B, S) is bool, True at padding. Compacted rows (padding.py) carry one
``attn_mask`` per example, (B, 1, T, S), which every kernel but the shared ones takes.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

def additive_mask(attn_mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    if attn_mask is None or attn_mask.dtype != torch.bool:
        return attn_mask if attn_mask is None else attn_mask.to(dtype)
    return torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill(
        attn_mask, float("-inf")
    )


def to_time_major(out: Tensor) -> Tensor:
    """(B, H, T, D) -> (T, B, H * D)."""
    bsz, heads, tgt_len, head_dim = out.shape
    return out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, heads * head_dim)


def per_example_mask(attn_mask: Optional[Tensor]) -> bool:
    """True for an attn_mask of one (T, S) mask per example, (B, 1, T, S)."""
    return attn_mask is not None and attn_mask.dim() == 4


def has_empty_rows(attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor]) -> bool:
    """True when some query row (of some example) has every key masked.

    Checked on the masks, (T, S) or (B, 1, T, S), and (B, S), never on (B, H, T, S) logits:
    the number of keys row t of example b sees is (keys row t allows) @ (real keys of b).
    """
    if attn_mask is None and key_padding_mask is None:
        return False
    allowed = None
    if attn_mask is not None:
        allowed = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask != float("-inf")
    if key_padding_mask is None:
        return bool((~allowed.any(dim=-1)).any())
    real = (~key_padding_mask).to(torch.float32)  # (B, S)
    if allowed is None:
        return bool((real.sum(dim=1) == 0).any())
    # (T, S) or (B, 1, T, S) @ (B, 1, S, 1) -> (B, 1, T, 1)
    visible = torch.matmul(allowed.to(torch.float32), real[:, None, :, None])
    return bool((visible == 0).any())


def masked_softmax(logits: Tensor, key_padding_mask: Optional[Tensor],
                   empty_rows: bool = True) -> Tensor:
    """Softmax over the last dim of (B, H, T, S) float logits; rows with no key give zeros.

    With ``empty_rows=False`` (the caller checked with ``has_empty_rows``) this is torch's fused
    softmax; otherwise a max-shifted softmax whose fully masked rows give zeros and finite
    gradients instead of NaN.
    """
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    if not empty_rows:
        return torch.softmax(logits, dim=-1)
    row_max = logits.amax(dim=-1, keepdim=True).detach()
    row_max = row_max.masked_fill(torch.isinf(row_max), 0.0)
    exp = torch.exp(logits - row_max)
    return exp / exp.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(exp.dtype).tiny)


def materialized_attention(logits, values, attn_mask, key_padding_mask, dropout):
    """The general path: per-example logits (B, H, T, S), as in MultiheadAttention.

    Returns (output (T, B, C), probabilities (B, H, T, S)).
    """
    logits = logits.float()
    if attn_mask is not None:
        logits = logits + additive_mask(attn_mask, logits.dtype)
    probs = masked_softmax(logits, key_padding_mask, has_empty_rows(attn_mask, key_padding_mask))
    out = torch.matmul(dropout(probs).to(values.dtype), values)
    return to_time_major(out), probs


def shared_alignment_attention(logits, values, attn_mask, key_padding_mask) -> Optional[Tensor]:
    """Attention whose logits (H, T, S) are the same for every example (Random variants).

    Never builds a (B, H, T, S) tensor. Padding (keys right-padded, see padding.py) is handled
    by algebra rather than per-example softmaxes: with E = exp(logits - row max) and m the
    (B, S) 0/1 mask of real keys,
        out[b] = E @ (m[b] * V[b]) / (E @ m[b]),
    two matmuls against the shared E. E's real-key sums (the denominators) can be far below 1
    when a padded key dominates a row; the products are taken in the values' dtype when its
    range holds them, else in fp32 (fp16's smallest normal number, 6e-5, is e^-9.7 away; bf16
    has fp32's range). Only when every real key of a row lies ~44 nats below a padded key of
    that row does this return None, and the caller takes the per-example path.
    """
    bsz, heads, src_len, head_dim = values.shape
    tgt_len = logits.size(1)
    logits = logits.float()
    if attn_mask is not None:
        logits = logits + additive_mask(attn_mask, logits.dtype)
    # (B, H, S, D) -> (H, S, B * D): one (H, T, S) @ (H, S, B * D) product serves the batch.
    if key_padding_mask is None:
        probs = torch.softmax(logits, dim=-1).to(values.dtype)
        stacked = values.permute(1, 2, 0, 3).reshape(heads, src_len, bsz * head_dim)
        out = torch.matmul(probs, stacked).view(heads, tgt_len, bsz, head_dim)
        return out.permute(1, 2, 0, 3).reshape(tgt_len, bsz, heads * head_dim)

    keep = (~key_padding_mask).to(logits.dtype)  # (B, S)
    row_max = logits.amax(dim=-1, keepdim=True).detach()
    row_max = row_max.masked_fill(torch.isinf(row_max), 0.0)
    exp = torch.exp(logits - row_max)  # (H, T, S)
    denominator = torch.matmul(exp, keep.t())  # (H, T, B)
    dtype = product_dtype(denominator, keep.sum(dim=1) > 0, values.dtype)
    if dtype is None:
        return None
    masked_values = (values * keep[:, None, :, None].to(values.dtype)).to(dtype)
    stacked = masked_values.permute(1, 2, 0, 3).reshape(heads, src_len, bsz * head_dim)
    numerator = torch.matmul(exp.to(dtype), stacked).view(heads, tgt_len, bsz, head_dim)
    smallest = torch.finfo(dtype).tiny ** 0.5
    out = numerator / denominator.clamp_min(smallest).unsqueeze(-1).to(dtype)
    return out.permute(1, 2, 0, 3).reshape(tgt_len, bsz, heads * head_dim).to(values.dtype)


def product_dtype(denominator: Tensor, has_keys: Tensor, dtype: torch.dtype
                  ) -> Optional[torch.dtype]:
    """The dtype for the shared kernel's products: ``dtype`` (the values') if every real-key
    sum of E, denominator (H, T, B), is at least the square root of its smallest normal
    number (so E's entries that matter and their products with values stay normal), else fp32
    if that holds there, else None. Examples without keys (has_keys (B,) False) give zeros
    whatever their sums."""
    for candidate in (dtype, torch.float32):
        if not bool(((denominator < torch.finfo(candidate).tiny ** 0.5) & has_keys).any()):
            return candidate
    return None


def shared_rows_attention(logits: Tensor, values: Tensor, attn_mask: Optional[Tensor]) -> Tensor:
    """Incremental decoding without padding: shared logits (H, T, S) for the newest T queries.

    One softmax of (H, T, S) serves the batch; it meets the cached values (B, H, S, D) in one
    broadcast matmul, without the per-example (B, H, T, S) logits of the general path.
    """
    logits = logits.float()
    if attn_mask is not None:
        logits = logits + additive_mask(attn_mask, logits.dtype)
    probs = torch.softmax(logits, dim=-1).to(values.dtype)
    return to_time_major(torch.matmul(probs, values))  # (H, T, S) @ (B, H, S, D) -> (B, H, T, D)


# Below this many keys, materialized (B, H, T, S) logits beat SDPA's fused CPU kernel for the
# concatenated-feature attention of factored_attention. docs/factored/ab.md (whole training
# step, 2-core CPU, 2048 tokens per batch): 0.96-0.99x at S = 128, within noise at 256 (Dense
# 1.00-1.01x, D+V 0.97-1.07x), 1.11-1.24x at 512, 1.41-1.52x at 1024; the encoder forward
# gains from 256 on. From 256 on it also stores no (B, H, T, S) logits for backward.
FACTORED_MIN_KEYS = 256


def is_future_mask(attn_mask: Optional[Tensor]) -> bool:
    """True when attn_mask (T, T) is fairseq's causal mask: exactly the entries above the
    diagonal masked. SDPA's is_causal then replaces it and skips the masked blocks."""
    if attn_mask is None or attn_mask.dim() != 2 or attn_mask.size(0) != attn_mask.size(1):
        return False
    masked = attn_mask if attn_mask.dtype == torch.bool else attn_mask == float("-inf")
    if attn_mask.dtype != torch.bool and not bool(((attn_mask == 0) | masked).all()):
        return False
    future = torch.ones(masked.shape, dtype=torch.bool, device=masked.device).triu(1)
    return torch.equal(masked, future)


def sdpa_mask(bias, attn_mask, key_padding_mask, dtype, device) -> Optional[Tensor]:
    """One additive mask for SDPA: bias (H, T, S) or (B, H, T, S), attn_mask (T, S) and
    key padding (B, S), any of them None. Returns None or a 4-D mask that broadcasts to
    (B, H, T, S)."""
    mask = None
    if bias is not None:
        mask = bias.to(dtype)
        if not torch.is_grad_enabled():
            mask = mask.detach()  # a trainable bias keeps SDPA off its flash kernel
        if mask.dim() == 3:
            mask = mask.unsqueeze(0)  # (1, H, T, S): SDPA's flash kernel wants a 4-D mask
    if attn_mask is not None:
        extra = additive_mask(attn_mask, dtype)
        mask = extra if mask is None else mask + extra
    if key_padding_mask is not None:
        padding = torch.zeros(key_padding_mask.shape, dtype=dtype, device=device)
        padding = padding.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]
        mask = padding if mask is None else mask + padding
    return mask


def fused_attention(queries, keys, values, bias, attn_mask, key_padding_mask, dropout_p):
    """Dot product plus a synthetic bias through ``scaled_dot_product_attention``.

    queries are already scaled (and weighted by their mixture weight); bias is (H, T, S),
    (B, H, T, S) or None. No row may have every key masked (the caller checks): it would give
    NaN. torch's fused (flash) CPU kernel takes a 4-D additive mask that needs no gradient; a
    trainable bias in training falls back to torch's math kernel, which still fuses the masking
    and softmax.
    """
    mask = sdpa_mask(bias, attn_mask, key_padding_mask, queries.dtype, queries.device)
    out = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=mask, dropout_p=dropout_p, scale=1.0
    )
    return to_time_major(out)


def widen(x: Tensor, width: int) -> Tensor:
    """Zero-pad the last dim of x to ``width``."""
    return x if x.size(-1) == width else F.pad(x, (0, width - x.size(-1)))


def factored_attention(factors, values, attn_mask, key_padding_mask, dropout_p):
    """Attention whose logits are a sum of low-rank products, sum_i Q_i K_i^T, as ONE fused
    ``scaled_dot_product_attention`` of concatenated features [Q_1 .. Q_n] . [K_1 .. K_n]^T.

    factors: one (query features (B or 1, H, T, r_i), key features (B or 1, H, S, r_i)) pair
    per part, mixture weights already applied to the query side; values (B, H, S, D).
    Every parameter stays on the inputs of SDPA, so training keeps the fused kernel (an additive
    trainable bias would send it to the math kernel) and never stores (B, H, T, S) logits.
    SDPA's fused kernel wants one width for queries, keys and values: the narrower side is
    zero-padded (zero features add nothing to a dot product; zero value columns are dropped).
    No row may have every key masked (the caller checks).
    """
    bsz, heads, _, head_dim = values.shape
    queries = torch.cat([q.expand(bsz, heads, -1, -1) for q, _ in factors], dim=-1)
    keys = torch.cat([k.expand(bsz, heads, -1, -1) for _, k in factors], dim=-1)
    width = max(queries.size(-1), head_dim)
    queries, keys, values = (widen(x, width) for x in (queries, keys, values))
    causal = key_padding_mask is None and is_future_mask(attn_mask)
    mask = None if causal else sdpa_mask(None, attn_mask, key_padding_mask, values.dtype,
                                         values.device)
    out = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=1.0
    )
    return to_time_major(out[..., :head_dim])
