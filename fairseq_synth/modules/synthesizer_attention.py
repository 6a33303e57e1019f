"""Synthesizer self-attention with fairseq's MultiheadAttention contract.

Y = softmax(sum_i w_i B_i) G(X)   (Tay et al., ICML 2021, eq. 1-5)

B_i are the alignments named in the spec (see ``alignments/``), w = softmax(mixture logits) is a
learned convex combination (initialised uniform: the reference code's sigmoid(0) = 0.5 for two
parts), G is the per-head value projection and an output projection follows, as in attention.
The mixture is taken over logits, before the single softmax, as in the reference code.

Tensors are Time x Batch x Channel like fairseq's; B batch, H heads, T queries, S keys,
C model width, D head width, L the maximum length of position-indexed alignments.
"""

from typing import Dict, List, Optional, Tuple

import torch
from fairseq.incremental_decoding_utils import with_incremental_state
from fairseq.modules.fairseq_dropout import FairseqDropout
from torch import Tensor, nn

from . import attention_kernels as kernels
from .alignments import ALIGNMENT_REGISTRY, AlignmentConfig, parse_synthesizer_spec
from .kernel_choice import AttentionCall, Kernel, choose_kernel
from .padding import (
    compaction_order,
    gather_mask,
    gather_time,
    inverse_order,
    needs_compaction,
    sentence_positions,
)


def shared_rows(alignment, first: int, tgt_len: int, src_len: int) -> Tensor:
    """Rows first..first+T-1 (keys 0..S-1) of an input-independent alignment, (H, T, S)."""
    rows = getattr(alignment, "shared_rows", None)
    if rows is not None:
        return rows(first, tgt_len, src_len)
    return alignment.shared_logits(first + tgt_len, src_len)[:, first:]


