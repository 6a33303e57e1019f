# Helpers sourced by the recipes of examples/wmt/ and examples/lm1b/ (not a script of its own).
# shellcheck shell=bash

# The repository root, whatever the caller's working directory.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The plugin folder, for --user-dir (used by the scripts that source this file).
# shellcheck disable=SC2034
USER_DIR="$REPO/fairseq_synth"
# fairseq's commands: the repository's venv by default (created by scripts/setup.sh).
FAIRSEQ_BIN="${FAIRSEQ_BIN:-$REPO/.venv/bin}"
PYTHON="${PYTHON:-$FAIRSEQ_BIN/python}"
# Text processing and tools live under data/ (git-ignored); binarized data under data-bin/.
WORK_ROOT="${WORK_ROOT:-$REPO/data}"
DATA_BIN_ROOT="${DATA_BIN_ROOT:-$REPO/data-bin}"
CHECKPOINT_ROOT="${CHECKPOINT_ROOT:-$REPO/checkpoints}"
THREADS="${THREADS:-$(nproc 2>/dev/null || echo 4)}"
# The Synthesizer variants of the presets (VARIANTS in fairseq_synth/models/architectures.py),
# as the recipes name models: transformer_synth_<V>_wmt_en_de, transformer_lm_synth_<V>_gbw, ...
# shellcheck disable=SC2034
SYNTH_VARIANTS=(random fixed_random dense factorized_random factorized_dense random_vanilla
                dense_vanilla random_dense)

# print_usage FILE: the header comment of FILE from its "Usage:" line to the first non-comment.
print_usage() {
    awk '/^# Usage:/ {on = 1} on && !/^#/ {exit} on {sub(/^# ?/, ""); print}' "$1"
}

die() {
    echo "error: $*" >&2
    exit 1
}

log() {
    echo "[$(date +%H:%M:%S)] $*" >&2
}

# need_cmd CMD HINT: fail early, saying how to get CMD.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not found. $2"
}

need_fairseq() {
    local cmd
    for cmd in "$@"; do
        [[ -x "$FAIRSEQ_BIN/$cmd" ]] || die "$FAIRSEQ_BIN/$cmd not found. Run 'bash scripts/setup.sh' \
at the repository root ($REPO), or set FAIRSEQ_BIN to the folder holding fairseq's commands."
    done
}

# fetch URL DEST: download once (to DEST.part, then renamed), so an interrupted run resumes.
fetch() {
    local url="$1" dest="$2"
    if [[ -s "$dest" ]]; then
        log "$(basename "$dest") already downloaded, skipping"
        return
    fi
    log "downloading $url"
    if command -v wget >/dev/null 2>&1; then
        wget --continue --tries 3 -O "$dest.part" "$url" || die "download of $url failed"
    elif command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -C - -o "$dest.part" "$url" || die "download of $url failed"
    else
        die "neither wget nor curl found: install one (apt-get install wget)"
    fi
    mv "$dest.part" "$dest"
}

# extract ARCHIVE DIR: unpack once (a marker file records success).
extract() {
    local archive="$1" dir="$2" marker
    marker="$dir/.$(basename "$archive").extracted"
    [[ -f "$marker" ]] && return
    log "extracting $(basename "$archive")"
    case "$archive" in
        *.tgz | *.tar.gz) tar -xzf "$archive" -C "$dir" ;;
        *.tar) tar -xf "$archive" -C "$dir" ;;
        *) die "don't know how to extract $archive" ;;
    esac
    touch "$marker"
}

# Moses' perl scripts (tokenizer, cleaning, detokenizer), cloned as fairseq's recipes do.
MOSES_SCRIPTS="${MOSES_SCRIPTS:-$WORK_ROOT/tools/mosesdecoder/scripts}"
get_moses() {
    [[ -f "$MOSES_SCRIPTS/tokenizer/tokenizer.perl" ]] && return
    need_cmd git "Install git (apt-get install git), or clone https://github.com/moses-smt/mosesdecoder \
yourself and set MOSES_SCRIPTS to its scripts/ folder."
    log "cloning Moses (tokenizer scripts) into $WORK_ROOT/tools/mosesdecoder"
    mkdir -p "$WORK_ROOT/tools"
    git clone --depth 1 https://github.com/moses-smt/mosesdecoder.git "$WORK_ROOT/tools/mosesdecoder" \
        || die "git clone of mosesdecoder failed (no internet?)"
}

# How many CUDA devices torch sees (0 on a CPU-only machine). NGPU overrides.
gpu_count() {
    if [[ -n "${NGPU:-}" ]]; then
        echo "$NGPU"
        return
    fi
    "$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}

# device_flags NGPU: --fp16 on GPUs (as fairseq's WMT recipes), --cpu otherwise.
device_flags() {
    if (( $1 > 0 )); then
        echo "--fp16"
    else
        echo "--cpu"
    fi
}

# update_freq TOKENS_PER_UPDATE MAX_TOKENS NGPU: gradient accumulation that keeps the effective
# batch (tokens per optimizer step) the same on any number of devices.
update_freq() {
    local total="$1" per="$2" devices="$3"
    (( devices < 1 )) && devices=1
    local f=$(( (total + per * devices - 1) / (per * devices) ))
    (( f < 1 )) && f=1
    echo "$f"
}
