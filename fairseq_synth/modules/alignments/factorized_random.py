"""Factorized Random Synthesizer (paper section 3.3): R = R1 R2^T per head, R1, R2 of size (L, k).

Low rank k (the paper uses 8) cuts the 2-D matrix's L*L parameters to 2*L*k. The product is
taken over the leading rows only, so a short batch never builds the full (L, L) matrix.
"""


import torch
from torch import nn

from . import register_alignment
from .base import Alignment, AlignmentConfig


@register_alignment("factorized_random")
class FactorizedRandomAlignment(Alignment):
    input_dependent = False
    low_rank = True

    def __init__(self, cfg: AlignmentConfig):
        super().__init__(cfg)
        self.rank = cfg.random_rank
        if self.rank < 1:
            raise ValueError(f"--synth-random-rank must be a positive integer, got {self.rank}")
        # std k^-1/4 per factor gives product entries of unit variance, like Random's N(0, 1).
        std = self.rank ** -0.25
        self.left = nn.Parameter(torch.randn(cfg.num_heads, cfg.max_len, self.rank) * std)
        self.right = nn.Parameter(torch.randn(cfg.num_heads, cfg.max_len, self.rank) * std)

    def shared_logits(self, tgt_len, src_len):
        return self.shared_rows(0, tgt_len, src_len)

    def shared_rows(self, first, tgt_len, src_len):
        """Rows first..first+T-1 over keys 0..S-1: (H, T, k) @ (H, k, S) -> (H, T, S)."""
        left = self.left[:, first:first + tgt_len]
        return torch.matmul(left, self.right[:, :src_len].transpose(1, 2))

    def logit_factors(self, query, keys, src_len):
        """R1 rows of the queries (1, H, T, k) and R2 rows of the keys (1, H, S, k)."""
        return self.left[None, :, :query.size(0)], self.right[None, :, :src_len]

    def forward(self, query, keys, src_len, query_positions=None, key_positions=None):
        if query_positions is None and key_positions is None:
            shared = self.shared_logits(query.size(0), src_len)
            return shared.unsqueeze(0).expand(query.size(1), -1, -1, -1)
        left = self.left[:, query_positions]  # (H, B, T, k)
        right = self.right[:, key_positions]  # (H, B, S, k)
        return torch.einsum("hbtk,hbsk->bhts", left, right)

    def extra_repr(self):
        return f"heads={self.num_heads}, max_len={self.max_len}, rank={self.rank}"
