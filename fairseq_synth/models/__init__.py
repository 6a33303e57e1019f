from . import synth_transformer, architectures  # noqa: F401 (registers models, then presets)
