"""Random Synthesizer (paper section 3.2): a learned or fixed (L x L) matrix per head.

B = R[:T, :S]: the alignment ignores the input entirely, so it is computed once per forward as
an (H, T, S) tensor and shared by the whole batch.
"""

import torch
from torch import Tensor, nn

from . import register_alignment
from .base import Alignment, AlignmentConfig, gather_positions


@register_alignment("random")
class RandomAlignment(Alignment):
    """Trainable R, one (L, L) matrix per head, initialised N(0, 1)."""

    input_dependent = False
    trainable = True

    def __init__(self, cfg: AlignmentConfig):
        super().__init__(cfg)
        weight = torch.randn(cfg.num_heads, cfg.max_len, cfg.max_len)
        if self.trainable:
            self.weight = nn.Parameter(weight)
        else:
            # A buffer: saved in checkpoints (so resuming keeps the same matrix), never trained.
            self.register_buffer("weight", weight)

    def matrix(self) -> Tensor:
        """(H, L, L) alignment logits."""
        return self.weight

    def shared_logits(self, tgt_len: int, src_len: int) -> Tensor:
        return self.matrix()[:, :tgt_len, :src_len]

    def shared_rows(self, first: int, tgt_len: int, src_len: int) -> Tensor:
        """Rows first..first+T-1 over keys 0..S-1, (H, T, S): the newest steps of decoding."""
        return self.matrix()[:, first:first + tgt_len, :src_len]

    def forward(self, query, keys, src_len, query_positions=None, key_positions=None):
        if query_positions is None and key_positions is None:
            shared = self.shared_logits(query.size(0), src_len)
            return shared.unsqueeze(0).expand(query.size(1), -1, -1, -1)
        return gather_positions(self.matrix(), query_positions, key_positions)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, max_len={self.max_len}, trainable={self.trainable}"


@register_alignment("fixed_random")
class FixedRandomAlignment(RandomAlignment):
    """Fixed Random Synthesizer: R drawn at initialisation and never trained."""

    trainable = False

