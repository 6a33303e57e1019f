"""Sentence positions under padding.

fairseq left-pads sources by default, and its positional embeddings index every token by its
position within its own sentence (``utils.make_positions``). Position-indexed alignments must do
the same, or a sentence's output would depend on how much padding its batch gave it. We
*compact* each row so that its real tokens come first (stable, so their order is kept): then the
token at index t has position t for every sentence, one alignment block [:T, :S] serves the whole
batch, and padding becomes right padding that a key mask handles. An attn_mask addresses the
input's time steps, so it moves with the tokens (one mask per row).
"""

from typing import Optional

import torch
from torch import Tensor


def needs_compaction(key_padding_mask: Tensor) -> bool:
    """True when some pad (B, S) stands before a real token, i.e. the rows are not right-padded."""
    return bool((key_padding_mask[:, :-1] & ~key_padding_mask[:, 1:]).any())


def compaction_order(key_padding_mask: Tensor) -> Tensor:
    """(B, S) indices that move each row's real tokens to the front, keeping their order."""
    return torch.argsort(key_padding_mask.to(torch.uint8), dim=1, stable=True)


def inverse_order(order: Tensor) -> Tensor:
    """The permutation undoing ``order`` (B, S)."""
    positions = torch.arange(order.size(1), device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def gather_time(x: Tensor, order: Tensor) -> Tensor:
    """Reorder a (T, B, C) tensor along time, per batch row, by order (B, T)."""
    index = order.t().unsqueeze(-1).expand_as(x)
    return x.gather(0, index)


def gather_mask(attn_mask: Tensor, order: Tensor) -> Tensor:
    """Move a (T, T) attn_mask over the input's time steps with each row's compaction by
    order (B, T): (B, 1, T, T), entry [b, 0, t, s] = attn_mask[order[b, t], order[b, s]],
    broadcasting over heads like (B, H, T, S) logits."""
    return attn_mask[order[:, :, None], order[:, None, :]].unsqueeze(1)


def sentence_positions(key_padding_mask: Optional[Tensor], bsz: int, length: int, device) -> Tensor:
    """(B, S) position of each token within its own sentence (pads get the previous position)."""
    if key_padding_mask is None:
        return torch.arange(length, device=device).expand(bsz, length)
    return ((~key_padding_mask).long().cumsum(dim=1) - 1).clamp_min(0)
