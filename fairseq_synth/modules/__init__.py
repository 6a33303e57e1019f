from .alignments import ALIGNMENT_REGISTRY, parse_synthesizer_spec, register_alignment
from .synthesizer_attention import SynthesizerAttention

__all__ = [
    "ALIGNMENT_REGISTRY",
    "SynthesizerAttention",
    "parse_synthesizer_spec",
    "register_alignment",
]
