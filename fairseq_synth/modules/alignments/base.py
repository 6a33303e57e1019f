from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...checkpoint_compat import check_alignment_shapes


@dataclass
class AlignmentConfig:
    """What every alignment may need to know, shared by all parts of one attention layer."""

    embed_dim: int
    num_heads: int
    max_len: int  # L: the longest sequence a position-indexed alignment can address
    random_rank: int = 8  # k of Factorized Random (the paper uses 8)
    dense_factors: Optional[Tuple[int, int]] = None  # (a, b) of Factorized Dense, a * b = L

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


class Alignment(nn.Module):
    """Base class: produces attention logits per head. See the package docstring."""

    name: str = ""
    # Input-independent alignments implement shared_logits and are never batched per example.
    input_dependent: bool = True
    # Position-indexed alignments can only address max_len positions.
    position_indexed: bool = True
    # Low-rank alignments implement logit_factors: their logits are a product of per-query and
    # per-key features, so a mixture of them is one dot product of concatenated features.
    low_rank: bool = False

    def __init__(self, cfg: AlignmentConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.max_len = cfg.max_len

    def project_keys(self, key: Tensor) -> Optional[Tensor]:
        """Per-key state to cache during incremental decoding; only dot product needs any."""
        return None

    def shared_logits(self, tgt_len: int, src_len: int) -> Tensor:
        raise NotImplementedError(f"{self.name} depends on the input: use forward")

    def logit_factors(self, query: Tensor, keys: Optional[Tensor], src_len: int
                      ) -> Tuple[Tensor, Tensor]:
        """(query features (B or 1, H, T, r), key features (B or 1, H, S, r)) whose product
        ``query_features @ key_features^T`` is ``forward``'s logits at identity positions."""
        raise NotImplementedError(f"{self.name} has no low-rank form")

    def forward(
        self,
        query: Tensor,
        keys: Optional[Tensor],
        src_len: int,
        query_positions: Optional[Tensor] = None,
        key_positions: Optional[Tensor] = None,
    ) -> Tensor:
        raise NotImplementedError

    def check_checkpoint(self, state_dict, prefix: str):
        """Raise a clear error if this alignment's entries in ``state_dict`` do not fit it."""
        # Another --synth-max-len: an error naming the option instead of torch's size mismatch
        # (checkpoint_compat.py). Children are checked here too.
        check_alignment_shapes(self, state_dict, prefix)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.check_checkpoint(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def select_key_positions(rows: Tensor, src_len: int, key_positions: Optional[Tensor]) -> Tensor:
    """Pick the columns of per-query alignment rows that belong to the keys.

    rows: (B, H, T, L) one synthesized row of length L per query token.
    key_positions: (B, S) position of each key within its sentence, or None for 0..S-1.
    Returns (B, H, T, S).
    """
    if key_positions is None:
        return rows[..., :src_len]
    bsz, heads, tgt_len, _ = rows.shape
    index = key_positions[:, None, None, :].expand(bsz, heads, tgt_len, src_len)
    return torch.gather(rows, 3, index)


def gather_positions(matrix: Tensor, query_positions: Tensor, key_positions: Tensor) -> Tensor:
    """Entries of a per-head (H, L, L) alignment at given positions.

    query_positions: (B, T), key_positions: (B, S). Returns (B, H, T, S) with
    out[b, h, t, s] = matrix[h, query_positions[b, t], key_positions[b, s]].
    """
    max_len = matrix.size(-1)
    flat_index = query_positions[:, :, None] * max_len + key_positions[:, None, :]  # (B, T, S)
    picked = matrix.flatten(1)[:, flat_index]  # (H, B, T, S)
    return picked.transpose(0, 1)
