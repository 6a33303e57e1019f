"""The Markdown documentation holds together: every relative link in the repository's *.md files
(README, docs/, examples/, results/) points to a file that exists, every #anchor into a Markdown
file names one of its headings, and the README stays short enough to read."""

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers import REPO

README_MAX_LINES = 220
FOLDERS = ("docs", "examples", "results")

# [text](target) and ![alt](target), the target optionally <...> and followed by a "title".
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference definitions), and src= / href= of inline HTML.
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")


def markdown_files():
    """The *.md files git knows of (tracked or new, not ignored); without git, a walk of the
    same places."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              "--", "*.md"], cwd=REPO, capture_output=True, text=True, check=True)
        names = [n for n in out.stdout.splitlines() if (REPO / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        names = ["README.md"] + [str(p.relative_to(REPO)) for folder in FOLDERS
                                 for p in (REPO / folder).rglob("*.md")]
    return sorted(n for n in names if n == "README.md" or n.split("/")[0] in FOLDERS)


def prose(text):
    """The text outside fenced code blocks and inline code spans (links there are code)."""
    lines, fenced = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if match and (fenced is None or match.group(1) == fenced):
            fenced = None if fenced else match.group(1)
            lines.append("")
            continue
        lines.append("" if fenced else CODE_SPAN.sub("", line))
    return "\n".join(lines)


def links(text):
    body = prose(text)
    found = [m.group(1) for m in INLINE_LINK.finditer(body)]
    found += [m.group(1) for m in REFERENCE.finditer(body)] + HTML.findall(body)
    return [target.strip("<>") for target in found]


def is_external(target):
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) is not None  # http:, https:, mailto:


def github_anchors(text):
    """The #anchors GitHub gives a Markdown file's headings (lowercase, punctuation dropped,
    spaces to hyphens, repeats numbered -1, -2, ...), plus explicit <a name/id> anchors."""
    anchors, seen = set(), {}
    for line in prose(text).splitlines():
        heading = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    anchors.update(re.findall(r"""<a\s+(?:name|id)\s*=\s*["']([^"']+)["']""", text))
    return anchors


FILES = markdown_files()


def test_the_documentation_is_found():
    assert "README.md" in FILES
    assert any(name.startswith("docs/") for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_every_relative_link_points_to_an_existing_file(name):
    source = REPO / name
    broken = []
    for target in links(source.read_text(encoding="utf-8")):
        if is_external(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / unquote(path)).resolve() if path else source
        if not resolved.exists():
            broken.append(f"{target} (no {resolved.relative_to(REPO.resolve())})"
                          if resolved.is_relative_to(REPO.resolve()) else target)
        elif anchor and resolved.suffix == ".md" and resolved.is_file():
            if anchor not in github_anchors(resolved.read_text(encoding="utf-8")):
                broken.append(f"{target} (no heading gives #{anchor})")
    assert not broken, f"{name}: broken links: " + "; ".join(broken)


def test_link_finder_reads_markdown_as_github_does():
    text = ("See [a](docs/a.md#x-y), ![plot](p.png \"title\"), [b](<c d.md>), `[no](code.md)`\n"
            "```\n[no](fenced.md)\n```\n[ref]: docs/ref.md\n<img src=\"img.png\">\n"
            "[web](https://example.org) [mail](mailto:a@b.c)\n")
    assert links(text) == ["docs/a.md#x-y", "p.png", "c d.md", "https://example.org",
                           "mailto:a@b.c", "docs/ref.md", "img.png"]
    assert [t for t in links(text) if not is_external(t)] == [
        "docs/a.md#x-y", "p.png", "c d.md", "docs/ref.md", "img.png"]
    assert github_anchors("# Why not 1.6x dynamicconv\n## The 3-minute run (results/x)\n"
                          "## Why not 1.6x dynamicconv\n") == {
        "why-not-16x-dynamicconv", "the-3-minute-run-resultsx", "why-not-16x-dynamicconv-1"}


def test_readme_stays_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/")
