"""Which kernel attends: one ordered decision, the table of docs/design.md.

Like the backend selection of torch's scaled_dot_product_attention (sdp_utils_cpp.cpp): the
first kernel whose conditions all hold wins. The conditions read small facts of the call (what
kinds of parts the synthesizer mixes, need_weights, the dropout probability, the masks, the
query positions and the key count), never the logits; the kernels are in attention_kernels.py.
"""

import enum
from dataclasses import dataclass
from functools import cached_property
from typing import Optional, Sequence

from torch import Tensor

from . import attention_kernels as kernels
from .alignments import Alignment


class Kernel(enum.Enum):
    FACTORED = "factored"  # one SDPA of concatenated low-rank features, no (B, H, T, S) logits
    SHARED = "shared"  # one (H, T, S) softmax for the batch, key padding by algebra
    SHARED_ROWS = "shared_rows"  # decoding: the newest rows of the (H, T, S) alignment
    BIASED_SDPA = "biased_sdpa"  # SDPA of the dot product, synthetic logits its additive bias
    MATERIALIZED = "materialized"  # per-example (B, H, T, S) logits; returns the weights


@dataclass
class AttentionCall:
    """The facts of one attention call that the choice reads.

    parts: the synthesizer's alignments; first: position of the first query (> 0 only while
    decoding, which has no padding); src_len: S; masks as in attention_kernels.
    """

    parts: Sequence[Alignment]
    need_weights: bool
    dropout_p: float
    first: int
    src_len: int
    attn_mask: Optional[Tensor]
    key_padding_mask: Optional[Tensor]

    @property
    def low_rank(self) -> bool:
        """Every part is a product of per-query and per-key features (Dense, FR, dot product)."""
        return all(part.low_rank for part in self.parts)

    @property
    def input_dependent(self) -> bool:
        """Some part depends on the input: not only Random variants."""
        return any(part.input_dependent for part in self.parts)

    @property
    def dot_product(self) -> bool:
        return any(part.name == "vanilla" for part in self.parts)

    @cached_property
    def empty_rows(self) -> bool:
        """Some query row has every key masked (SDPA gives NaN there); computed once, and only
        if a rule asks."""
        return kernels.has_empty_rows(self.attn_mask, self.key_padding_mask)


def choose_kernel(call: AttentionCall) -> Kernel:
    """The first kernel whose conditions all hold."""
    if call.need_weights:
        return Kernel.MATERIALIZED  # the only kernel with attention weights
    if (call.low_rank and call.input_dependent and call.first == 0
            and call.src_len >= kernels.FACTORED_MIN_KEYS and not call.empty_rows):
        return Kernel.FACTORED
    # One alignment serves the batch: no per-example dropout or mask can apply to it.
    shared = (not call.input_dependent and call.dropout_p == 0
              and not kernels.per_example_mask(call.attn_mask))
    if shared and call.first == 0:
        return Kernel.SHARED  # hands back to MATERIALIZED if its sums underflow fp32
    if shared and not call.empty_rows:
        return Kernel.SHARED_ROWS
    if call.dot_product and not call.empty_rows:
        return Kernel.BIASED_SDPA
    return Kernel.MATERIALIZED
