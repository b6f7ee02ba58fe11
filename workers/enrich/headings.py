"""Where a prose document's headings are: Markdown (ATX and setext), reStructuredText, or none.

:func:`doc_format` names a document's format by its extension; :func:`find_headings` lists its
headings with their levels, skipping fenced code and front matter. :mod:`workers.enrich.docs` cuts
sections at them. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FENCE", "Heading", "doc_format", "find_headings"]

_MARKDOWN_EXTS = frozenset({"md", "markdown", "mdown", "mkd", "mdx"})
_RST_EXTS = frozenset({"rst", "rest"})
# data and config files: a "# comment" there is not a heading, so no heading detection at all
_DATA_EXTS = frozenset(
    {"yaml", "yml", "toml", "ini", "cfg", "conf", "json", "jsonl", "xml", "csv", "tsv", "log", "env", "lock"}
)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# an RST adornment: one punctuation character repeated (3+ so a stray "--" is not a heading)
_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")


def doc_format(path: str) -> str:
    """``"markdown"``, ``"rst"``, ``"data"`` (config/data: no headings) or ``"text"``, by extension."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _MARKDOWN_EXTS:
        return "markdown"
    if ext in _RST_EXTS:
        return "rst"
    return "data" if ext in _DATA_EXTS else "text"


@dataclass(frozen=True)
class Heading:
    first: int  # 0-based first line of the heading (the overline for RST)
    level: int
    title: str


def _front_matter_end(lines: list[str]) -> int:
    """Index after a leading YAML front-matter block (``---`` ... ``---``), else 0."""
    if not lines or lines[0].strip() != "---":
        return 0
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return i + 1
    return 0


def _markdown_headings(lines: list[str]) -> list[Heading]:
    """ATX (``# x``) and setext (``x`` over ``===``/``---``) headings, skipping fenced code."""
    out: list[Heading] = []
    fence = ""
    i = _front_matter_end(lines)
    while i < len(lines):
        line = lines[i]
        fence_match = FENCE.match(line)
        if fence:
            # a fence closes only with the same character, at least as long as it opened
            closing = fence_match.group(1) if fence_match else ""
            if closing[:1] == fence[0] and len(closing) >= len(fence):
                fence = ""
        elif fence_match:
            fence = fence_match.group(1)
        elif (atx := _ATX.match(line)) is not None:
            out.append(Heading(i, len(atx.group(1)), (atx.group(2) or "").strip()))
        elif _is_setext(lines, i):
            out.append(Heading(i, 1 if lines[i + 1].strip()[0] == "=" else 2, line.strip()))
            i += 1  # the underline belongs to the heading
        i += 1
    return out


def _is_setext(lines: list[str], i: int) -> bool:
    # Only a single line after a blank line counts: a "---" under a paragraph's last line is
    # far more often a rule than a heading whose text is the whole paragraph.
    if i + 1 >= len(lines) or not lines[i].strip() or lines[i].startswith("    "):
        return False
    if i > 0 and lines[i - 1].strip():
        return False
    return _SETEXT.match(lines[i + 1]) is not None


def _rst_headings(lines: list[str]) -> list[Heading]:
    """Underlined (optionally overlined) titles; levels in order of first appearance, as RST does."""
    out: list[Heading] = []
    styles: list[tuple[str, bool]] = []
    i = 0
    while i + 1 < len(lines):
        if _is_rst_overlined(lines, i):
            title, style, step = lines[i + 1], (lines[i].strip()[0], True), 3
        elif _is_rst_title(lines[i], lines[i + 1]):
            title, style, step = lines[i], (lines[i + 1].strip()[0], False), 2
        else:
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        out.append(Heading(i, styles.index(style) + 1, title.strip()))
        i += step
    return out


def _is_rst_overlined(lines: list[str], i: int) -> bool:
    # over- and underline identical, around one line of text (which may be indented)
    if i + 2 >= len(lines) or not _ADORN.match(lines[i]) or lines[i + 2].rstrip() != lines[i].rstrip():
        return False
    return bool(lines[i + 1].strip()) and not _ADORN.match(lines[i + 1])


def _is_rst_title(title: str, under: str) -> bool:
    text = title.strip()
    if not text or _ADORN.match(title) or not _ADORN.match(under):
        return False
    # unindented (indented text is a block quote or literal block), and underlined at full length
    return not title[:1].isspace() and len(under.rstrip()) >= len(title.rstrip())


def find_headings(lines: list[str], fmt: str) -> list[Heading]:
    if fmt == "markdown":
        return _markdown_headings(lines)
    if fmt == "rst":
        return _rst_headings(lines)
    if fmt == "data":
        return []
    # unknown prose: Markdown is the common case; fall back to RST-style underlines
    return _markdown_headings(lines) or _rst_headings(lines)
