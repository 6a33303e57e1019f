"""``synth_transformer_lm``: fairseq's decoder-only Transformer LM with Synthesizer self-attention.

    fairseq-train DATA --task language_modeling --user-dir fairseq_synth \
        --arch transformer_lm_synth_random_gbw --tokens-per-sample 256 ...
    fairseq-train DATA --task language_modeling --user-dir fairseq_synth \
        --arch transformer_lm_synth_random_tiny --decoder-synthesizer factorized_dense+vanilla ...

Presets, one per entry of ``architectures.VARIANTS`` (the paper's variants and mixtures):

- ``transformer_lm_synth_<variant>_gbw``: fairseq's ``transformer_lm_gbw`` sizes (12 layers,
  width 512, FFN 4096, 16 heads), the paper's LM1B setting;
- ``transformer_lm_synth_<variant>_tiny``: fairseq's ``transformer_lm_gpt2_tiny`` (2 layers,
  width 64, FFN 64) with 4 heads and ``--synth-max-len 64``, for tests and quick runs;
- ``synth_transformer_lm``: the config dataclass's defaults (like fairseq's ``transformer_lm``)
  with a Random synthesizer.

Position-indexed synthesizers (all but ``vanilla``) address at most ``--synth-max-len``
positions; the model then reports ``min(--tokens-per-sample, --synth-max-len)`` as its
``max_positions``, so keep ``--tokens-per-sample`` within ``--synth-max-len``.
"""

import logging
from argparse import Namespace
from dataclasses import dataclass, field, fields
from typing import Optional

from fairseq import options
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig
from fairseq.models.transformer_lm import (
    DEFAULT_MAX_TARGET_POSITIONS,
    TransformerLanguageModel,
    TransformerLanguageModelConfig,
    transformer_lm_baevski_gbw,
    transformer_lm_gpt2_tiny,
)
from fairseq.modules import AdaptiveInput, CharacterTokenEmbedder
from fairseq.utils import safe_getattr

from .architectures import VARIANTS
from .synth_layers import (
    SynthTransformerDecoder,
    add_synthesizer_args,
    check_synthesizer_args,
    synthesizer_defaults,
    synthesizer_max_positions,
)

logger = logging.getLogger(__name__)

# The synthesizer defaults of the translation model, for the dataclass below.
_DEFAULTS = Namespace()
synthesizer_defaults(_DEFAULTS)


@dataclass
class SynthTransformerLanguageModelConfig(TransformerLanguageModelConfig):
    # None, so that named presets can set it (fairseq's presets keep values that are not None).
    decoder_synthesizer: Optional[str] = field(
        default=None,
        metadata={"help": "self-attention: a part or parts joined by '+', e.g. random+vanilla "
                          "(default: the preset's, else random)"},
    )
    synth_max_len: int = field(
        default=_DEFAULTS.synth_max_len,
        metadata={"help": "maximum sequence length of Random/Dense alignments (their size)"},
    )
    synth_random_rank: int = field(
        default=_DEFAULTS.synth_random_rank,
        metadata={"help": "rank k of the Factorized Random alignment R1 R2^T"},
    )
    synth_dense_factors: Optional[str] = field(
        default=_DEFAULTS.synth_dense_factors,
        metadata={"help": "a,b of the Factorized Dense alignment, a*b = --synth-max-len"},
    )


_LM_FIELDS = {f.name for f in fields(TransformerLanguageModelConfig)}
SYNTH_FIELDS = [f.name for f in fields(SynthTransformerLanguageModelConfig)
                if f.name not in _LM_FIELDS]


def synth_lm_defaults(args):
    """Synthesizer options of a config that no preset filled (``--arch synth_transformer_lm``)."""
    if getattr(args, "decoder_synthesizer", None) is None:  # also on a dataclass instance
        args.decoder_synthesizer = "random"
    synthesizer_defaults(args)


def decoder_config(args) -> TransformerConfig:
    """The TransformerConfig of ``args``, synthesizer options included.

    ``TransformerConfig.from_namespace`` keeps unknown keys of a Namespace, but not of the
    DictConfig that fairseq-train and checkpoint loading pass: copy ours explicitly.
    """
    cfg = TransformerConfig.from_namespace(args)
    for name in SYNTH_FIELDS:
        setattr(cfg, name, getattr(args, name))
    return cfg


def sample_max_positions(args, bos_tokens: int) -> int:
    """The longest sample the model takes: its target positions, and for a position-indexed
    synthesizer --synth-max-len less the BOS token (--add-bos-token) that the task prepends
    after fairseq's length filter."""
    return synthesizer_max_positions(
        args.decoder_synthesizer, args.synth_max_len - bos_tokens, args.max_target_positions
    )


