"""fairseq's own Transformer layers, encoders and decoders with synthetic self-attention.

Only ``build_self_attention`` changes: layer norms, FFNs, encoder-decoder attention (which stays
dot product, as in the paper), activation checkpointing and FSDP wrapping are fairseq's.
"""

from typing import Dict, List, Optional

import torch
from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerDecoderBase, TransformerEncoderBase
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import (
    TransformerDecoderLayerBase,
    TransformerEncoderLayerBase,
)

from ..modules import ALIGNMENT_REGISTRY, SynthesizerAttention, parse_synthesizer_spec


def add_synthesizer_args(parser, encoder: bool = True):
    """Model options; no defaults here, the architecture functions set them."""
    if encoder:
        parser.add_argument("--encoder-synthesizer", metavar="SPEC",
                            help="encoder self-attention: a part or parts joined by '+' "
                                 f"(parts: {', '.join(sorted(ALIGNMENT_REGISTRY))})")
    parser.add_argument("--decoder-synthesizer", metavar="SPEC",
                        help="decoder self-attention, spelled like --encoder-synthesizer")
    parser.add_argument("--synth-max-len", type=int, metavar="L",
                        help="maximum sequence length of Random/Dense alignments (their size)")
    parser.add_argument("--synth-random-rank", type=int, metavar="K",
                        help="rank k of the Factorized Random alignment R1 R2^T")
    parser.add_argument("--synth-dense-factors", metavar="A,B",
                        help="a,b of the Factorized Dense alignment, a*b = --synth-max-len "
                             "(default: the most balanced pair)")


def synthesizer_defaults(args):
    args.synth_max_len = getattr(args, "synth_max_len", 256)
    args.synth_random_rank = getattr(args, "synth_random_rank", 8)
    args.synth_dense_factors = getattr(args, "synth_dense_factors", None)


def check_synthesizer_args(args, specs):
    """Fail at model build, with the valid spellings, rather than deep inside a layer."""
    for spec in specs:
        parse_synthesizer_spec(spec)
    if args.synth_max_len < 1:
        raise ValueError(f"--synth-max-len must be positive, got {args.synth_max_len}")


def parse_factors(value) -> Optional[tuple]:
    if value is None or isinstance(value, (tuple, list)):
        return tuple(value) if value is not None else None
    try:
        a, b = (int(v) for v in str(value).split(","))
    except ValueError:
        raise ValueError(f"--synth-dense-factors takes two integers 'a,b', got {value!r}")
    return a, b


def build_synthesizer_attention(embed_dim, num_heads, spec, cfg) -> SynthesizerAttention:
    return SynthesizerAttention(
        embed_dim,
        num_heads,
        spec,
        max_len=cfg.synth_max_len,
        dropout=cfg.attention_dropout,
        random_rank=cfg.synth_random_rank,
        dense_factors=parse_factors(cfg.synth_dense_factors),
    )


def synthesizer_max_positions(spec: str, max_len: int, other: int) -> int:
    """Position-indexed synthesizers cap the length fairseq lets through (its max_positions)."""
    parts = parse_synthesizer_spec(spec)
    if any(ALIGNMENT_REGISTRY[p].position_indexed for p in parts):
        return min(other, max_len)
    return other


def wrap_layer(layer, cfg):
    """fairseq's activation checkpointing and FSDP wrapping, as in TransformerEncoderBase."""
    checkpoint = cfg.checkpoint_activations
    if checkpoint:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not checkpoint else 0)


class SynthTransformerEncoderLayer(TransformerEncoderLayerBase):
    def build_self_attention(self, embed_dim, cfg):
        return build_synthesizer_attention(
            embed_dim, cfg.encoder.attention_heads, cfg.encoder_synthesizer, cfg
        )


class SynthTransformerDecoderLayer(TransformerDecoderLayerBase):
    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        if add_bias_kv or add_zero_attn or cfg.cross_self_attention:
            raise ValueError(
                "synthesizer decoders do not support --cross-self-attention, add_bias_kv or "
                "add_zero_attn"
            )
        return build_synthesizer_attention(
            embed_dim, cfg.decoder.attention_heads, cfg.decoder_synthesizer, cfg
        )


class SynthTransformerEncoder(TransformerEncoderBase):
    def build_encoder_layer(self, cfg):
        return wrap_layer(SynthTransformerEncoderLayer(cfg, return_fc=self.return_fc), cfg)

    def max_positions(self):
        return synthesizer_max_positions(
            self.cfg.encoder_synthesizer, self.cfg.synth_max_len, super().max_positions()
        )

    def forward(self, src_tokens, src_lengths=None, return_all_hiddens: bool = False,
                token_embeddings=None):
        encoder_out = super().forward(src_tokens, src_lengths, return_all_hiddens,
                                      token_embeddings)
        # Which input sentence each row holds: (B,), see reorder_encoder_out.
        encoder_out["source_rows"] = [torch.arange(src_tokens.size(0), device=src_tokens.device)]
        return encoder_out

    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order):
        """fairseq's reorder, minus the copies that change nothing.

        Beam search reorders the encoder output at every step, but hypotheses only move between
        the beams of their own sentence, whose rows hold identical copies of that sentence's
        encoder output: when every row would receive a row of the sentence it already holds,
        the (T, B * beam, C) copies are skipped. This is exact, and not specific to synthesizers
        (fairseq's Transformer pays for these copies).
        """
        rows = encoder_out.get("source_rows")
        if not rows:
            return super().reorder_encoder_out(encoder_out, new_order)
        new_rows = rows[0].index_select(0, new_order)
        if new_rows.shape == rows[0].shape and torch.equal(new_rows, rows[0]):
            return encoder_out
        reordered = super().reorder_encoder_out(encoder_out, new_order)
        reordered["source_rows"] = [new_rows]
        return reordered


class SynthTransformerDecoder(TransformerDecoderBase):
    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        return wrap_layer(SynthTransformerDecoderLayer(cfg, no_encoder_attn), cfg)

    def max_positions(self):
        return synthesizer_max_positions(
            self.cfg.decoder_synthesizer, self.cfg.synth_max_len, super().max_positions()
        )
