"""Dense Synthesizer (paper section 3.1): each token predicts its own row of alignment logits.

B[i] = W2 relu(W1 x_i + b1) + b2, per head: W1 maps the model width to the head width (all heads
at once, like a query projection, C*C parameters) and W2 maps each head's hidden vector to L
logits (C*L parameters). There is no token-token interaction: row i depends on x_i alone.
Key j of a sentence takes column j, its position within that sentence.
"""

import torch
import torch.nn.functional as F
from torch import nn

from . import register_alignment
from .base import Alignment, AlignmentConfig, select_key_positions


class PerHeadTwoLayer(nn.Module):
    """x (T, B, C) -> relu(W1 x + b1) per head -> W2 per head -> (B, H, T, out_dim).

    Both layers are one batched product each: W1 for all heads at once (a (C, C) linear), then
    W2 as one (H, T*B, D) @ (H, D, out) baddbmm that also adds b2, read straight from the
    hidden layer's memory (no per-example copy of W2, no copy of the hidden layer).
    """

    def __init__(self, embed_dim: int, num_heads: int, out_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.hidden = nn.Linear(embed_dim, embed_dim)
        self.out_weight = nn.Parameter(torch.empty(num_heads, self.head_dim, out_dim))
        self.out_bias = nn.Parameter(torch.zeros(num_heads, 1, out_dim))
        nn.init.xavier_uniform_(self.hidden.weight, gain=2 ** -0.5)
        nn.init.xavier_uniform_(self.out_weight)

    def hidden_per_head(self, x):
        """relu(W1 x + b1) of x (T, B, C), split into heads: (T, B, H, D)."""
        tgt_len, bsz, _ = x.shape
        return torch.relu(self.hidden(x)).view(tgt_len, bsz, self.num_heads, self.head_dim)

    def factors(self, x, out_len):
        """forward(x)[..., :out_len] as a product: relu(W1 x + b1)_h . W2_h + b2_h is
        [hidden, 1] . [W2_h, b2_h], i.e. (features (B, H, T, D + 1), weights (1, H, out_len,
        D + 1)) with forward(x)[..., :out_len] == features @ weights^T."""
        features = F.pad(self.hidden_per_head(x).permute(1, 2, 0, 3), (0, 1), value=1.0)
        weights = torch.cat([self.out_weight[..., :out_len], self.out_bias[..., :out_len]], dim=1)
        return features, weights.transpose(1, 2).unsqueeze(0)

    def forward(self, x):
        tgt_len, bsz, _ = x.shape
        hidden = self.hidden_per_head(x).view(tgt_len * bsz, self.num_heads, self.head_dim)
        hidden = hidden.transpose(0, 1)  # (H, T*B, D)
        out = torch.baddbmm(self.out_bias.to(hidden.dtype), hidden, self.out_weight)  # (H, T*B, out)
        return out.view(self.num_heads, tgt_len, bsz, -1).permute(2, 0, 1, 3)  # (B, H, T, out)


@register_alignment("dense")
class DenseAlignment(Alignment):
    low_rank = True

    def __init__(self, cfg: AlignmentConfig):
        super().__init__(cfg)
        self.rows = PerHeadTwoLayer(cfg.embed_dim, cfg.num_heads, cfg.max_len)

    def logit_factors(self, query, keys, src_len):
        return self.rows.factors(query, src_len)

    def forward(self, query, keys, src_len, query_positions=None, key_positions=None):
        return select_key_positions(self.rows(query), src_len, key_positions)

    def extra_repr(self):
        return f"heads={self.num_heads}, max_len={self.max_len}"
