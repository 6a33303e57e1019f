"""fairseq-synth: the Synthesizer (Tay et al., ICML 2021) as a fairseq --user-dir plugin."""

from . import checkpoint_safety  # noqa: F401 (allow-lists fairseq checkpoint types for torch.load)
from . import models, modules  # noqa: F401 (registers models and architectures)
