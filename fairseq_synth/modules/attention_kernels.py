"""The logits -> normalise -> weighted sum core of synthetic attention, for three cases.

B batch, H heads, T queries, S keys, D head width. Values arrive as (B, H, S, D); every function
returns the attention output as (T, B, H * D), fairseq's Time x Batch x Channel layout.
Masks follow fairseq: ``attn_mask`` (T, S) is additive (0 / -inf) or bool (True = masked);
``key_padding_mask`` (B, S) is bool, True at padding.
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


def masked_softmax(logits: Tensor, key_padding_mask: Optional[Tensor]) -> Tensor:
    """Softmax over the last dim of (B, H, T, S) float logits; rows with no key give zeros."""
    if key_padding_mask is not None:
        logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
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
    probs = masked_softmax(logits, key_padding_mask)
    out = torch.matmul(dropout(probs).to(values.dtype), values)
    return to_time_major(out), probs


def shared_alignment_attention(logits, values, attn_mask, key_padding_mask) -> Optional[Tensor]:
    """Attention whose logits (H, T, S) are the same for every example (Random variants).

    Never builds a (B, H, T, S) tensor. Padding (keys right-padded, see padding.py) is handled
    by algebra rather than per-example softmaxes: with E = exp(logits - row max) and m the
    (B, S) 0/1 mask of real keys,
        out[b] = E @ (m[b] * V[b]) / (E @ m[b]),
    two matmuls against the shared E. This is exact unless every real key of a row lies far
    (~80 nats in fp32) below a padded key of that row, where E underflows; then it returns None
    and the caller takes the per-example path.
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
    smallest = torch.finfo(values.dtype).tiny ** 0.5
    has_keys = keep.sum(dim=1) > 0  # (B,)
    if bool(((denominator < smallest) & has_keys).any()):
        return None
    masked_values = values * keep[:, None, :, None].to(values.dtype)
    stacked = masked_values.permute(1, 2, 0, 3).reshape(heads, src_len, bsz * head_dim)
    numerator = torch.matmul(exp.to(values.dtype), stacked).view(heads, tgt_len, bsz, head_dim)
    out = numerator / denominator.clamp_min(smallest).unsqueeze(-1).to(values.dtype)
    return out.permute(1, 2, 0, 3).reshape(tgt_len, bsz, heads * head_dim)


def fused_attention(queries, keys, values, bias, attn_mask, key_padding_mask, dropout_p):
    """Dot product plus a synthetic bias through ``scaled_dot_product_attention``.

    queries are already scaled (and weighted by their mixture weight); bias is (H, T, S),
    (B, H, T, S) or None. No example may be fully padded (the caller checks): a row of -inf
    would give NaN.
    """
    dtype = queries.dtype
    mask = bias.to(dtype) if bias is not None else None
    if attn_mask is not None:
        extra = additive_mask(attn_mask, dtype)
        mask = extra if mask is None else mask + extra
    if key_padding_mask is not None:
        padding = torch.zeros(key_padding_mask.shape, dtype=dtype, device=queries.device)
        padding = padding.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]
        mask = padding if mask is None else mask + padding
    out = F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=mask, dropout_p=dropout_p, scale=1.0
    )
    return to_time_major(out)
