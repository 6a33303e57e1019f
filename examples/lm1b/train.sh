#!/usr/bin/env bash
# Train one language model on One Billion Word: every Synthesizer variant (decoder-only,
# transformer_lm_synth_<V>_gbw, fairseq's transformer_lm_gbw sizes) and fairseq's
# transformer_lm_gbw, lightconv_lm_gbw (LightConv) and lightconv_lm_gbw with dynamic convolutions,
# all with the SAME data and flags: only --arch (and the conv type) differs.
#
# Usage: bash examples/lm1b/train.sh MODEL [extra fairseq-train arguments]
#        bash examples/lm1b/train.sh --list
# MODEL is a name of the list (random, dense_vanilla, transformer, dynamicconv, ...) or any
# fairseq LM architecture; extra arguments come last and win (e.g. --max-update 200000).
# Environment: DATA (default data-bin/lm1b; data-bin/lm1b_bpe32000 after prepare.sh --bpe 32000),
#   SAVE_DIR (default checkpoints/<data>/MODEL), TOKENS_PER_SAMPLE (default 256, at most
#   --synth-max-len), TOKENS_PER_UPDATE (default 65536), MAX_TOKENS (per device, default 4096),
#   MAX_UPDATE (default 100000), LR (default 5e-4), SEED (default 1), NGPU, FAIRSEQ_BIN,
#   ADAPTIVE (auto | 1 | 0: adaptive input/softmax, auto = for vocabularies over 100k words),
#   ADAPTIVE_CUTOFF (default 60000,100000,640000).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../wmt/lib.sh
source "$HERE/../wmt/lib.sh"

usage() {
    print_usage "${BASH_SOURCE[0]}"
}

list_models() {
    local v
    echo "Synthesizer LMs (model synth_transformer_lm, transformer_lm_gbw sizes):"
    for v in "${SYNTH_VARIANTS[@]}"; do
        printf '  %-18s --arch transformer_lm_synth_%s_gbw\n' "$v" "$v"
    done
    echo "fairseq baselines:"
    printf '  %-18s --arch %s\n' transformer transformer_lm_gbw
    printf '  %-18s --arch %s\n' lightconv "lightconv_lm_gbw --decoder-conv-type lightweight"
    printf '  %-18s --arch %s\n' dynamicconv "lightconv_lm_gbw --decoder-conv-type dynamic"
    echo "Anything else is passed as --arch unchanged."
}

(( $# >= 1 )) || { usage >&2; exit 2; }
case "$1" in
    -h | --help) usage; exit 0 ;;
    --list) list_models; exit 0 ;;
esac
MODEL="$1"
shift

case "$MODEL" in
    transformer) MODEL_ARGS=(--arch transformer_lm_gbw) ;;
    lightconv) MODEL_ARGS=(--arch lightconv_lm_gbw --decoder-conv-type lightweight) ;;
    dynamicconv) MODEL_ARGS=(--arch lightconv_lm_gbw --decoder-conv-type dynamic) ;;
    -*) die "the first argument is the model (see --list), got option '$MODEL'" ;;
    *)
        if [[ " ${SYNTH_VARIANTS[*]} " == *" $MODEL "* ]]; then
            MODEL_ARGS=(--arch "transformer_lm_synth_${MODEL}_gbw")
        else
            MODEL_ARGS=(--arch "$MODEL")
        fi
        ;;
esac

DATA="${DATA:-$DATA_BIN_ROOT/lm1b}"
if [[ ! -f "$DATA/dict.txt" ]]; then
    die "no binarized data in $DATA. Prepare it first (needs internet, ~1 CPU hour):
    bash $HERE/prepare.sh            # words (fairseq's GBW setup) -> data-bin/lm1b
    bash $HERE/prepare.sh --bpe 32000  # subwords -> data-bin/lm1b_bpe32000 (then DATA=...)"
fi
need_fairseq fairseq-train

