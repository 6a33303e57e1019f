"""Does a checkpoint's synthesizer fit the model it is loaded into? A clear error if not.

Position-indexed alignments have one row or column per position up to L = ``--synth-max-len``:
Random and Fixed Random hold (H, L, L) matrices, Dense (H, D, L) output layers, Factorized Random
(H, L, k) factors. A checkpoint trained with one L therefore cannot be loaded into a model built
with another (``fairseq-generate --model-overrides "{'synth_max_len': 512}"``, or
``fairseq-train --restore-file ... --synth-max-len 512``). Torch would report a "size mismatch"
per tensor; ``Alignment._load_from_state_dict`` calls :func:`check_alignment_shapes` first, which
names the option and both values. Factorized Dense's a,b and b,a give identical shapes, so it
also checks its saved factors (``FactorizedDenseAlignment.check_checkpoint``).

Alignments are not resized: rows and columns past the trained length would be untrained (or
dropped), silently changing the model. Build the model with the checkpoint's sizes instead;
fairseq then rejects longer inputs by the model's ``max_positions`` (or skips them with
``--skip-invalid-size-inputs-valid-test``).

This module imports only torch, so that the alignments can use it while the package loads.
"""

from typing import List, Mapping, Optional, Tuple

import torch
from torch import nn

# The options that size alignment tensors (besides the model width and the number of heads).
SIZE_OPTIONS = "--synth-max-len, --synth-random-rank, --synth-dense-factors"

Mismatch = Tuple[str, Tuple[int, ...], Tuple[int, ...]]  # key, checkpoint shape, model shape


class SynthesizerCheckpointError(ValueError):
    """A checkpoint's synthesizer tensors do not fit the model built to load it."""


def shape_mismatches(module: nn.Module, state_dict: Mapping, prefix: str) -> List[Mismatch]:
    """Tensors of ``module`` (and its children) whose checkpoint entry has another shape."""
    mismatches = []
    for name, tensor in module.state_dict(keep_vars=True).items():
        stored = state_dict.get(prefix + name)
        if torch.is_tensor(stored) and stored.shape != tensor.shape:
            mismatches.append((prefix + name, tuple(stored.shape), tuple(tensor.shape)))
    return mismatches


def trained_max_len(mismatches: List[Mismatch], max_len: int) -> Optional[int]:
    """The checkpoint's L: its size wherever this model's tensor has size L and differs."""
    found = {
        stored[dim]
        for _, stored, expected in mismatches
        if len(stored) == len(expected)
        for dim, size in enumerate(expected)
        if size == max_len and stored[dim] != size
    }
    return found.pop() if len(found) == 1 else None


def check_alignment_shapes(alignment: nn.Module, state_dict: Mapping, prefix: str):
    """Raise :class:`SynthesizerCheckpointError` if ``state_dict`` does not fit ``alignment``.

    ``alignment`` needs ``name`` and ``max_len`` attributes (see ``alignments/base.py``);
    ``prefix`` is its key prefix in ``state_dict``, as torch's ``_load_from_state_dict`` gets it.
    """
    mismatches = shape_mismatches(alignment, state_dict, prefix)
    if not mismatches:
        return
    model_len = alignment.max_len
    checkpoint_len = trained_max_len(mismatches, model_len)
    if checkpoint_len is not None:
        cause = (
            f"the checkpoint was trained with --synth-max-len {checkpoint_len}, this model is "
            f"built with --synth-max-len {model_len}"
        )
        fix = (
            f"build the model with --synth-max-len {checkpoint_len} (drop the option or the "
            f"'synth_max_len' model override)"
        )
    else:
        cause = (
            f"the checkpoint was trained with other synthesizer sizes ({SIZE_OPTIONS}) than this "
            f"model (--synth-max-len {model_len})"
        )
        fix = "build the model with the sizes the checkpoint was trained with"
    shapes = "\n".join(
        f"  {key}: checkpoint {list(stored)}, model {list(expected)}"
        for key, stored, expected in mismatches
    )
    raise SynthesizerCheckpointError(
        f"cannot load the {alignment.name!r} synthesizer alignment {prefix.rstrip('.')}: "
        f"{cause}.\n{shapes}\nSynthesizer alignments have one row/column per position and are "
        f"not resized; {fix}. Inputs longer than the trained length are then rejected by "
        f"fairseq (or skipped with --skip-invalid-size-inputs-valid-test)."
    )
