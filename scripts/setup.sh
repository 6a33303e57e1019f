#!/usr/bin/env bash
# One idempotent set-up step for fairseq-synth, used by the README and by .ci/run.
# Creates .venv/ at the repository root and installs, in this order (order matters):
#   1. torch 2.13.0 (the CPU wheel; a plain `torch` requirement would pull a multi-GB CUDA build),
#   2. fairseq's real runtime dependencies (pinned where it matters), and tensorboardX for
#      fairseq-train's --tensorboard-logdir,
#   3. fairseq-fixed 0.12.3.1 (fairseq main for Python 3.11+) without build isolation and without
#      its declared dependencies (its `torchaudio` requirement would drag in another torch),
#   4. this plugin, editable.
# Re-running it only checks what is there: each step is skipped when already satisfied.
# Prints one line per stage with the time elapsed since the start: [setup m:ss] ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
START=$SECONDS

stage() {
  local t=$((SECONDS - START))
  printf '[setup %d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
# have NAME VERSION: installed at VERSION (a local suffix such as torch's +cpu is ignored).
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1').split('+')[0] == '$2' else 1)" 2>/dev/null; }

if [ ! -x "$PY" ]; then
  stage "creating $VENV"
  python3 -m venv "$VENV"
fi

if have torch 2.13.0; then
  stage "torch 2.13.0 (CPU): already installed"
else
  stage "installing torch 2.13.0 (CPU wheel)"
  pip_install torch==2.13.0
fi

# fairseq's runtime dependencies, declared by us (fairseq-fixed is installed with --no-deps).
# tensorboardX (with its protobuf) makes --tensorboard-logdir write event files, and silences
# the "Please install tensorboardX" line fairseq logs at import.
stage "checking fairseq's runtime dependencies, tensorboardX, pytest, matplotlib"
pip_install \
  "numpy==1.26.4" "cython==3.0.12" "cffi" "hydra-core==1.3.2" "omegaconf==2.3.0" \
  "bitarray" "regex" "sacrebleu==2.4.3" "tqdm" "scikit-learn" "packaging" \
  "sentencepiece" "subword-nmt==0.3.8" "pytest" "matplotlib" "setuptools" "wheel" \
  "tensorboardX==2.6.5" "protobuf==7.36.2"

if have fairseq-fixed 0.12.3.1; then
  stage "fairseq-fixed 0.12.3.1: already installed"
else
  stage "building fairseq-fixed 0.12.3.1 (compiles C++ and Cython: 2-4 min on 2 cores)"
  pip_install --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
fi

# -P: do not put the current directory on sys.path, so the check sees only what is installed.
if (cd / && "$PY" -P -c "import fairseq_synth") 2>/dev/null; then
  stage "fairseq_synth: already installed (editable)"
else
  stage "installing fairseq_synth (editable)"
  pip_install --no-build-isolation --no-deps -e "$ROOT"
fi
stage "$(cd / && "$PY" -P -c "import torch, fairseq, fairseq_synth; print('ok: torch', torch.__version__, '| fairseq', fairseq.__version__)")"
