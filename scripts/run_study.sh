#!/usr/bin/env bash
# The study of results/study: ten models (three seeds for five), translation and language
# modeling on the default corpus, two runs at a time on one thread each. Each run is trained to
# 4,000 updates and scored (results/study), then continued to 8,000 and scored again
# (results/study_8000): the Transformer's validation loss flattens (under 2% over the last
# quarter) only there. About 21 hours on 2 cores (a translation run to 8,000 updates takes 80
# minutes, a language model 45).
# Resumable: run it again after an interruption and it continues from the last checkpoints,
# skipping finished runs; a run goes to 8,000 right after its 4,000 (checkpoints are not
# committed, so a session that ends on one machine loses at most the runs in progress).
# Extra arguments go to scripts/study.py (e.g. --commit to git-commit the results after each
# run). Runs go in the order of the model list, every first seed before any second one: the
# models of the paper's claims (R, R+V, D+V against the Transformer) come first, so that a
# partial study already answers them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
.venv/bin/python scripts/study.py --data data/bible --tasks translation,lm --jobs 2 --threads 1 \
  --models transformer:3,random:3,random+vanilla:3,dense+vanilla:3,dynamicconv:3,dense,factorized_random,factorized_dense,fixed_random,lightconv \
  --max-update 4000,8000 --out results/study --readme README.md "$@"
