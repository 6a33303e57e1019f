"""choose_kernel picks the kernel of each row of docs/design.md's table, and that kernel runs.

FACTORED_MIN_KEYS is lowered to 10 so that "long" inputs (10 keys) are long enough for the
factored kernel while staying small; "padded" inputs have 9 keys.
"""

import pytest
import torch

from fairseq_synth.modules import attention_kernels as kernels
from fairseq_synth.modules import synthesizer_attention
from fairseq_synth.modules.kernel_choice import Kernel
from test_kernels import count_calls
from test_synthesizer_attention import EMBED, left_padded, make

KERNEL_FUNCTIONS = {
    Kernel.FACTORED: "factored_attention",
    Kernel.SHARED: "shared_alignment_attention",
    Kernel.SHARED_ROWS: "shared_rows_attention",
    Kernel.BIASED_SDPA: "fused_attention",
    Kernel.MATERIALIZED: "materialized_attention",
}

# (row of the table, spec, case, kernel)
TABLE = [
    (1, "random+vanilla", "weights", Kernel.MATERIALIZED),
    (1, "dense", "long weights", Kernel.MATERIALIZED),
    (2, "dense", "long", Kernel.FACTORED),
    (2, "dense+vanilla", "long", Kernel.FACTORED),
    (2, "factorized_random+vanilla", "long", Kernel.FACTORED),
    (2, "vanilla", "long dropout", Kernel.FACTORED),
    (3, "random", "padded", Kernel.SHARED),
    (3, "fixed_random", "padded", Kernel.SHARED),
    (3, "factorized_random", "long", Kernel.SHARED),
    (3, "random", "future", Kernel.SHARED),
    (4, "random", "decode", Kernel.SHARED_ROWS),
    (4, "factorized_random", "decode", Kernel.SHARED_ROWS),
    (5, "random+vanilla", "padded", Kernel.BIASED_SDPA),
    (5, "random+vanilla", "padded dropout", Kernel.BIASED_SDPA),
    (5, "dense+vanilla", "padded", Kernel.BIASED_SDPA),
    (5, "dense+vanilla", "decode", Kernel.BIASED_SDPA),
    (5, "factorized_dense+vanilla", "long", Kernel.BIASED_SDPA),
    (6, "dense", "padded", Kernel.MATERIALIZED),
    (6, "factorized_dense", "long", Kernel.MATERIALIZED),
    (6, "random+dense", "long", Kernel.MATERIALIZED),
    (6, "random", "padded dropout", Kernel.MATERIALIZED),
    (6, "random", "moved mask", Kernel.MATERIALIZED),
    (6, "random+vanilla", "empty row", Kernel.MATERIALIZED),
    (6, "dense+vanilla", "long empty row", Kernel.MATERIALIZED),
    (6, "random", "decode blocked", Kernel.MATERIALIZED),
]


def attend(attention, case):
    """Run ``attention`` on the input ``case`` describes (words of the TABLE's case column)."""
    words = case.split()
    length = 10 if "long" in words else 9
    x = torch.randn(length, 2, EMBED)
    if "decode" in words:  # two steps; the second has a cached key (first = 1)
        state, blocked = {}, torch.full((1, 2), float("-inf"))
        for t in range(2):
            step = x[t:t + 1]
            mask = blocked if t == 1 and "blocked" in words else None
            attention(step, step, step, incremental_state=state, attn_mask=mask,
                      need_weights=False)
        return
    padding, mask = left_padded([length, length - 3]), None
    if "empty" in words:
        padding = torch.stack([torch.zeros(length, dtype=torch.bool),
                               torch.ones(length, dtype=torch.bool)])
    if "future" in words:
        mask = torch.triu(torch.full((length, length), float("-inf")), 1)
    if "moved" in words:  # not the future mask: it moves with the compaction, one per row
        mask = torch.randn(length, length)
    attention(x, x, x, key_padding_mask=padding, attn_mask=mask,
              need_weights="weights" in words)


@pytest.mark.parametrize("row, spec, case, kernel", TABLE)
def test_each_row_of_the_table_picks_and_runs_its_kernel(row, spec, case, kernel, monkeypatch):
    monkeypatch.setattr(kernels, "FACTORED_MIN_KEYS", 10)
    chosen = []
    choose = synthesizer_attention.choose_kernel
    monkeypatch.setattr(synthesizer_attention, "choose_kernel",
                        lambda call: chosen.append(choose(call)) or chosen[-1])
    ran = count_calls(monkeypatch, KERNEL_FUNCTIONS[kernel])
    attention = make(spec, dropout=0.1)
    if "dropout" in case.split():
        attention.train()
    with torch.no_grad():
        attend(attention, case)
    assert chosen[-1] is kernel
    assert ran
