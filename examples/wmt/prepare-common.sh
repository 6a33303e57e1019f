# The WMT'14 pipeline shared by prepare-wmt14en2de.sh and prepare-wmt14en2fr.sh (sourced, not run).
# It follows fairseq's examples/translation/prepare-wmt14en2{de,fr}.sh step by step: Moses
# punctuation normalisation, non-printing-character removal and aggressive tokenisation (-a) of
# the training corpora; newstest2014 from the sgm files; a validation set split off the training
# data (every Nth line); joint BPE (subword-nmt, 40k merges) learnt on the training data of both
# languages; clean-corpus-n.perl -ratio 1.5, lengths 1..250 (in BPE tokens) on train and valid;
# then fairseq-preprocess --joined-dictionary. Each step writes its output once (to a .part file,
# then renamed), so a re-run skips what is done and resumes after an interruption.
# shellcheck shell=bash

# Set by the caller: SRC TGT NAME VALID_EVERY URLS[] CORPORA[] TEST_PREFIX
# (e.g. "newstest2014-deen"), and optionally POST_EXTRACT (a function run in the download folder).

usage_common() {
    cat <<EOF
Options:
  --check-only   check the prerequisites and print the plan, download nothing
  -h, --help     this text
Environment: WORK_ROOT (text, default $WORK_ROOT), DATA_BIN_ROOT (default $DATA_BIN_ROOT),
  FAIRSEQ_BIN (default $FAIRSEQ_BIN), MOSES_SCRIPTS (default: clone mosesdecoder under WORK_ROOT),
  THREADS (default $THREADS), BPE_TOKENS (default 40000).
EOF
}

check_prerequisites() {
    need_cmd perl "Install perl (apt-get install perl): Moses' tokenizer is a perl script."
    need_cmd tar "Install tar."
    need_cmd gzip "Install gzip."
    command -v wget >/dev/null 2>&1 || command -v curl >/dev/null 2>&1 \
        || die "neither wget nor curl found: install one (apt-get install wget)"
    [[ -f "$MOSES_SCRIPTS/tokenizer/tokenizer.perl" ]] \
        || need_cmd git "Install git (apt-get install git), or set MOSES_SCRIPTS to a Moses scripts/ folder."
    need_fairseq fairseq-preprocess subword-nmt
}

print_plan() {
    local i
    echo "WMT'14 ${SRC}-${TGT} -> $NAME"
    echo "  downloads into:  $ORIG"
    for i in "${!URLS[@]}"; do echo "    ${URLS[i]}"; done
    echo "  text into:       $PREP"
    echo "  binarized into:  $DEST"
    echo "  Moses scripts:   $MOSES_SCRIPTS"
    echo "  BPE merges:      $BPE_TOKENS (joint, subword-nmt); validation: every ${VALID_EVERY}th training line"
}

# tokenize LANG: Moses normalisation + tokenisation of stdin, as fairseq's recipe.
tokenize() {
    perl "$MOSES_SCRIPTS/tokenizer/normalize-punctuation.perl" "$1" \
        | perl "$MOSES_SCRIPTS/tokenizer/remove-non-printing-char.perl" \
        | perl "$MOSES_SCRIPTS/tokenizer/tokenizer.perl" -threads "$THREADS" -a -l "$1" -q
}

# sgm_segments FILE: the text of each <seg> of an sgm file, one per line.
sgm_segments() {
    grep '<seg id' "$1" | sed -e 's/<seg id="[0-9]*">\s*//g' -e 's/\s*<\/seg>\s*//g'
}

