"""Factorized Dense Synthesizer (paper section 3.3): a row of length L = a * b from a + b values.

Token i predicts A_i (a values) and B_i (b values) per head; its row is the outer product
A_i[p] * B_i[q] laid out at column p * b + q, i.e. A tiled over blocks of b (H_A) times B tiled
across the a blocks (H_B), multiplied elementwise as in the paper.
"""

import torch

from ...checkpoint_compat import SynthesizerCheckpointError
from . import register_alignment
from .base import Alignment, AlignmentConfig, select_key_positions
from .dense import PerHeadTwoLayer


def default_dense_factors(max_len: int):
    """The most balanced (a, b) with a * b == max_len and a <= b."""
    a = max(d for d in range(1, int(max_len ** 0.5) + 1) if max_len % d == 0)
    return a, max_len // a


@register_alignment("factorized_dense")
class FactorizedDenseAlignment(Alignment):
    def __init__(self, cfg: AlignmentConfig):
        super().__init__(cfg)
        self.factors = cfg.dense_factors or default_dense_factors(cfg.max_len)
        a, b = self.factors
        if a < 1 or b < 1 or a * b != cfg.max_len:
            raise ValueError(
                f"--synth-dense-factors {a},{b} are not two positive integers multiplying to "
                f"--synth-max-len {cfg.max_len}; choose a,b with a*b = {cfg.max_len} "
                f"(e.g. {','.join(map(str, default_dense_factors(cfg.max_len)))})"
            )
        # One shared hidden layer, then a + b outputs per head (split below).
        self.rows = PerHeadTwoLayer(cfg.embed_dim, cfg.num_heads, a + b)
        # (a, b) saved with the weights: (b, a) has the same shapes but lays every row out
        # differently, so only the stored values can tell a mismatched checkpoint.
        self.register_buffer("factor_sizes", torch.tensor([a, b]))

    def check_checkpoint(self, state_dict, prefix):
        super().check_checkpoint(state_dict, prefix)
        stored = state_dict.get(prefix + "factor_sizes")
        if stored is not None and tuple(stored.tolist()) != self.factors:
            trained = ",".join(map(str, stored.tolist()))
            raise SynthesizerCheckpointError(
                f"cannot load the 'factorized_dense' synthesizer alignment "
                f"{prefix.rstrip('.')}: the checkpoint was trained with --synth-dense-factors "
                f"{trained}, this model is built with --synth-dense-factors "
                f"{','.join(map(str, self.factors))}. The tensors have the same shapes but every "
                f"row would be laid out differently; build the model with --synth-dense-factors "
                f"{trained} (drop the option or the 'synth_dense_factors' model override)."
            )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        # Checkpoints written before factor_sizes existed load as before (unchecked).
        if prefix + "factor_sizes" in missing_keys:
            missing_keys.remove(prefix + "factor_sizes")

    def forward(self, query, keys, src_len, query_positions=None, key_positions=None):
        a, b = self.factors
        factors = self.rows(query)  # (B, H, T, a + b)
        outer = factors[..., :a, None] * factors[..., None, a:]  # (B, H, T, a, b)
        rows = outer.flatten(-2)  # (B, H, T, L), column p * b + q
        return select_key_positions(rows, src_len, key_positions)

    def extra_repr(self):
        return f"heads={self.num_heads}, max_len={self.max_len}, factors={self.factors}"