def warn_if_blocks_too_long(args, bos_tokens: int):
    """fairseq skips samples longer than max_positions; with --sample-break-mode none, all."""
    if sample_max_positions(args, bos_tokens) < args.max_target_positions:
        bos = " plus --add-bos-token's BOS" if bos_tokens else ""
        logger.warning(
            f"{args.max_target_positions} target positions (--tokens-per-sample or "
            f"--max-target-positions){bos} exceed --synth-max-len {args.synth_max_len} of the "
            f"{args.decoder_synthesizer!r} synthesizer: fairseq will skip longer samples; lower "
            f"--tokens-per-sample or raise --synth-max-len"
        )


@register_model("synth_transformer_lm", dataclass=SynthTransformerLanguageModelConfig)
class SynthTransformerLanguageModel(TransformerLanguageModel):
    """fairseq's Transformer language model whose self-attentions are synthesized."""

    bos_tokens = 0  # 1 when the task prepends BOS to every sample (--add-bos-token)

    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        # The translation model's spelling of our options first; the dataclass adds the rest
        # (fairseq skips options that already exist).
        add_synthesizer_args(parser, encoder=False)
        super().add_args(parser)

    @classmethod
    def build_model(cls, args, task):
        """TransformerLanguageModel.build_model, whose decoder class is fixed, with ours."""
        synth_lm_defaults(args)
        check_synthesizer_args(args, [args.decoder_synthesizer])
        if args.decoder_layers_to_keep:
            args.decoder_layers = len(args.decoder_layers_to_keep.split(","))
        if safe_getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = safe_getattr(
                args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS
            )
        # language_modeling's --add-bos-token: one position of every sample goes to BOS.
        bos_tokens = int(bool(safe_getattr(getattr(task, "args", None), "add_bos_token", False)))
        warn_if_blocks_too_long(args, bos_tokens)
        if args.tie_adaptive_weights:
            assert args.adaptive_input
            assert args.adaptive_input_factor == args.adaptive_softmax_factor
            assert args.adaptive_softmax_cutoff == args.adaptive_input_cutoff
            assert args.decoder_input_dim == args.decoder_output_dim
        decoder = SynthTransformerDecoder(
            decoder_config(args),
            task.target_dictionary,
            cls.build_input_embedding(args, task.source_dictionary),
            no_encoder_attn=True,
        )
        model = cls(decoder)
        model.bos_tokens = bos_tokens
        return model

    def max_positions(self):
        """What fairseq filters samples by: the decoder's limit, less --add-bos-token's BOS."""
        return min(self.decoder.max_positions(),
                   sample_max_positions(self.decoder.cfg, self.bos_tokens))

    @classmethod
    def build_input_embedding(cls, args, dictionary):
        """Character, adaptive or plain token embeddings, as TransformerLanguageModel builds."""
        if args.character_embeddings:
            return CharacterTokenEmbedder(
                dictionary,
                eval(args.character_filters),
                args.character_embedding_dim,
                args.decoder_embed_dim,
                args.char_embedder_highway_layers,
            )
        if args.adaptive_input:
            return AdaptiveInput(
                len(dictionary),
                dictionary.pad(),
                args.decoder_input_dim,
                args.adaptive_input_factor,
                args.decoder_embed_dim,
                options.eval_str_list(args.adaptive_input_cutoff, type=int),
                args.quant_noise_pq,
                args.quant_noise_pq_block_size,
            )
        return cls.build_embedding(args, dictionary, args.decoder_input_dim)


def transformer_lm_tiny(args):
    """fairseq's ``transformer_lm_gpt2_tiny`` with 4 heads (not 1) and L = 64."""
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", 4)
    args.synth_max_len = safe_getattr(args, "synth_max_len", 64)
    transformer_lm_gpt2_tiny(args)


# Preset suffix -> the size preset it chains to.
LM_PRESETS = {"gbw": transformer_lm_baevski_gbw, "tiny": transformer_lm_tiny}


def synth_lm_preset(spec, size_preset):
    def architecture(args):
        args.decoder_synthesizer = safe_getattr(args, "decoder_synthesizer", spec)
        size_preset(args)
        synthesizer_defaults(args)

    return architecture


def lm_preset_names():
    """Every (architecture name, spec, size preset) this module registers."""
    for variant, spec in VARIANTS.items():
        for suffix, preset in LM_PRESETS.items():
            yield f"transformer_lm_synth_{variant}_{suffix}", spec, preset


for _name, _spec, _preset in lm_preset_names():
    register_model_architecture("synth_transformer_lm", _name)(synth_lm_preset(_spec, _preset))
