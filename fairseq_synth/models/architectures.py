"""Named presets: every Synthesizer variant at fairseq's Transformer sizes.

``transformer_synth_<variant>_<preset>`` chains to fairseq's ``transformer_<preset>`` settings;
``synth_<variant>_base`` / ``synth_<variant>_big`` are the WMT base and big settings.
"""

from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import (
    base_architecture,
    transformer_iwslt_de_en,
    transformer_wmt_en_de,
    transformer_wmt_en_de_big,
)

from .synth_layers import synthesizer_defaults

# Preset name -> synthesizer spelling (the paper's variants and its mixtures).
VARIANTS = {
    "random": "random",
    "fixed_random": "fixed_random",
    "dense": "dense",
    "factorized_random": "factorized_random",
    "factorized_dense": "factorized_dense",
    "random_vanilla": "random+vanilla",
    "dense_vanilla": "dense+vanilla",
    "random_dense": "random+dense",
}

# Preset suffix -> fairseq's preset with the same sizes. The paper trains En-Fr at base size,
# and fairseq's base_architecture is exactly its transformer_wmt_en_de.
FAIRSEQ_PRESETS = {
    "iwslt_de_en": transformer_iwslt_de_en,
    "wmt_en_de": transformer_wmt_en_de,
    "wmt_en_de_big": transformer_wmt_en_de_big,
    "wmt_en_fr": base_architecture,
}
SHORT_NAMES = {"base": "wmt_en_de", "big": "wmt_en_de_big"}


def synth_preset(spec, fairseq_preset):
    def architecture(args):
        args.encoder_synthesizer = getattr(args, "encoder_synthesizer", spec)
        args.decoder_synthesizer = getattr(args, "decoder_synthesizer", args.encoder_synthesizer)
        synthesizer_defaults(args)
        fairseq_preset(args)

    return architecture


def preset_names():
    """Every (architecture name, spec, fairseq preset) this module registers."""
    for variant, spec in VARIANTS.items():
        for suffix, preset in FAIRSEQ_PRESETS.items():
            yield f"transformer_synth_{variant}_{suffix}", spec, preset
        for short, suffix in SHORT_NAMES.items():
            yield f"synth_{variant}_{short}", spec, FAIRSEQ_PRESETS[suffix]


for _name, _spec, _preset in preset_names():
    register_model_architecture("synth_transformer", _name)(synth_preset(_spec, _preset))
