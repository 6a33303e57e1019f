#!/usr/bin/env bash
# Test-set perplexity of a One Billion Word language model with fairseq-eval-lm.
# By default every test sentence is scored on its own (--sample-break-mode eos, no context from
# the previous sentence: LM1B's sentences are shuffled, so earlier ones are not context), its
# end-of-sentence token included, the usual LM1B protocol. CONTEXT_WINDOW=N instead scores the
# test set as one stream in blocks of --tokens-per-sample, each token seeing at least N earlier
# tokens (fairseq's --context-window; N < TOKENS_PER_SAMPLE <= --synth-max-len).
# With BPE data (prepare.sh --bpe N) both the subword and the word-level perplexity
# (--remove-bpe merges a word's pieces) are reported.
#
# Usage: bash examples/lm1b/eval.sh MODEL|CHECKPOINT_DIR [extra fairseq-eval-lm arguments]
# Environment: DATA (default data-bin/lm1b), CHECKPOINT (default checkpoint_best.pt), AVERAGE
#   (N > 0: average the last N update checkpoints first, default 0), SUBSET (default test),
#   TOKENS_PER_SAMPLE (default 256), CONTEXT_WINDOW (default 0), NGPU, FAIRSEQ_BIN.
# Writes ppl.<subset>.txt into the checkpoint folder.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../wmt/lib.sh
source "$HERE/../wmt/lib.sh"

usage() {
    print_usage "${BASH_SOURCE[0]}"
}

(( $# >= 1 )) || { usage >&2; exit 2; }
case "$1" in -h | --help) usage; exit 0 ;; esac

DATA="${DATA:-$DATA_BIN_ROOT/lm1b}"
if [[ -d "$1" ]]; then SAVE_DIR="$1"; else SAVE_DIR="$CHECKPOINT_ROOT/$(basename "$DATA")/$1"; fi
shift
[[ -d "$SAVE_DIR" ]] || die "no checkpoint folder $SAVE_DIR: train first, e.g.
    bash $HERE/train.sh $(basename "$SAVE_DIR")"
[[ -f "$DATA/dict.txt" ]] || die "no binarized data in $DATA: run bash $HERE/prepare.sh"
need_fairseq fairseq-eval-lm

SUBSET="${SUBSET:-test}"
TOKENS_PER_SAMPLE="${TOKENS_PER_SAMPLE:-256}"
CONTEXT_WINDOW="${CONTEXT_WINDOW:-0}"
AVERAGE="${AVERAGE:-0}"
if (( AVERAGE > 0 )); then
    CHECKPOINT="$SAVE_DIR/checkpoint.avg$AVERAGE.pt"
    "$PYTHON" "$HERE/../wmt/average_checkpoints.py" --inputs "$SAVE_DIR" \
        --num-update-checkpoints "$AVERAGE" --output "$CHECKPOINT"
else
    CHECKPOINT="$SAVE_DIR/${CHECKPOINT:-checkpoint_best.pt}"
fi
[[ -f "$CHECKPOINT" ]] || die "$CHECKPOINT not found"

if (( CONTEXT_WINDOW > 0 )); then
    (( CONTEXT_WINDOW < TOKENS_PER_SAMPLE )) \
        || die "CONTEXT_WINDOW ($CONTEXT_WINDOW) must be below TOKENS_PER_SAMPLE ($TOKENS_PER_SAMPLE)"
    MODE_ARGS=(--sample-break-mode none --context-window "$CONTEXT_WINDOW")
    MODE="stream, context window $CONTEXT_WINDOW"
else
    MODE_ARGS=(--sample-break-mode eos)
    MODE="sentence by sentence"
fi

NGPU="$(gpu_count)"
EVAL_ARGS=(
    "$DATA" --user-dir "$USER_DIR" --task language_modeling
    --path "$CHECKPOINT" --gen-subset "$SUBSET"
    --tokens-per-sample "$TOKENS_PER_SAMPLE" "${MODE_ARGS[@]}"
    --max-tokens 8192 --log-format simple
    "$(device_flags "$NGPU")"
)

# Tokens the subset holds (each sentence's words plus its end-of-sentence token): fairseq-eval-lm
# silently skips samples longer than the model's max positions, so compare.
EXPECTED="$("$PYTHON" - "$DATA" "$SUBSET" <<'EOF'
import sys
from fairseq.data import Dictionary, data_utils
data, subset = sys.argv[1:]
d = Dictionary.load(f"{data}/dict.txt")
print(int(data_utils.load_indexed_dataset(f"{data}/{subset}", d).sizes.sum()))
EOF
)"

# run_eval LOG [extra]: one fairseq-eval-lm run; prints its "Loss ..., Perplexity ..." line.
run_eval() {
    local out="$1"
    shift
    "$FAIRSEQ_BIN/fairseq-eval-lm" "${EVAL_ARGS[@]}" "$@" > "$out" 2>&1 \
        || { tail -n 20 "$out" >&2; die "fairseq-eval-lm failed, log: $out"; }
    grep -o 'Loss (base 2): .*' "$out" | tail -n 1
}

OUT="$SAVE_DIR/ppl.$SUBSET.txt"
log "fairseq-eval-lm $(basename "$CHECKPOINT") on $SUBSET ($MODE)"
RESULT="$(run_eval "$SAVE_DIR/eval_lm.$SUBSET.log" "$@")"
EVALUATED="$(grep -o 'Evaluated [0-9,]* tokens' "$SAVE_DIR/eval_lm.$SUBSET.log" | tail -n 1 \
             | tr -dc '0-9')"
{
    echo "model:      $SAVE_DIR"
    echo "checkpoint: $(basename "$CHECKPOINT"), $SUBSET of $(basename "$DATA"), $MODE"
    echo "tokens:     ${EVALUATED:-?} evaluated of $EXPECTED"
    echo "per token:  $RESULT"
} > "$OUT"
if [[ -f "$DATA/code" ]]; then
    WORD_RESULT="$(run_eval "$SAVE_DIR/eval_lm.$SUBSET.words.log" --remove-bpe "$@")"
    echo "per word:   $WORD_RESULT (--remove-bpe: a word's BPE pieces merged)" >> "$OUT"
fi
if [[ "${EVALUATED:-0}" != "$EXPECTED" ]]; then
    echo "warning: ${EVALUATED:-?} of $EXPECTED tokens were scored: fairseq-eval-lm skipped samples" \
         "longer than the model's max positions (min(TOKENS_PER_SAMPLE, --synth-max-len))" | tee -a "$OUT" >&2
fi
cat "$OUT"
