"""Let torch >= 2.6 load fairseq checkpoints with ``weights_only=True``.

fairseq calls ``torch.load`` without ``weights_only``, which torch 2.6 made default to True; its
checkpoints then fail with "Unsupported global: argparse.Namespace". Rather than turn the safe
loader off, we allow-list exactly the non-tensor types fairseq checkpoints hold:

- ``argparse.Namespace``: the legacy ``args`` and the ``cfg.model`` of argparse-based models;
- numpy scalars: validation metrics (``best``/``val_loss`` in ``extra_state``) can be numpy
  floats, pickled through ``numpy.core.multiarray.scalar`` and a dtype.

Anything else in a checkpoint is still refused by torch's unpickler.
"""

import argparse

import numpy
import torch


def _numpy_scalar_types():
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    return [scalar, numpy.dtype, numpy.dtypes.Float64DType, numpy.dtypes.Float32DType]


FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace, *_numpy_scalar_types()]

torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_GLOBALS)
