#!/usr/bin/env bash
# The study of results/study: ten models (three seeds for five), translation and language
# modeling on the default corpus, two runs at a time on one thread each. Two stages:
#   1. every run to 4,000 updates -> results/study (about 13 hours on 2 cores);
#   2. the same runs continued to 8,000 updates -> results/study_8000 (about 13 more): the
#      Transformer's validation loss flattens (under 2% over the last quarter) only there.
# Resumable: run it again after an interruption and it continues from the last checkpoints,
# skipping finished runs. Extra arguments go to scripts/study.py (e.g. --commit to git-commit
# the results after each run). Runs go in the order of the model list, every first seed
# before any second one: the models of the paper's claims (R, R+V, D+V against the
# Transformer) come first, so that a partial study already answers them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
GRID=(--data data/bible --tasks translation,lm --jobs 2 --threads 1
  --models transformer:3,random:3,random+vanilla:3,dense+vanilla:3,dynamicconv:3,dense,factorized_random,factorized_dense,fixed_random,lightconv
)
.venv/bin/python scripts/study.py "${GRID[@]}" --max-update 4000 --out results/study "$@"
.venv/bin/python scripts/study.py "${GRID[@]}" --max-update 8000 --out results/study_8000 \
  --continue-from checkpoints/study "$@"