def weighted(features: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Query-side features scaled by their part's mixture weight (None for a single part),
    in the features' dtype: scaling one side scales the logits they produce."""
    return features if weight is None else features * weight.to(features.dtype)


def add_weighted(total: Optional[Tensor], logits: Optional[Tensor],
                 weight: Optional[Tensor] = None) -> Optional[Tensor]:
    """total + weight * logits; None stands for no total yet, no logits, or a weight of 1.
    The fp32 weight scales half-precision logits unrounded."""
    if logits is None:
        return total
    term = logits if weight is None else logits * weight
    return term if total is None else total + term


@with_incremental_state
class SynthesizerAttention(nn.Module):
    """Self-attention whose alignment is synthesized (and optionally mixed with dot product).

    Args:
        embed_dim: model width C.
        num_heads: heads H (C must divide by H).
        synthesizer: spec such as ``"random"``, ``"dense"`` or ``"random+vanilla"``.
        max_len: L, the longest sequence Random/Dense alignments can address.
        dropout: attention dropout on the probabilities.
        random_rank: k of Factorized Random.
        dense_factors: (a, b) of Factorized Dense, a * b = L.

    Shape:
        query: (T, B, C); key/value must be the query (self-attention) or None.
        key_padding_mask: (B, T) bool, True at padding.
        attn_mask: (T, T) additive or bool mask over the input's time steps, e.g. fairseq's
            causal future mask.
        returns (T, B, C) and attention weights (B, T, T) (or (H, B, T, T) per head) if asked.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        synthesizer: str,
        max_len: int,
        dropout: float = 0.0,
        random_rank: int = 8,
        dense_factors: Optional[Tuple[int, int]] = None,
    ):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.synthesizer = synthesizer
        self.max_len = max_len
        cfg = AlignmentConfig(embed_dim, num_heads, max_len, random_rank, dense_factors)
        parts: List[str] = parse_synthesizer_spec(synthesizer)
        self.alignments = nn.ModuleDict({p: ALIGNMENT_REGISTRY[p](cfg) for p in parts})
        # One logit per part; softmax gives the convex mixture weights.
        self.mixture_logits = nn.Parameter(torch.zeros(len(parts))) if len(parts) > 1 else None
        self.position_indexed = any(a.position_indexed for a in self.alignments.values())
        self.key_alignment = self.alignments["vanilla"] if "vanilla" in parts else None
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout_module = FairseqDropout(dropout, module_name=self.__class__.__name__)
        nn.init.xavier_uniform_(self.v_proj.weight, gain=2 ** -0.5)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def mixture_weights(self) -> Dict[str, Tensor]:
        """The learned weight of each part (1.0 for a single part)."""
        if self.mixture_logits is None:
            return {name: None for name in self.alignments}
        weights = torch.softmax(self.mixture_logits.float(), dim=0)
        return {name: weights[i] for i, name in enumerate(self.alignments)}

    def check_length(self, length: int):
        if self.position_indexed and length > self.max_len:
            raise ValueError(
                f"sequence of length {length} is longer than the {self.synthesizer!r} "
                f"synthesizer's maximum length {self.max_len}: train with a larger "
                f"--synth-max-len, or keep inputs within it. fairseq filters samples longer than "
                f"the model's max_positions (--skip-invalid-size-inputs-valid-test skips them), "
                f"but not context added after that filter: with fairseq-eval-lm --context-window "
                f"N, keep --tokens-per-sample + N <= {self.max_len}"
            )

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor],
        value: Optional[Tensor],
        key_padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        need_weights: bool = True,
        static_kv: bool = False,
        attn_mask: Optional[Tensor] = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        if (key is not None and key is not query) or static_kv or before_softmax:
            raise NotImplementedError(
                "SynthesizerAttention is self-attention only: key and value must be the query "
                "(cross_self_attention, static_kv and before_softmax are not supported)"
            )
        need_weights = need_weights or need_head_weights
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.to(torch.bool)
        if incremental_state is not None:
            out, probs = self._forward_step(
                query, key_padding_mask, incremental_state, attn_mask, need_weights
            )
        else:
            out, probs = self._forward_full(query, key_padding_mask, attn_mask, need_weights)
        out = self.out_proj(out)
        if not need_weights or probs is None:
            return out, None
        return out, probs.transpose(0, 1) if need_head_weights else probs.mean(dim=1)

    def _forward_full(self, query, key_padding_mask, attn_mask, need_weights):
        tgt_len = query.size(0)
        self.check_length(tgt_len)
        if key_padding_mask is not None and not key_padding_mask.any():
            key_padding_mask = None
        order = None
        if key_padding_mask is not None and self.position_indexed and needs_compaction(
            key_padding_mask
        ):
            order = compaction_order(key_padding_mask)
            query = gather_time(query, order)
            key_padding_mask = key_padding_mask.gather(1, order)
            # Compaction keeps the real tokens' order, so fairseq's future mask still masks
            # the same pairs of real tokens and can stay one (T, T) mask for the batch.
            if attn_mask is not None and not kernels.is_future_mask(attn_mask):
                attn_mask = gather_mask(attn_mask, order)  # (B, 1, T, T)
        out, probs = self._attend(query, key_padding_mask, attn_mask, need_weights)
        if order is not None:
            inverse = inverse_order(order)
            out = gather_time(out, inverse)
            if probs is not None:
                bsz, heads = probs.shape[:2]
                rows = inverse[:, None, :, None].expand(bsz, heads, tgt_len, tgt_len)
                probs = probs.gather(2, rows).gather(3, rows.transpose(2, 3))
        return out, probs

    def _split_heads(self, x: Tensor) -> Tensor:
        """(T, B, C) -> (B, H, T, D)."""
        tgt_len, bsz, _ = x.shape
        return x.view(tgt_len, bsz, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    def _attend(self, query, key_padding_mask, attn_mask, need_weights):
        """Full-sequence attention with identity positions: returns (T, B, C), probs or None."""
        values = self._split_heads(self.v_proj(query))  # (B, H, T, D)
        keys = None if self.key_alignment is None else self.key_alignment.project_keys(query)
        return self._attend_parts(query, keys, values, 0, attn_mask, key_padding_mask,
                                  need_weights)

    def _attend_parts(self, query, keys, values, first, attn_mask, key_padding_mask,
                      need_weights):
        """Queries at positions first..first+T-1 over keys 0..S-1: (T, B, C), probs or None,
        through the kernel choose_kernel picks (docs/design.md)."""
        src_len, dropout_p = values.size(2), self._dropout_p()
        kernel = choose_kernel(AttentionCall(list(self.alignments.values()), need_weights,
                                             dropout_p, first, src_len, attn_mask,
                                             key_padding_mask))
        weights = self.mixture_weights()
        if kernel is Kernel.FACTORED:
            factors = self._logit_factors(query, keys, src_len, weights)
            return kernels.factored_attention(factors, values, attn_mask, key_padding_mask,
                                              dropout_p), None
        shared, per_example = self._synthetic_parts(query, first, src_len, weights)
        if kernel is Kernel.SHARED:
            out = kernels.shared_alignment_attention(shared, values, attn_mask, key_padding_mask)
            if out is not None:  # None: its denominators underflow even in fp32
                return out, None
        elif kernel is Kernel.SHARED_ROWS:
            return kernels.shared_rows_attention(shared, values, attn_mask), None
        elif kernel is Kernel.BIASED_SDPA:
            queries = weighted(self.key_alignment.project_queries(query), weights["vanilla"])
            return kernels.fused_attention(queries, keys, values,
                                           add_weighted(per_example, shared), attn_mask,
                                           key_padding_mask, dropout_p), None
        logits = self._combined_logits(query, keys, shared, per_example, weights)
        return kernels.materialized_attention(
            logits, values, attn_mask, key_padding_mask, self.dropout_module
        )

    def _synthetic_parts(self, query, first: int, src_len: int, weights):
        """Weighted logits of the synthetic parts for queries at positions first..first+T-1 and
        keys at 0..S-1: (shared (H, T, S) or None, per_example (B, H, T, S) or None)."""
        tgt_len, bsz, _ = query.shape
        shared, per_example = None, None
        for name, alignment in self.alignments.items():
            if alignment is self.key_alignment:
                continue
            if alignment.input_dependent:
                positions = None  # identity
                if first > 0:
                    positions = torch.arange(first, src_len, device=query.device).expand(bsz, -1)
                logits = alignment(query, None, src_len, positions, None)
                per_example = add_weighted(per_example, logits, weights[name])
            else:
                logits = shared_rows(alignment, first, tgt_len, src_len)
                shared = add_weighted(shared, logits, weights[name])
        return shared, per_example

    def _logit_factors(self, query, keys, src_len: int, weights):
        """(query features, key features) per part, the query side weighted by its part's
        mixture weight: sum_i w_i Q_i K_i^T is one dot product of concatenated features."""
        factors = []
        for name, alignment in self.alignments.items():
            query_features, key_features = alignment.logit_factors(query, keys, src_len)
            factors.append((weighted(query_features, weights[name]), key_features))
        return factors

    def _dropout_p(self) -> float:
        """Attention dropout probability of this forward, by FairseqDropout's own rule: in
        training, and in eval when fairseq's --retain-dropout set apply_during_inference."""
        dropout = self.dropout_module
        return dropout.p if dropout.training or dropout.apply_during_inference else 0.0

    def _combined_logits(self, query, keys, shared, per_example, weights) -> Tensor:
        """sum_i w_i B_i as (B, H, T, S) from the synthetic parts and the dot product, if any."""
        total = per_example
        if self.key_alignment is not None:
            dot = self.key_alignment(query, keys, keys.size(2))
            total = add_weighted(total, dot, weights["vanilla"])
        if total is None:
            return shared.expand(query.size(1), -1, -1, -1)
        return add_weighted(total, shared)

    def _mixed_logits(self, query, keys, src_len, query_positions, key_positions) -> Tensor:
        """sum_i w_i B_i as (B, H, T, S), every part evaluated per example at given positions."""
        total = None
        for name, weight in self.mixture_weights().items():
            logits = self.alignments[name](query, keys, src_len, query_positions, key_positions)
            total = add_weighted(total, logits, weight)
        return total

    def _forward_step(self, query, key_padding_mask, incremental_state, attn_mask, need_weights):
        """Incremental decoding: query holds the newest step(s); keys/values are cached.

        A pure synthesizer caches only values; a mixture with dot product also caches keys.
        The newest token's position is the number of real tokens before it, so row t of a
        Random alignment (restricted to keys 0..t) is used at step t, as in the reference code.
        """
        tgt_len, bsz, _ = query.shape
        saved = self._get_input_buffer(incremental_state)
        values = self._split_heads(self.v_proj(query))  # (B, H, T, D)
        if "prev_value" in saved:
            values = torch.cat([saved["prev_value"], values], dim=2)
        src_len = values.size(2)
        self.check_length(src_len)
        keys = None
        if self.key_alignment is not None:
            keys = self.key_alignment.project_keys(query)
            if "prev_key" in saved:
                keys = torch.cat([saved["prev_key"], keys], dim=2)
        padding = self._step_padding(saved.get("prev_key_padding_mask"), key_padding_mask,
                                     bsz, src_len, tgt_len, query.device)
        if tgt_len > 1 and attn_mask is None:
            # Several new steps at once: they must not see each other's future.
            attn_mask = torch.ones(tgt_len, src_len, dtype=torch.bool, device=query.device)
            attn_mask = attn_mask.triu(src_len - tgt_len + 1)

        # Without padding (fairseq's SequenceGenerator never pads the target), key j sits at
        # position j and the new queries at S-T..S-1: rows of shared alignments serve the batch.
        if padding is None:
            out, probs = self._attend_parts(query, keys, values, src_len - tgt_len, attn_mask,
                                            None, need_weights)
        else:
            key_positions = sentence_positions(padding, bsz, src_len, query.device)
            query_positions = key_positions[:, src_len - tgt_len:]
            logits = self._mixed_logits(query, keys, src_len, query_positions, key_positions)
            out, probs = kernels.materialized_attention(
                logits, values, attn_mask, padding, self.dropout_module
            )

        saved["prev_value"] = values
        if keys is not None:
            saved["prev_key"] = keys
        if padding is not None:
            saved["prev_key_padding_mask"] = padding
        self._set_input_buffer(incremental_state, saved)
        return out, probs

    @staticmethod
    def _step_padding(prev_mask, new_mask, bsz, src_len, tgt_len, device):
        """The (B, S) padding mask of all cached keys, or None when nothing was ever padded."""
        if prev_mask is None and new_mask is None:
            return None
        if prev_mask is None:
            prev_mask = torch.zeros(bsz, src_len - tgt_len, dtype=torch.bool, device=device)
        if new_mask is None:
            new_mask = torch.zeros(bsz, tgt_len, dtype=torch.bool, device=device)
        return torch.cat([prev_mask, new_mask.to(torch.bool)], dim=1)

    def reorder_incremental_state(
        self, incremental_state: Dict[str, Dict[str, Optional[Tensor]]], new_order: Tensor
    ):
        """Reorder the cache for beam search; every cached tensor is batch-first."""
        saved = self._get_input_buffer(incremental_state)
        for name, cached in saved.items():
            if cached is not None:
                saved[name] = cached.index_select(0, new_order)
        self._set_input_buffer(incremental_state, saved)
        return incremental_state

    def _get_input_buffer(self, incremental_state) -> Dict[str, Optional[Tensor]]:
        result = self.get_incremental_state(incremental_state, "attn_state")
        return result if result is not None else {}

    def _set_input_buffer(self, incremental_state, buffer: Dict[str, Optional[Tensor]]):
        return self.set_incremental_state(incremental_state, "attn_state", buffer)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"synthesizer={self.synthesizer!r}, max_len={self.max_len}"
        )
