from . import synth_transformer, architectures  # noqa: F401 (registers models, then presets)
from . import synth_transformer_lm  # noqa: F401 (the language model and its presets)
