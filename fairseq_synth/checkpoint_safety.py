"""Let torch >= 2.6 load fairseq checkpoints with ``weights_only=True``.

fairseq calls ``torch.load`` without ``weights_only``, which torch 2.6 made default to True; its
checkpoints then fail with "Unsupported global: argparse.Namespace". Rather than turn the safe
loader off, we allow-list exactly the non-tensor types that fairseq checkpoints of this plugin
hold. ``tests/test_checkpoints.py`` checks the list against checkpoints of several configurations
(translation, translation with --eval-bleu, a language model): each entry is needed by one of
them. Anything else in a checkpoint is still refused by torch's unpickler.
"""

import argparse

import numpy
import torch


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# Each entry, and which checkpoints need it:
FAIRSEQ_CHECKPOINT_GLOBALS = [
    # The legacy ``args`` and ``cfg["model"]`` of argparse-based models (synth_transformer);
    # language models are configured by dataclasses and store plain dicts.
    argparse.Namespace,
    # numpy arrays: with --eval-bleu, fairseq persists its "valid" metrics in
    # extra_state["metrics"], and the translation task logs the BLEU n-gram counts and totals
    # (_bleu_counts, _bleu_totals) as int64 numpy arrays. The pickled name of _reconstruct
    # depends on the numpy that saved the checkpoint, so both spellings are listed.
    (_numpy_reconstruct(), "numpy.core.multiarray._reconstruct"),  # saved by numpy 1.x
    (_numpy_reconstruct(), "numpy._core.multiarray._reconstruct"),  # saved by numpy 2.x
    numpy.ndarray,
    numpy.dtype,
    numpy.dtypes.Int64DType,  # the dtype of those counts, restored with __setstate__
]

torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_GLOBALS)
