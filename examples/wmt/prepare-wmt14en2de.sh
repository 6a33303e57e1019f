#!/usr/bin/env bash
# WMT'14 English-German for fairseq, as fairseq's examples/translation/prepare-wmt14en2de.sh:
# Europarl v7 + Common Crawl + News Commentary (v9, WMT'14's; --nc-v12 for fairseq's default
# v12), validation split off the training data, newstest2014 as test, joint 40k BPE, then
# fairseq-preprocess --joined-dictionary into data-bin/wmt14_en_de (data-bin/wmt17_en_de with
# --nc-v12). Needs internet, perl, git, wget or curl, ~15 GB of disk and a few CPU hours.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck source-path=SCRIPTDIR source=prepare-common.sh
source "$HERE/prepare-common.sh"

usage() {
    echo "Usage: bash examples/wmt/prepare-wmt14en2de.sh [--nc-v12] [--check-only]"
}

SRC=en
TGT=de
NAME=wmt14_en_de
VALID_EVERY=100
TEST_PREFIX=newstest2014-deen
URLS=(
    "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"
    "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"
    "http://statmt.org/wmt14/training-parallel-nc-v9.tgz"
    "http://statmt.org/wmt14/test-full.tgz"
)
CORPORA=(
    "training/europarl-v7.de-en"
    "commoncrawl.de-en"
    "training/news-commentary-v9.de-en"
)

ARGS=()
for arg in "$@"; do
    if [[ "$arg" == --nc-v12 ]]; then
        # fairseq's default corpus (its recipe without --icml17): News Commentary v12 from WMT'17.
        NAME=wmt17_en_de
        URLS[2]="http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz"
        CORPORA[2]="training/news-commentary-v12.de-en"
    else
        ARGS+=("$arg")
    fi
done

prepare_wmt14 "${ARGS[@]+"${ARGS[@]}"}"
