#!/usr/bin/env bash
# WMT'14 English-French for fairseq, as fairseq's examples/translation/prepare-wmt14en2fr.sh:
# Europarl v7 + Common Crawl + UN + News Commentary v9 + Gigaword Fr-En (~36M pairs before
# cleaning), every 1333rd pair held out for validation, newstest2014 as test, joint 40k BPE, then
# fairseq-preprocess --joined-dictionary into data-bin/wmt14_en_fr. Needs internet, perl, git,
# wget or curl, ~80 GB of disk and most of a day of CPU time (BPE learning and tokenisation).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
# shellcheck source-path=SCRIPTDIR source=prepare-common.sh
source "$HERE/prepare-common.sh"

usage() {
    echo "Usage: bash examples/wmt/prepare-wmt14en2fr.sh [--check-only]"
}

SRC=en
TGT=fr
NAME=wmt14_en_fr
VALID_EVERY=1333
TEST_PREFIX=newstest2014-fren
URLS=(
    "http://statmt.org/wmt13/training-parallel-europarl-v7.tgz"
    "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz"
    "http://statmt.org/wmt13/training-parallel-un.tgz"
    "http://statmt.org/wmt14/training-parallel-nc-v9.tgz"
    "http://statmt.org/wmt10/training-giga-fren.tar"
    "http://statmt.org/wmt14/test-full.tgz"
)
CORPORA=(
    "training/europarl-v7.fr-en"
    "commoncrawl.fr-en"
    "un/undoc.2000.fr-en"
    "training/news-commentary-v9.fr-en"
    "giga-fren.release2.fixed"
)

# The Gigaword archive holds gzipped text: unpack it once (via a .part file, so that an
# interrupted run does not leave a truncated corpus behind).
post_extract() {
    local l f=giga-fren.release2.fixed
    for l in en fr; do
        [[ -f "$f.$l" ]] && continue
        log "gunzip $f.$l.gz"
        gunzip -c "$f.$l.gz" > "$f.$l.part"
        mv "$f.$l.part" "$f.$l"
    done
}

prepare_wmt14 "$@"
