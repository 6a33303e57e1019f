#!/usr/bin/env bash
# Train one model on WMT'14 En-De (or En-Fr with PAIR=en-fr): every Synthesizer variant and
# fairseq's Transformer, LightConv and DynamicConv, all base size, with the SAME data and flags
# (optimizer, schedule, batch, regularisation, stopping, checkpointing): only --arch (and the
# conv type of lightconv/dynamicconv) differs, so the comparison is fair.
#
# Usage: bash examples/wmt/train.sh MODEL [extra fairseq-train arguments]
#        bash examples/wmt/train.sh --list
# MODEL is a name of the list (random, dense, random_vanilla, transformer, dynamicconv, ...) or
# any fairseq architecture (e.g. synth_random_big); extra arguments come last and win, e.g.
#   bash examples/wmt/train.sh random_vanilla --max-update 200000
# Environment: PAIR (en-de | en-fr, default en-de), DATA (default data-bin/wmt14_en_de),
#   SAVE_DIR (default checkpoints/wmt14_en_de/MODEL), TOKENS_PER_UPDATE (default 32768),
#   MAX_TOKENS (per device and step, default 4096), MAX_UPDATE (default 100000), LR (default 7e-4),
#   SEED (default 1), NGPU (default: all GPUs torch sees; 0 means CPU), FAIRSEQ_BIN.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

usage() {
    print_usage "${BASH_SOURCE[0]}"
}

list_models() {
    local v
    echo "Synthesizer (model synth_transformer, base size):"
    for v in "${SYNTH_VARIANTS[@]}"; do
        printf '  %-18s --arch %s\n' "$v" "$(synth_arch "$v")"
    done
    echo "fairseq baselines (base size):"
    printf '  %-18s --arch %s\n' transformer transformer_wmt_en_de
    printf '  %-18s --arch %s\n' lightconv \
        "lightconv_wmt_en_de --encoder-conv-type lightweight --decoder-conv-type lightweight"
    printf '  %-18s --arch %s\n' dynamicconv \
        "lightconv_wmt_en_de --encoder-conv-type dynamic --decoder-conv-type dynamic"
    echo "Anything else is passed as --arch unchanged (e.g. synth_random_big)."
}

PAIR="${PAIR:-en-de}"
case "$PAIR" in
    en-de | en-fr) ;;
    *) die "PAIR must be en-de or en-fr, got '$PAIR'" ;;
esac
NAME="wmt14_${PAIR/-/_}"

# The Synthesizer preset of the pair; both are base size (the paper trains En-Fr at base size).
synth_arch() {
    echo "transformer_synth_${1}_wmt_${PAIR/-/_}"
}

(( $# >= 1 )) || { usage >&2; exit 2; }
case "$1" in
    -h | --help) usage; exit 0 ;;
    --list) list_models; exit 0 ;;
esac
MODEL="$1"
shift

MODEL_ARGS=()
case "$MODEL" in
    transformer) MODEL_ARGS=(--arch transformer_wmt_en_de) ;;
    lightconv) MODEL_ARGS=(--arch lightconv_wmt_en_de
                           --encoder-conv-type lightweight --decoder-conv-type lightweight) ;;
    dynamicconv) MODEL_ARGS=(--arch lightconv_wmt_en_de
                             --encoder-conv-type dynamic --decoder-conv-type dynamic) ;;
    -*) die "the first argument is the model (see --list), got option '$MODEL'" ;;
    *)
        if [[ " ${SYNTH_VARIANTS[*]} " == *" $MODEL "* ]]; then
            MODEL_ARGS=(--arch "$(synth_arch "$MODEL")")
        else
            MODEL_ARGS=(--arch "$MODEL")
        fi
        ;;
esac

DATA="${DATA:-$DATA_BIN_ROOT/$NAME}"
if [[ ! -f "$DATA/dict.${PAIR%-*}.txt" ]]; then
    die "no binarized data in $DATA. Prepare it first (needs internet, a few CPU hours):
    bash $HERE/prepare-wmt14en2${PAIR#*-}.sh
or point DATA at a fairseq-preprocess'ed ${PAIR} folder."
fi
need_fairseq fairseq-train

NGPU="$(gpu_count)"
TOKENS_PER_UPDATE="${TOKENS_PER_UPDATE:-32768}"
MAX_TOKENS="${MAX_TOKENS:-4096}"
UPDATE_FREQ="$(update_freq "$TOKENS_PER_UPDATE" "$MAX_TOKENS" "$NGPU")"
SAVE_DIR="${SAVE_DIR:-$CHECKPOINT_ROOT/$NAME/$MODEL}"
if (( NGPU == 0 )); then
    echo "warning: no GPU found; training a base model on WMT'14 on CPU would take months." \
         "Continuing (useful only for smoke tests with --max-update)." >&2
fi

# Identical for every model. Vaswani et al.'s base recipe in fairseq's spelling: Adam (0.9, 0.98),
# inverse square-root schedule with 4000 warm-up steps and peak 7e-4 (= 512^-0.5 * 4000^-0.5),
# label smoothing 0.1, dropout 0.1, ~32k tokens per update, 100k updates, shared embeddings.
COMMON_ARGS=(
    "$DATA"
    --user-dir "$USER_DIR"
    --task translation --source-lang "${PAIR%-*}" --target-lang "${PAIR#*-}"
    --share-all-embeddings --dropout 0.1
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --weight-decay 0.0
    --lr "${LR:-7e-4}" --lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1
    --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ"
    --max-update "${MAX_UPDATE:-100000}"
    --save-dir "$SAVE_DIR" --save-interval-updates 1000 --keep-interval-updates 20
    --keep-last-epochs 5
    --seed "${SEED:-1}" --ddp-backend legacy_ddp
    --log-format simple --log-interval 100
    "$(device_flags "$NGPU")"
)

mkdir -p "$SAVE_DIR"
log "$MODEL on $NAME: ${NGPU} GPU(s); --max-tokens $MAX_TOKENS x --update-freq $UPDATE_FREQ" \
    "(~$TOKENS_PER_UPDATE tokens per update) unless the extra arguments say otherwise;" \
    "checkpoints in $SAVE_DIR"
set -x
"$FAIRSEQ_BIN/fairseq-train" "${COMMON_ARGS[@]}" "${MODEL_ARGS[@]}" "$@" 2>&1 \
    | tee -a "$SAVE_DIR/train.log"
