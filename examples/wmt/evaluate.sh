#!/usr/bin/env bash
# Average the last N checkpoints of a run, translate newstest2014 with fairseq-generate (beam 4,
# length penalty 0.6, as fairseq's Scaling NMT recipe) and report both BLEU scores:
#   - tokenised BLEU with compound splitting (fairseq's scripts/compound_split_bleu.sh, the
#     tensor2tensor convention of Vaswani et al. that the paper's table follows): "a-b" becomes
#     "a ##AT##-##AT## b" on both sides, then fairseq-score;
#   - detokenised sacreBLEU (the number to compare across papers): Moses-detokenised hypotheses
#     against the raw newstest2014 reference (or sacrebleu -t wmt14/full -l en-de without it).
#
# Usage: bash examples/wmt/evaluate.sh MODEL|CHECKPOINT_DIR [extra fairseq-generate arguments]
# MODEL is the name given to train.sh (its checkpoints: checkpoints/wmt14_en_de/MODEL).
# Environment: PAIR (en-de | en-fr, default en-de), DATA (default data-bin/wmt14_<pair>),
#   AVERAGE (checkpoints to average, default 5; 0 = use checkpoint_best.pt), BEAM (4),
#   LENPEN (0.6), NGPU, MOSES_SCRIPTS, FAIRSEQ_BIN; RESCORE=1 re-scores an existing
#   gen.test.out without averaging or translating again.
# Writes into the checkpoint folder: checkpoint.avgN.pt, gen.test.out, bleu.test.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

usage() {
    print_usage "${BASH_SOURCE[0]}"
}

(( $# >= 1 )) || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac

PAIR="${PAIR:-en-de}"
case "$PAIR" in
    en-de | en-fr) ;;
    *) die "PAIR must be en-de or en-fr, got '$PAIR'" ;;
esac
SRC="${PAIR%-*}"
TGT="${PAIR#*-}"
NAME="wmt14_${SRC}_${TGT}"
DATA="${DATA:-$DATA_BIN_ROOT/$NAME}"
if [[ -d "$1" ]]; then SAVE_DIR="$1"; else SAVE_DIR="$CHECKPOINT_ROOT/$NAME/$1"; fi
shift

[[ -d "$SAVE_DIR" ]] || die "no checkpoint folder $SAVE_DIR: train first, e.g.
    bash $HERE/train.sh $(basename "$SAVE_DIR")"
[[ -f "$DATA/dict.$TGT.txt" ]] || die "no binarized data in $DATA: run
    bash $HERE/prepare-wmt14en2$TGT.sh"
need_fairseq fairseq-generate fairseq-score sacrebleu

# 1. Checkpoint averaging (fairseq's recipe averages the last 5-10).
AVERAGE="${AVERAGE:-5}"
GEN="$SAVE_DIR/gen.test.out"
if [[ "${RESCORE:-0}" == 1 ]]; then
    [[ -f "$GEN" ]] || die "RESCORE=1 but there is no $GEN yet"
    CHECKPOINT="$GEN"  # (only named in the summary)
elif (( AVERAGE > 0 )); then
    CHECKPOINT="$SAVE_DIR/checkpoint.avg$AVERAGE.pt"
    newest="$(find "$SAVE_DIR" -maxdepth 1 -name 'checkpoint_*_*.pt' -newer "$CHECKPOINT" \
              2>/dev/null | head -n 1 || true)"
    if [[ ! -f "$CHECKPOINT" || -n "$newest" ]]; then
        "$PYTHON" "$HERE/average_checkpoints.py" --inputs "$SAVE_DIR" \
            --num-update-checkpoints "$AVERAGE" --output "$CHECKPOINT"
    fi
else
    CHECKPOINT="$SAVE_DIR/checkpoint_best.pt"
fi

# 2. Translate newstest2014. --required-batch-size-multiple 1: fairseq (main) silently drops a last
# batch smaller than it (default 8), i.e. up to 7 test sentences (fairseq issue #5036).
if [[ "${RESCORE:-0}" != 1 ]]; then
    [[ -f "$CHECKPOINT" ]] || die "$CHECKPOINT not found"
    NGPU="$(gpu_count)"
    log "translating newstest2014 with $(basename "$CHECKPOINT") -> $GEN"
    "$FAIRSEQ_BIN/fairseq-generate" "$DATA" --user-dir "$USER_DIR" \
        --source-lang "$SRC" --target-lang "$TGT" --gen-subset test \
        --path "$CHECKPOINT" --beam "${BEAM:-4}" --lenpen "${LENPEN:-0.6}" --remove-bpe \
        --batch-size 128 --required-batch-size-multiple 1 "$(device_flags "$NGPU")" "$@" \
        > "$GEN.part"
    mv "$GEN.part" "$GEN"
