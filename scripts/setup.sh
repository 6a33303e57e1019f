#!/usr/bin/env bash
# One idempotent set-up step for fairseq-synth, used by the README and by .ci/run.
# Creates .venv/ at the repository root and installs, in this order (order matters):
#   1. torch 2.13.0 (the CPU wheel; a plain `torch` requirement would pull a multi-GB CUDA build),
#   2. fairseq's real runtime dependencies (pinned where it matters),
#   3. fairseq-fixed 0.12.3.1 (fairseq main for Python 3.11+) without build isolation and without
#      its declared dependencies (its `torchaudio` requirement would drag in another torch),
#   4. this plugin, editable.
# Re-running it only checks what is there: each step is skipped when already satisfied.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1') == '$2' else 1)" 2>/dev/null; }

if ! have torch 2.13.0; then
  pip_install torch==2.13.0
fi

# fairseq's runtime dependencies, declared by us (fairseq-fixed is installed with --no-deps).
pip_install \
  "numpy==1.26.4" "cython==3.0.12" "cffi" "hydra-core==1.3.2" "omegaconf==2.3.0" \
  "bitarray" "regex" "sacrebleu==2.4.3" "tqdm" "scikit-learn" "packaging" \
  "sentencepiece" "subword-nmt==0.3.8" "pytest" "matplotlib" "setuptools" "wheel"

if ! have fairseq-fixed 0.12.3.1; then
  echo "[setup] building fairseq-fixed 0.12.3.1 (about 4 minutes on 2 cores)..."
  pip_install --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
fi

# -P: do not put the current directory on sys.path, so the check sees only what is installed.
if ! (cd / && "$PY" -P -c "import fairseq_synth") 2>/dev/null; then
  pip_install --no-build-isolation --no-deps -e "$ROOT"
fi
(cd / && "$PY" -P -c "import torch, fairseq, fairseq_synth; print('[setup] ok: torch', torch.__version__, '| fairseq', fairseq.__version__)")