# Vocabulary-dependent, identical for every model: a ~800k-word vocabulary needs adaptive input
# and softmax (Baevski & Auli's GBW setup, cutoffs 60k/100k/640k); subwords use a tied softmax.
VOCAB="$(wc -l < "$DATA/dict.txt")"
ADAPTIVE="${ADAPTIVE:-auto}"
if [[ "$ADAPTIVE" == auto ]]; then
    if (( VOCAB > 100000 )); then ADAPTIVE=1; else ADAPTIVE=0; fi
fi
if [[ "$ADAPTIVE" == 1 ]]; then
    CUTOFF="${ADAPTIVE_CUTOFF:-60000,100000,640000}"
    VOCAB_ARGS=(--adaptive-input --adaptive-input-cutoff "$CUTOFF" --adaptive-input-factor 4
                --adaptive-softmax-cutoff "$CUTOFF" --adaptive-softmax-factor 4
                --tie-adaptive-weights --criterion adaptive_loss)
else
    VOCAB_ARGS=(--share-decoder-input-output-embed --criterion cross_entropy)
fi

NGPU="$(gpu_count)"
TOKENS_PER_UPDATE="${TOKENS_PER_UPDATE:-65536}"
MAX_TOKENS="${MAX_TOKENS:-4096}"
UPDATE_FREQ="$(update_freq "$TOKENS_PER_UPDATE" "$MAX_TOKENS" "$NGPU")"
TOKENS_PER_SAMPLE="${TOKENS_PER_SAMPLE:-256}"
SAVE_DIR="${SAVE_DIR:-$CHECKPOINT_ROOT/$(basename "$DATA")/$MODEL}"
if (( NGPU == 0 )); then
    echo "warning: no GPU found; training an LM1B model on CPU would take months." \
         "Continuing (useful only for smoke tests with --max-update)." >&2
fi

# Identical for every model: fairseq's language-model recipe (Adam (0.9, 0.98), weight decay
# 0.01, inverse square-root schedule, 4000 warm-up updates, peak 5e-4, dropout 0.1).
# One sentence per sample (--sample-break-mode eos): LM1B's sentences are shuffled, so there is
# no document context to carry over. --tokens-per-sample bounds a sample's length; it must not
# exceed --synth-max-len (256 by default): Random and Dense alignments are (L, L) / width-L
# matrices, and fairseq skips longer samples (a handful of LM1B's 30M training sentences).
COMMON_ARGS=(
    "$DATA"
    --user-dir "$USER_DIR"
    --task language_modeling --tokens-per-sample "$TOKENS_PER_SAMPLE" --sample-break-mode eos
    --skip-invalid-size-inputs-valid-test
    --dropout 0.1
    --optimizer adam --adam-betas '(0.9, 0.98)' --weight-decay 0.01 --clip-norm 0.0
    --lr "${LR:-5e-4}" --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07
    --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ"
    --max-update "${MAX_UPDATE:-100000}"
    --save-dir "$SAVE_DIR" --save-interval-updates 2000 --keep-interval-updates 10
    --no-epoch-checkpoints
    --seed "${SEED:-1}" --ddp-backend legacy_ddp
    --log-format simple --log-interval 100
    "$(device_flags "$NGPU")"
    "${VOCAB_ARGS[@]}"
)

mkdir -p "$SAVE_DIR"
log "$MODEL on $(basename "$DATA") (vocabulary $VOCAB, adaptive=$ADAPTIVE): ${NGPU} GPU(s);" \
    "--max-tokens $MAX_TOKENS x --update-freq $UPDATE_FREQ (~$TOKENS_PER_UPDATE tokens per update)" \
    "unless the extra arguments say otherwise; checkpoints in $SAVE_DIR"
set -x
"$FAIRSEQ_BIN/fairseq-train" "${COMMON_ARGS[@]}" "${MODEL_ARGS[@]}" "$@" 2>&1 \
    | tee -a "$SAVE_DIR/train.log"
