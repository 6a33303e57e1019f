"""Alignment functions of the Synthesizer (Tay et al., ICML 2021), one module per variant.

Each alignment maps its inputs to attention logits for every head. Tensor letters used here:
B batch, H heads, T query length, S key length, C model width, D head width, L maximum length.

Every alignment implements
    ``forward(query, keys, src_len, query_positions=None, key_positions=None) -> (B, H, T, S)``
where ``query`` is the (T, B, C) layer input at the query positions, ``keys`` is whatever its
``project_keys`` returned for the key positions (only dot-product attention uses keys), and the
positions are (B, T) / (B, S) indices of each token within its own sentence. ``None`` positions
mean the identity (0..T-1 and 0..S-1), which is the fast path for full-sequence forwards.

Input-independent alignments (Random and its variants) also implement
    ``shared_logits(tgt_len, src_len) -> (H, T, S)``
so the attention never builds a per-example copy of a matrix that does not depend on the input.
"""

from typing import Callable, Dict, List, Type

from .base import Alignment, AlignmentConfig

ALIGNMENT_REGISTRY: Dict[str, Type[Alignment]] = {}


def register_alignment(name: str) -> Callable[[Type[Alignment]], Type[Alignment]]:
    """Register an alignment class under ``name`` (the spelling used in ``--*-synthesizer``)."""

    def register(cls: Type[Alignment]) -> Type[Alignment]:
        if name in ALIGNMENT_REGISTRY:
            raise ValueError(f"alignment {name!r} is already registered")
        cls.name = name
        ALIGNMENT_REGISTRY[name] = cls
        return cls

    return register


# Other spellings users reach for: the paper's letters and the variant names of the presets
# (synth_random_vanilla_base and so on). Case-insensitive.
ALIASES = {
    "r": "random", "fixed_r": "fixed_random", "d": "dense", "fr": "factorized_random",
    "fd": "factorized_dense", "v": "vanilla", "dot_product": "vanilla",
    "random_vanilla": "random+vanilla", "dense_vanilla": "dense+vanilla",
    "random_dense": "random+dense",
}


def parse_synthesizer_spec(spec: str) -> List[str]:
    """Split a synthesizer spelling such as ``"random+vanilla"`` (or ``"R+V"``,
    ``"random_vanilla"``) into registered part names.

    Raises a ValueError listing the valid names for an unknown part, an empty part or a part
    named twice (a mixture of a part with itself is the part).
    """
    parts = []
    for word in spec.split("+"):
        word = word.strip().lower()
        parts += ALIASES.get(word, word).split("+")
    valid = ", ".join(sorted(ALIGNMENT_REGISTRY))
    for part in parts:
        if part not in ALIGNMENT_REGISTRY:
            raise ValueError(
                f"unknown synthesizer part {part!r} in {spec!r}; valid parts are {valid}, "
                f"joined with '+' for a mixture (e.g. 'random+vanilla'); the paper's letters "
                f"(R, D, FR, FD, V) and the preset names (random_vanilla, dense_vanilla, "
                f"random_dense) are accepted too"
            )
    if len(set(parts)) != len(parts):
        raise ValueError(f"synthesizer {spec!r} names a part twice; each part may appear once")
    return parts


# Importing the variants registers them.
from . import dense, dot_product, factorized_dense, factorized_random, random  # noqa: E402,F401

__all__ = [
    "ALIASES",
    "ALIGNMENT_REGISTRY",
    "Alignment",
    "AlignmentConfig",
    "parse_synthesizer_spec",
    "register_alignment",
]
