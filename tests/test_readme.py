"""The README stays true: its Layout tree matches kit/, its links and anchors resolve, its imports run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])
# Lines of a tree entry: indentation (2 spaces a level), a path (a folder ends in "/"), then its description.
ENTRY = re.compile(r"^(?P<indent> *)(?P<path>\S+)(?:\s{2,}(?P<what>.+))?$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def layout_tree() -> dict[str, str]:
    """The Layout section's tree as {path relative to the repo: description}."""
    block = code_blocks(section(README.read_text(encoding="utf-8"), "Layout"), "text")[0]
    entries, stack = {}, []
    for number, line in enumerate(block.splitlines(), 1):
        if not line.strip():
            continue
        match = ENTRY.match(line)
        depth, rest = divmod(len(match["indent"]), 2)
        assert not rest and depth <= len(stack), f"Layout line {number}: indent by 2 spaces a level: {line!r}"
        del stack[depth:]
        path = "".join(stack) + match["path"]
        entries[path] = (match["what"] or "").strip()
        if path.endswith("/"):
            stack.append(match["path"])
    return entries


def kit_modules() -> set[str]:
    """Every module file in kit/ the tree must name (package `__init__`s are their folder's line)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "kit").rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }


def test_layout_names_every_kit_module():
    missing = sorted(kit_modules() - set(layout_tree()))
    assert not missing, f"README.md's Layout leaves out {missing}: add a line for each"


def test_layout_names_only_paths_that_exist():
    gone = sorted(path for path in layout_tree() if not (ROOT / path).exists())
    assert not gone, f"README.md's Layout names paths that do not exist: {gone}"


def test_every_layout_module_says_what_it_is():
    bare = sorted(path for path, what in layout_tree().items() if path.endswith(".py") and not what)
    assert not bare, f"README.md's Layout has no description for {bare}"


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in found:
            slug, n = f"{base}-{n}", n + 1
        found.add(slug)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_to_files_and_headings_that_exist(doc):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or (
            anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    assert not broken, f"{doc.name}: links to missing files or headings: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_paths_in_backticks_exist(doc):
    """`tests/…`, `kit/…`, `bench/…` and `docs/…` paths quoted in the docs name files that are there."""
    text = doc.read_text(encoding="utf-8")
    quoted = re.findall(r"`((?:tests|kit|bench|docs|configs)/[\w./-]+\.(?:py|md|toml|json))(?:::\w+)?`", text)
    gone = sorted({path for path in quoted if "*" not in path and not (ROOT / path).exists()})
    assert not gone, f"{doc.name} names files that do not exist: {gone}"


def test_readme_headings_are_in_order():
    """One title, then `##` sections; no heading skips a level."""
    text = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    levels = [len(h) for h in re.findall(r"^(#{1,6}) ", text, flags=re.M)]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), levels


def test_readme_has_no_issue_numbers():
    assert not re.findall(r"(?i)issue #?\d+|(?<![\w/&])#\d+\b", README.read_text(encoding="utf-8"))


def test_the_short_imports_of_the_layout_work():
    for block in code_blocks(section(README.read_text(encoding="utf-8"), "Layout"), "python"):
        exec(compile(block, "README.md", "exec"), {})
