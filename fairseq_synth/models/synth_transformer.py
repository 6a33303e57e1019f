"""``synth_transformer``: fairseq's Transformer with Synthesizer self-attention.

    fairseq-train DATA --user-dir fairseq_synth --arch synth_random_base ...
    fairseq-train DATA --user-dir fairseq_synth --arch synth_transformer \
        --encoder-synthesizer random+vanilla --decoder-synthesizer dense ...
"""

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerModel
from fairseq.models.transformer.transformer_legacy import base_architecture

from .synth_layers import (
    SynthTransformerDecoder,
    SynthTransformerEncoder,
    add_synthesizer_args,
    check_synthesizer_args,
    synthesizer_defaults,
)


@register_model("synth_transformer")
class SynthTransformerModel(TransformerModel):
    """Encoder-decoder Transformer whose self-attentions are synthesized.

    Encoder-decoder attention stays dot product, as in the paper.
    """

    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_synthesizer_args(parser)

    @classmethod
    def build_model(cls, args, task):
        synth_transformer_base(args)
        check_synthesizer_args(args, [args.encoder_synthesizer, args.decoder_synthesizer])
        return super().build_model(args, task)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return SynthTransformerEncoder(TransformerConfig.from_namespace(args), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return SynthTransformerDecoder(
            TransformerConfig.from_namespace(args),
            tgt_dict,
            embed_tokens,
            no_encoder_attn=args.no_cross_attention,
        )


@register_model_architecture("synth_transformer", "synth_transformer")
def synth_transformer_base(args):
    args.encoder_synthesizer = getattr(args, "encoder_synthesizer", "random")
    args.decoder_synthesizer = getattr(args, "decoder_synthesizer", args.encoder_synthesizer)
    synthesizer_defaults(args)
    base_architecture(args)
