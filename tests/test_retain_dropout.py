"""fairseq's --retain-dropout keeps attention dropout at inference, on every kernel.

FairseqDropout applies in training, or in eval once ``make_generation_fast_(retain_dropout=True)``
set its ``apply_during_inference``; the kernels that take a dropout probability (SDPA, the
factored kernel) and the ones that cannot apply it (the shared Random kernels) must follow it.
"""

import re

import pytest
import torch

from fairseq_synth.modules import attention_kernels as kernels
from helpers import TINY_ARGS, USER_DIR, run_cli
from test_synthesizer_attention import EMBED, SPECS, left_padded, make


def retaining_dropout(spec, retain=True):
    """An eval-mode attention with attention dropout 0.5, prepared for inference the way
    fairseq's BaseFairseqModel.make_generation_fast_ prepares every submodule."""
    attention = make(spec, dropout=0.5)
    for name, module in attention.named_modules():
        if hasattr(module, "make_generation_fast_"):
            module.make_generation_fast_(name=name, retain_dropout=retain)
    return attention


def decode(attention, x):
    """Step-by-step decoding of x (T, B, C), one new step at a time."""
    state, steps = {}, []
    for step in x.split(1):
        steps.append(attention(step, step, step, incremental_state=state,
                               need_weights=False)[0])
    return torch.cat(steps)


def full(attention, x):
    padding = left_padded([7, 4, 6])
    return attention(x, x, x, key_padding_mask=padding, need_weights=False)[0]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("factored", [False, True])
@pytest.mark.parametrize("forward", [full, decode])
def test_retain_dropout_drops_on_every_kernel(spec, factored, forward, monkeypatch):
    """Two eval-mode calls differ with retained dropout (``factored`` sends low-rank parts
    through the factored kernel, as from FACTORED_MIN_KEYS keys) and agree without it."""
    if factored:
        monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 0)
    x = torch.randn(7, 3, EMBED)
    with torch.no_grad():
        kept = retaining_dropout(spec)
        difference = (forward(kept, x) - forward(kept, x)).abs().max().item()
        assert difference > 1e-3
        plain = retaining_dropout(spec, retain=False)
        torch.testing.assert_close(forward(plain, x), forward(plain, x))


def test_fairseq_generate_retain_dropout_changes_a_synthesizer_translation(reversal_data,
                                                                            tmp_path):
    """Through fairseq-generate: with dropout retained for SynthesizerAttention only (fairseq's
    MultiheadAttention, the encoder-decoder attention, keeps none), the scores change.
    --retain-dropout-modules is needed: without it fairseq would also retain the dropout of the
    encoder-decoder attention, and the outputs would change even if ours ignored the flag."""
    run_cli("fairseq-train", reversal_data, "--user-dir", USER_DIR, "--arch",
            "synth_random_base", *TINY_ARGS, "--attention-dropout", "0.5", "--optimizer",
            "adam", "--lr", "0.001", "--max-tokens", "500", "--max-update", "1",
            "--no-epoch-checkpoints", "--no-save-optimizer-state", "--cpu",
            "--save-dir", tmp_path)

    def hypotheses(*extra):
        output = run_cli("fairseq-generate", reversal_data, "--user-dir", USER_DIR, "--path",
                         tmp_path / "checkpoint_last.pt", "--cpu", "--beam", "2",
                         "--max-len-a", "1", "--max-len-b", "2", "--batch-size", "50",
                         "--seed", "1", "--required-batch-size-multiple", "1", *extra).stdout
        return sorted(re.findall(r"^H-.*$", output, flags=re.M))

    plain = hypotheses()
    retained = hypotheses("--retain-dropout", "--retain-dropout-modules",
                          "SynthesizerAttention")
    assert len(plain) == len(retained) == 100  # every test sentence (fairseq#5036)
    assert plain != retained