fi
tail -n 1 "$GEN" | grep -q BLEU || die "fairseq-generate did not finish: see $GEN"

TAB=$'\t'
# Hypotheses in test-set order (fairseq prints them in batch order).
hyps_in_order() {
    grep '^H-' "$GEN" | sed 's/^H-//' | sort -t "$TAB" -k 1,1n | cut -f 3
}
n_hyp="$(grep -c '^H-' "$GEN")"

# 3. Tokenised, compound-split BLEU. Reference: the tokenised newstest2014 of prepare (the T
# lines of fairseq-generate show <<unk>> for characters outside the dictionary).
compound_split() {
    perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g'
}
REF_TOK="$DATA/ref/test.tok.$TGT"
if [[ -f "$REF_TOK" ]]; then
    compound_split < "$REF_TOK" > "$GEN.ref"
else
    grep '^T-' "$GEN" | sed 's/^T-//' | sort -t "$TAB" -k 1,1n | cut -f 2 | compound_split > "$GEN.ref"
fi
hyps_in_order | compound_split > "$GEN.sys"
[[ "$(wc -l < "$GEN.ref")" -eq "$n_hyp" ]] \
    || die "$n_hyp hypotheses but $(wc -l < "$GEN.ref") references: wrong DATA?"
TOK_BLEU="$("$FAIRSEQ_BIN/fairseq-score" --sys "$GEN.sys" --ref "$GEN.ref" | grep 'BLEU')"

# 4. Detokenised sacreBLEU. Moses' detokenizer undoes the aggressive hyphen split (@-@) and the
# XML escapes of the tokenizer; sacremoses is used if the Moses scripts are not there.
if [[ -f "$MOSES_SCRIPTS/tokenizer/detokenizer.perl" ]]; then
    detok() { sed 's/ @-@ /-/g' | perl "$MOSES_SCRIPTS/tokenizer/detokenizer.perl" -q -l "$TGT"; }
elif "$PYTHON" -c 'import sacremoses' 2>/dev/null; then
    detok() {
        sed 's/ @-@ /-/g' | "$PYTHON" -c 'import sys; from sacremoses import MosesDetokenizer
d = MosesDetokenizer(lang=sys.argv[1])
for line in sys.stdin: print(d.detokenize(line.split()))' "$TGT"
    }
else
    die "no detokenizer: run prepare-wmt14en2$TGT.sh (it clones Moses), set MOSES_SCRIPTS, or
    $FAIRSEQ_BIN/pip install sacremoses"
fi
hyps_in_order | detok > "$GEN.detok"
REF_RAW="$DATA/ref/test.raw.$TGT"
if [[ -f "$REF_RAW" ]]; then
    SACRE="$("$FAIRSEQ_BIN/sacrebleu" "$REF_RAW" -i "$GEN.detok" -b -w 2)"
    SACRE_REF="$REF_RAW"
else
    SACRE="$("$FAIRSEQ_BIN/sacrebleu" -t wmt14/full -l "$PAIR" -i "$GEN.detok" -b -w 2 2>/dev/null)" \
        || die "no $REF_RAW, and sacrebleu could not fetch wmt14/full (no internet?)"
    SACRE_REF="sacrebleu -t wmt14/full -l $PAIR"
fi
SIG="$("$FAIRSEQ_BIN/sacrebleu" --version 2>/dev/null || true)"

{
    echo "model:      $SAVE_DIR"
    echo "checkpoint: $(basename "$CHECKPOINT")   beam ${BEAM:-4}, lenpen ${LENPEN:-0.6}"
    echo "sentences:  $n_hyp"
    echo "tokenised BLEU (compound split, fairseq-score): $TOK_BLEU"
    echo "detokenised sacreBLEU (13a, vs $SACRE_REF; $SIG): $SACRE"
} | tee "$SAVE_DIR/bleu.test.txt"
