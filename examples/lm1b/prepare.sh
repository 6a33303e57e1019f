#!/usr/bin/env bash
# One Billion Word (LM1B, Chelba et al. 2013) for fairseq's language_modeling task.
# The benchmark's release r13output is already tokenised (one sentence a line, shuffled): the
# 99 training shards are concatenated; the test set is the standard heldout-00000-of-00050 and we
# validate on heldout-00001-of-00050. Then, by default (fairseq's word-level GBW setup, used with
# adaptive input/softmax by train.sh):
#   fairseq-preprocess --only-source --thresholdsrc 3   (words seen >= 3 times: the benchmark's
#                                                         ~793k-word vocabulary, the rest <unk>)
# or, with --bpe N, subword units (subword-nmt, N merges; closer to the paper's subword LM).
#
# Usage: bash examples/lm1b/prepare.sh [--bpe N] [--check-only]
#   --bpe N        BPE with N merges (e.g. 32000) into data-bin/lm1b_bpeN, instead of words
#   --check-only   check the prerequisites and print the plan, download nothing
# Environment: WORK_ROOT (text, default data/), DATA_BIN_ROOT (default data-bin/), FAIRSEQ_BIN,
#   THREADS. Needs internet, ~1.7 GB download, ~10 GB of disk, about an hour of CPU (more with BPE).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../wmt/lib.sh
source "$HERE/../wmt/lib.sh"

usage() {
    print_usage "${BASH_SOURCE[0]}"
}

BPE=0
CHECK_ONLY=0
while (( $# )); do
    case "$1" in
        --bpe)
            [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--bpe takes a number of merges, e.g. --bpe 32000"
            BPE="$2"
            shift
            ;;
        --check-only) CHECK_ONLY=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

URL="http://www.statmt.org/lm-benchmark/1-billion-word-language-modeling-benchmark-r13output.tar.gz"
ORIG="$WORK_ROOT/lm1b/orig"
RELEASE="$ORIG/1-billion-word-language-modeling-benchmark-r13output"
PREP="$WORK_ROOT/lm1b/text"
if (( BPE > 0 )); then NAME="lm1b_bpe$BPE"; else NAME=lm1b; fi
DEST="$DATA_BIN_ROOT/$NAME"

need_cmd tar "Install tar."
need_cmd gzip "Install gzip."
command -v wget >/dev/null 2>&1 || command -v curl >/dev/null 2>&1 \
    || die "neither wget nor curl found: install one (apt-get install wget)"
need_fairseq fairseq-preprocess
(( BPE > 0 )) && need_fairseq subword-nmt

echo "One Billion Word -> $NAME"
echo "  download:        $URL"
echo "  into:            $ORIG"
echo "  text into:       $PREP"
echo "  binarized into:  $DEST"
if (( BPE > 0 )); then echo "  vocabulary:      BPE, $BPE merges"; else echo "  vocabulary:      words seen >= 3 times"; fi
if (( CHECK_ONLY )); then
    echo "prerequisites OK (--check-only: nothing downloaded)"
    exit 0
fi
if [[ -f "$DEST/.prepared" ]]; then
    log "$DEST is already prepared (delete it to redo)"
    exit 0
fi

mkdir -p "$ORIG" "$PREP"
ARCHIVE="$ORIG/$(basename "$URL")"
fetch "$URL" "$ARCHIVE"
extract "$ARCHIVE" "$ORIG"

TRAIN_DIR="$RELEASE/training-monolingual.tokenized.shuffled"
HELDOUT_DIR="$RELEASE/heldout-monolingual.tokenized.shuffled"
shopt -s nullglob
TRAIN_SHARDS=("$TRAIN_DIR"/news.en-000??-of-00100)
shopt -u nullglob
(( ${#TRAIN_SHARDS[@]} == 99 )) || die "expected 99 training shards in $TRAIN_DIR, found \
${#TRAIN_SHARDS[@]}: incomplete download? Delete $ARCHIVE and re-run."
for f in "$HELDOUT_DIR/news.en.heldout-00000-of-00050" "$HELDOUT_DIR/news.en.heldout-00001-of-00050"; do
    [[ -f "$f" ]] || die "$f is missing: incomplete download? Delete $ARCHIVE and re-run."
done

if [[ ! -s "$PREP/train.txt" ]]; then
    log "concatenating the 99 training shards"
    cat "${TRAIN_SHARDS[@]}" > "$PREP/train.txt.part"
    mv "$PREP/train.txt.part" "$PREP/train.txt"
fi
cp "$HELDOUT_DIR/news.en.heldout-00001-of-00050" "$PREP/valid.txt"
cp "$HELDOUT_DIR/news.en.heldout-00000-of-00050" "$PREP/test.txt"

SPLIT_PREFIX="$PREP"
THRESHOLD=3
if (( BPE > 0 )); then
    BPE_DIR="$PREP/bpe$BPE"
    mkdir -p "$BPE_DIR"
    if [[ ! -s "$BPE_DIR/code" ]]; then
        log "learning $BPE BPE merges on the training data (hours)"
        "$FAIRSEQ_BIN/subword-nmt" learn-bpe -s "$BPE" < "$PREP/train.txt" > "$BPE_DIR/code.part"
        mv "$BPE_DIR/code.part" "$BPE_DIR/code"
    fi
    for split in train valid test; do
        [[ -s "$BPE_DIR/$split.txt" ]] && continue
        log "applying BPE to $split"
        "$FAIRSEQ_BIN/subword-nmt" apply-bpe -c "$BPE_DIR/code" --num-workers "$THREADS" \
            < "$PREP/$split.txt" > "$BPE_DIR/$split.txt.part"
        mv "$BPE_DIR/$split.txt.part" "$BPE_DIR/$split.txt"
    done
    SPLIT_PREFIX="$BPE_DIR"
    THRESHOLD=0
fi

log "fairseq-preprocess -> $DEST"
rm -rf "$DEST"
"$FAIRSEQ_BIN/fairseq-preprocess" --only-source \
    --trainpref "$SPLIT_PREFIX/train.txt" --validpref "$SPLIT_PREFIX/valid.txt" \
    --testpref "$SPLIT_PREFIX/test.txt" --destdir "$DEST" --thresholdsrc "$THRESHOLD" \
    --workers "$THREADS"
if (( BPE > 0 )); then cp "$BPE_DIR/code" "$DEST/code"; fi
touch "$DEST/.prepared"
log "done: $DEST (dictionary of $(wc -l < "$DEST/dict.txt") entries)"