prepare_wmt14() {
    local check_only=0
    while (( $# )); do
        case "$1" in
            --check-only) check_only=1 ;;
            -h | --help) usage; usage_common; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done

    BPE_TOKENS="${BPE_TOKENS:-40000}"
    ORIG="$WORK_ROOT/wmt/orig"
    PREP="$WORK_ROOT/wmt/$NAME"
    DEST="$DATA_BIN_ROOT/$NAME"
    local tmp="$PREP/tmp" lang="${SRC}-${TGT}" l f i

    check_prerequisites
    print_plan
    (( check_only )) && { echo "prerequisites OK (--check-only: nothing downloaded)"; return 0; }
    if [[ -f "$DEST/.prepared" ]]; then
        log "$DEST is already prepared (delete it to redo)"
        return 0
    fi

    get_moses
    mkdir -p "$ORIG" "$tmp"

    # 1. Download and extract.
    for i in "${!URLS[@]}"; do
        fetch "${URLS[i]}" "$ORIG/$(basename "${URLS[i]}")"
        extract "$ORIG/$(basename "${URLS[i]}")" "$ORIG"
    done
    if declare -F post_extract >/dev/null; then (cd "$ORIG" && post_extract); fi
    for f in "${CORPORA[@]}"; do
        for l in "$SRC" "$TGT"; do
            [[ -f "$ORIG/$f.$l" ]] || die "expected corpus file $ORIG/$f.$l is missing: a download \
was incomplete? Delete the archive it comes from and re-run."
        done
    done

    # 2. Training data: normalise, tokenise, concatenate the corpora.
    for l in "$SRC" "$TGT"; do
        f="$tmp/train.tags.$lang.tok.$l"
        [[ -s "$f" ]] && continue
        log "tokenising the training data ($l)"
        local c
        for c in "${CORPORA[@]}"; do cat "$ORIG/$c.$l"; done | tokenize "$l" > "$f.part"
        mv "$f.part" "$f"
    done

    # 3. newstest2014 (test): tokenised as fairseq does (curly apostrophes straightened first);
    # the raw reference is kept for detokenised sacreBLEU, the tokenised one for tokenised BLEU.
    for l in "$SRC" "$TGT"; do
        [[ -s "$tmp/test.$l" ]] && continue
        local t=src
        [[ "$l" == "$TGT" ]] && t=ref
        f="$ORIG/test-full/$TEST_PREFIX-$t.$l.sgm"
        [[ -f "$f" ]] || die "$f is missing: test-full.tgz incomplete?"
        sgm_segments "$f" > "$tmp/test.raw.$l"
        sed -e "s/\’/\'/g" "$tmp/test.raw.$l" \
            | perl "$MOSES_SCRIPTS/tokenizer/tokenizer.perl" -threads "$THREADS" -a -l "$l" -q \
            > "$tmp/test.$l.part"
        mv "$tmp/test.$l.part" "$tmp/test.$l"
    done

    # 4. Validation: every VALID_EVERY-th training pair (fairseq's split).
    for l in "$SRC" "$TGT"; do
        [[ -s "$tmp/train.$l" && -s "$tmp/valid.$l" ]] && continue
        log "splitting train/valid ($l)"
        awk -v n="$VALID_EVERY" 'NR % n == 0' "$tmp/train.tags.$lang.tok.$l" > "$tmp/valid.$l"
        awk -v n="$VALID_EVERY" 'NR % n != 0' "$tmp/train.tags.$lang.tok.$l" > "$tmp/train.$l.part"
        mv "$tmp/train.$l.part" "$tmp/train.$l"
    done

    # 5. Joint BPE, learnt on the training data of both languages.
    if [[ ! -s "$PREP/code" ]]; then
        log "learning $BPE_TOKENS BPE merges (slow: hours on the full En-Fr corpus)"
        cat "$tmp/train.$SRC" "$tmp/train.$TGT" \
            | "$FAIRSEQ_BIN/subword-nmt" learn-bpe -s "$BPE_TOKENS" > "$PREP/code.part"
        mv "$PREP/code.part" "$PREP/code"
    fi
    for l in "$SRC" "$TGT"; do
        for f in train valid test; do
            [[ -s "$tmp/bpe.$f.$l" ]] && continue
            log "applying BPE to $f.$l"
            "$FAIRSEQ_BIN/subword-nmt" apply-bpe -c "$PREP/code" --num-workers "$THREADS" \
                < "$tmp/$f.$l" > "$tmp/bpe.$f.$l.part"
            mv "$tmp/bpe.$f.$l.part" "$tmp/bpe.$f.$l"
        done
    done

    # 6. Clean train/valid (ratio 1.5, 1..250 tokens); the test set is kept whole.
    for f in train valid; do
        [[ -s "$PREP/$f.$SRC" && -s "$PREP/$f.$TGT" ]] && continue
        perl "$MOSES_SCRIPTS/training/clean-corpus-n.perl" -ratio 1.5 "$tmp/bpe.$f" "$SRC" "$TGT" \
            "$PREP/$f" 1 250
    done
    for l in "$SRC" "$TGT"; do cp "$tmp/bpe.test.$l" "$PREP/test.$l"; done

    # 7. Binarize with one dictionary for both languages (--share-all-embeddings needs it).
    log "fairseq-preprocess -> $DEST"
    rm -rf "$DEST"
    "$FAIRSEQ_BIN/fairseq-preprocess" --source-lang "$SRC" --target-lang "$TGT" \
        --trainpref "$PREP/train" --validpref "$PREP/valid" --testpref "$PREP/test" \
        --destdir "$DEST" --thresholdsrc 0 --thresholdtgt 0 --joined-dictionary \
        --workers "$THREADS"
    mkdir -p "$DEST/ref"
    cp "$PREP/code" "$DEST/code"
    cp "$tmp/test.raw.$TGT" "$DEST/ref/test.raw.$TGT"
    cp "$tmp/test.$TGT" "$DEST/ref/test.tok.$TGT"
    cp "$tmp/test.raw.$SRC" "$DEST/ref/test.raw.$SRC"
    touch "$DEST/.prepared"
    log "done: $DEST ($(wc -l < "$PREP/train.$SRC") training pairs)"
}
