#!/usr/bin/env bash
# The study of results/study: ten models (three seeds for five), translation and language
# modeling on the default corpus, 4000 updates a run, two runs at a time on one thread each
# (about 13 hours on 2 cores). Resumable: run it again after an interruption and it continues
# from the last checkpoints, skipping finished runs. Extra arguments go to scripts/study.py
# (e.g. --commit to git-commit results/study after each run). Runs go in the order of --models,
# every first seed before any second one: the models of the paper's claims (R, R+V, D+V against
# the Transformer) come first, so that a partial study already answers them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
exec .venv/bin/python scripts/study.py --data data/bible --tasks translation,lm \
  --models transformer:3,random:3,random+vanilla:3,dense+vanilla:3,dynamicconv:3,dense,factorized_random,factorized_dense,fixed_random,lightconv \
  --max-update 4000 --jobs 2 --threads 1 --out results/study "$@"
