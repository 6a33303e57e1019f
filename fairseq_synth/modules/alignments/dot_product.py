"""Vanilla dot-product attention as one alignment (the "V" of the paper's R+V, D+V mixtures).

Projections are named q_proj / k_proj like fairseq's MultiheadAttention so weights carry over.
"""

from torch import nn

from . import register_alignment
from .base import Alignment, AlignmentConfig


@register_alignment("vanilla")
class DotProductAlignment(Alignment):
    position_indexed = False
    low_rank = True

    def __init__(self, cfg: AlignmentConfig):
        super().__init__(cfg)
        self.head_dim = cfg.head_dim
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.k_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        # fairseq's initialisation for self-attention projections.
        nn.init.xavier_uniform_(self.q_proj.weight, gain=2 ** -0.5)
        nn.init.xavier_uniform_(self.k_proj.weight, gain=2 ** -0.5)

    def split_heads(self, x):
        """(T, B, C) -> (B, H, T, D)."""
        tgt_len, bsz, _ = x.shape
        return x.view(tgt_len, bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    def project_queries(self, query):
        """Scaled queries (B, H, T, D)."""
        return self.split_heads(self.q_proj(query) * self.scaling)

    def project_keys(self, key):
        """Keys (B, H, S, D), cached during incremental decoding."""
        return self.split_heads(self.k_proj(key))

    def logit_factors(self, query, keys, src_len):
        return self.project_queries(query), keys

    def forward(self, query, keys, src_len, query_positions=None, key_positions=None):
        return self.project_queries(query) @ keys.transpose(-1, -2)  # (B, H, T, S)
