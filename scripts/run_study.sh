#!/usr/bin/env bash
# The study of results/study: ten models (three seeds for five), translation and language
# modeling on the default corpus, 4000 updates a run, two runs at a time on one thread each
# (about 10 hours on 2 cores). Resumable: run it again after an interruption and it continues
# from the last checkpoints, skipping finished runs. Extra arguments go to scripts/study.py
# (e.g. --commit to git-commit results/study after each run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python scripts/prepare_bible.py --out data/bible --binarize
exec .venv/bin/python scripts/study.py --data data/bible --tasks translation,lm \
  --models transformer:3,lightconv,dynamicconv:3,random:3,fixed_random,factorized_random,dense,factorized_dense,random+vanilla:3,dense+vanilla:3 \
  --max-update 4000 --jobs 2 --threads 1 --out results/study "$@"
