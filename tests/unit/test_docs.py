"""The repository's documentation stands on its own.

- No tracked file points at a design document that is not in the repository
  ("DESIGN §4", "DESIGN.md", a path on the team's machines): what such a
  reference stood for must be written in ``docs/``.
- Every relative link in ``docs/*.md`` and ``README.md`` names a file of the
  repository, and every ``#anchor`` names a heading of the file it points to.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", "__pycache__", "out"}
OUTSIDE = re.compile(r"DESIGN\s*§|DESIGN\.md|/work/(?:shared|helpers|notes)/")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


@functools.cache
def _tracked() -> tuple[Path, ...]:
    """Tracked files (``git ls-files``), or every file outside build and venv dirs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True, timeout=30).stdout
        paths = [REPO / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = []
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            paths += [Path(root) / f for f in files]
    return tuple(p for p in paths if p.is_file())


def _text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def _pointers(text: str) -> list[str]:
    """Lines of ``text`` that point at a design document outside the repository."""
    here = any(p.name == "DESIGN.md" for p in _tracked())
    return [line.strip() for line in text.splitlines()
            if OUTSIDE.search(line) and not ("DESIGN.md" in line and here)]


def test_the_pattern_catches_what_it_must() -> None:
    assert _pointers('help="Print one JSON object (DESIGN §10) instead"')
    assert _pointers("see DESIGN.md, section 4")
    assert _pointers("# the table in /work/shared/DESIGN.md")
    assert not _pointers("DESIGN_TOML = '''")
    assert not _pointers("see docs/formats.md")


def test_no_tracked_file_points_at_a_design_document_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    found = []
    for path in _tracked():
        if path.resolve() == me:
            continue
        text = _text(path)
        if text is None:
            continue
        found += [f"{path.relative_to(REPO)}: {line}" for line in _pointers(text)]
    assert not found, ("these point at a design document that is not in the repository; "
                       "describe what they need in docs/ and point there:\n" + "\n".join(found))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(text):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _outside_fences(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            lines.append(line)
    return lines


def _links(path: Path) -> list[str]:
    out = []
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
        out += LINK.findall(line)
    return out


def _broken(path: Path, root: Path = REPO) -> list[str]:
    """Links of ``path`` that name no file under ``root``, or no heading of that file."""
    bad = []
    root = root.resolve()
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        where = path.relative_to(root)
        if not dest.exists() or root not in (dest, *dest.parents):
            bad.append(f"{where}: {target} (no such file in the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text("utf-8")):
            bad.append(f"{where}: {target} (no heading #{anchor} in {dest.name})")
    return bad


DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_of_the_docs_resolves(path: Path) -> None:
    broken = _broken(path)
    assert not broken, "\n".join(broken)


def test_the_link_check_catches_broken_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n## `p2phpo simulate --json`\n## x\n## x\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("[ok](b.md#p2phpo-simulate---json) [ok](b.md#x-1) [ok](../outside.md)\n"
                   "[web](https://example.org/x) `[code](nowhere.md)`\n"
                   "[gone](missing.md) [bad anchor](b.md#nowhere)\n"
                   "```\n[in a fence](fenced.md)\n```\n")
    assert _broken(doc, tmp_path) == ["docs/a.md: missing.md (no such file in the repository)",
                                      "docs/a.md: b.md#nowhere (no heading #nowhere in b.md)"]
    outside = [b for b in _broken(doc, tmp_path / "docs") if "outside.md" in b]
    assert outside == ["a.md: ../outside.md (no such file in the repository)"]


def test_the_docs_index_lists_every_docs_page() -> None:
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    listed = {t.partition("#")[0] for t in LINK.findall(index)}
    missing = [p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md"
               and p.name not in listed]
    assert not missing, f"docs/README.md does not list {missing}"
