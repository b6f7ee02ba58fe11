"""Clause segmentation of contract text by headings and numbering, with paragraph groups as the fallback.

Contracts number their clauses ("ARTICLE IV", "Section 5.", "1.", "1.1", "(a)", "(iv)") and head
them with all-caps lines; text converted from PDF or HTML often runs several numbered clauses
into one long line. :func:`segment` finds every such boundary, at the start of a line or after a
sentence end in mid-line, ranks it (article/top number 0, "1.1" 1, "1.1.1" 2, letters 3, roman 4)
and splits top-down: always at the top level, then a piece longer than :data:`MAX_CLAUSE_CHARS`
at the next level found inside it, and at sentence ends when none is. Pieces with only a heading join the next one.
A contract with no numbering at all gives groups of paragraphs. Spans are character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_CLAUSE_CHARS", "Segment", "segment"]

#: a clause longer than this is split at its subclauses, or at sentence ends (~300 tokens)
MAX_CLAUSE_CHARS = 1500
#: a piece with fewer non-space characters than this (a lone heading) joins the next one
MIN_CLAUSE_CHARS = 100
#: below this many numbered boundaries a contract is treated as unstructured prose
MIN_BOUNDARIES = 3
#: a paragraph group in the fallback is packed up to this size
PARAGRAPH_GROUP_CHARS = 1000

_NUM = r"(?P<num>\d{1,2}(?:\.\d{1,3}){0,3})"
_LINE_HEAD = re.compile(
    r"^[ \t]*(?:"
    r"(?P<article>(?:ARTICLE|Article)[ \t]+(?:[IVXLC]+|\d+)\b\.?)"
    rf"|(?P<section>(?:SECTION|Section)[ \t]+{_NUM}\.?(?=[ \t]|$))"
    rf"|{_NUM.replace('num', 'plain')}(?P<dot>[.)])?(?=[ \t]+[^\s\d])"
    r"|(?P<letter>\([a-z]{1,2}\)|[a-z]\)|[A-Z]\.)(?=[ \t]+\S)"
    r")",
    re.M,
)
# mid-line numbering needs a sentence end before it, so "under Section 2.1 of" is not a boundary
_MID_HEAD = re.compile(
    r"(?<=[.;:\"”)\]])[ \t]{2,}(?P<num>\d{1,2}(?:\.\d{1,3}){1,3}\.?|\d{1,2}\.)(?=[ \t]+[A-Z\"“(])"
    r"|(?<=[.;:])[ \t]+(?P<letter>\([a-z]{1,2}\))(?=[ \t]+\S)"
    r"|(?<=[.;:\"”])[ \t]{2,}(?P<section>(?:SECTION|Section|ARTICLE|Article)[ \t]+[\dIVX]+(?:\.\d+)*\.?)(?=[ \t])"
)
_CAPS_LINE = re.compile(r"^[ \t]*(?P<caps>[A-Z][A-Z0-9 ,;:&'\u2019/()\-]{2,80})[ \t]*$", re.M)
_ROMAN = re.compile(r"^\((?:i{1,3}|iv|v|vi{1,3}|ix|x)\)$")
_HEADING_AFTER = re.compile(r"[ \t]*(?P<head>[A-Z][A-Za-z'\u2019&/,\- ]{2,60}?)(?:\.|:|[ \t]*\n|[ \t]{2,})")
_SENTENCE_END = re.compile(r"(?<=[.;!?])[\"”)]?\s+(?=[A-Z(\"“])|\n[ \t]*\n")
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\bInc|\bLtd|\bCo|\bCorp|\bNo|\bU\.S|\bSec|\bMr|\bMs|\bDr|\bSt|\bvs?|"
                           r"\be\.g|\bi\.e|\betc)\.$")


@dataclass(frozen=True)
class Segment:
    """A clause: characters ``start:end`` of the contract, its number ("4.2", "(a)") and heading."""

    start: int
    end: int
    number: str = ""
    heading: str = ""


@dataclass(frozen=True)
class _Boundary:
    offset: int
    level: int
    number: str
    heading: str


def _heading_after(text: str, pos: int) -> str:
    m = _HEADING_AFTER.match(text, pos)
    if not m or len(m.group("head").split()) > 8:
        return ""
    return m.group("head").strip(" ,-")


def _line_boundary(text: str, m: re.Match[str]) -> _Boundary | None:
    start = m.start() + len(m.group(0)) - len(m.group(0).lstrip())
    if m.group("article"):
        return _Boundary(start, 0, m.group("article").rstrip("."), _heading_after(text, m.end()))
    if m.group("section"):
        number = m.group("num")
        return _Boundary(start, number.count("."), f"Section {number}", _heading_after(text, m.end()))
    if m.group("plain"):
        number = m.group("plain")
        if "." not in number and not m.group("dot"):
            return None  # a bare "12" at a line start is a page number far more often than a clause
        return _Boundary(start, number.count("."), number, _heading_after(text, m.end()))
    letter = m.group("letter")
    return _Boundary(start, 4 if _ROMAN.match(letter) else 3, letter, _heading_after(text, m.end()))


def _mid_boundary(text: str, m: re.Match[str]) -> _Boundary:
    name = next(g for g in ("num", "letter", "section") if m.group(g))
    token = m.group(name)
    start = m.start(name)
    heading = _heading_after(text, m.end())
    if name == "letter":
        return _Boundary(start, 4 if _ROMAN.match(token) else 3, token, heading)
    if name == "section":
        return _Boundary(start, 0, token.rstrip("."), heading)
    number = token.rstrip(".")
    return _Boundary(start, number.count("."), number, heading)


def _boundaries(text: str) -> list[_Boundary]:
    found: dict[int, _Boundary] = {}
    line_heads: set[int] = set()
    for m in _LINE_HEAD.finditer(text):
        if (b := _line_boundary(text, m)) is not None:
            found[b.offset] = b
            line_heads.add(text.rfind("\n", 0, b.offset) + 1)
    for m in _MID_HEAD.finditer(text):
        b = _mid_boundary(text, m)
        found.setdefault(b.offset, b)
    for m in _CAPS_LINE.finditer(text):
        caps = m.group("caps").strip()
        if m.start() in line_heads or sum(c.isalpha() for c in caps) < 4:
            continue
        found.setdefault(m.start("caps"), _Boundary(m.start("caps"), 0, "", caps.title()[:80]))
    return [found[k] for k in sorted(found)]


def _sentence_pieces(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """``start:end`` cut at sentence ends (or blank lines) into pieces of at most ``size``, where it can be."""
    cuts = [m.end() for m in _SENTENCE_END.finditer(text, start, end)
            if not _ABBREVIATION.search(text, max(start, m.start() - 6), m.start() + 1)]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    last_cut = start
    for cut in [*cuts, end]:
        if cut - piece_start > size and last_cut > piece_start:
            pieces.append((piece_start, last_cut))
            piece_start = last_cut
        while cut - piece_start > size * 2:  # one sentence far too long: cut at a space
            space = text.rfind(" ", piece_start + size // 2, piece_start + size)
            step = space if space > piece_start else piece_start + size
            pieces.append((piece_start, step))
            piece_start = step
        last_cut = cut
    if piece_start < end:
        pieces.append((piece_start, end))
    return pieces


def _split(text: str, start: int, end: int, inner: list[_Boundary], head: _Boundary | None) -> list[Segment]:
    """Split ``start:end`` top-down at the shallowest level of the boundaries ``inner`` to it."""
    number, heading = (head.number, head.heading) if head else ("", "")
    # top-level clauses are always clauses; their subclauses only split what is too long to read whole
    if end - start <= MAX_CLAUSE_CHARS and not any(b.level == 0 for b in inner):
        return [Segment(start, end, number, heading)]
    if not inner:
        return [Segment(s, e, number, heading) for s, e in _sentence_pieces(text, start, end, MAX_CLAUSE_CHARS)]
    level = min(b.level for b in inner)
    cuts = [b for b in inner if b.level == level]
    out: list[Segment] = []
    if cuts[0].offset > start:
        out.extend(_split(text, start, cuts[0].offset, [b for b in inner if b.offset < cuts[0].offset], head))
    for k, cut in enumerate(cuts):
        stop = cuts[k + 1].offset if k + 1 < len(cuts) else end
        out.extend(_split(text, cut.offset, stop, [b for b in inner if cut.offset < b.offset < stop], cut))
    return out


def _merge_small(text: str, segments: list[Segment]) -> list[Segment]:
    """Join pieces that are only a heading (or a page number) to the piece after them."""
    out: list[Segment] = []
    carry: Segment | None = None
    for seg in segments:
        if carry is not None:
            # the heading nearest the text is the clause's own ("ARTICLE IV" / "TERM" -> IV, Term)
            seg = Segment(carry.start, seg.end, seg.number or carry.number, seg.heading or carry.heading)
            carry = None
        if len("".join(text[seg.start:seg.end].split())) < MIN_CLAUSE_CHARS and seg.end - seg.start < MAX_CLAUSE_CHARS:
            carry = seg
            continue
        out.append(seg)
    if carry is not None:
        if out:
            last = out.pop()
            out.append(Segment(last.start, carry.end, last.number, last.heading))
        else:
            out.append(carry)
    return out


def _paragraph_groups(text: str) -> list[Segment]:
    """Blank-line paragraphs (lines if there are none) packed into groups, long ones cut at sentences."""
    blocks = [(m.start(), m.end()) for m in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", text)]
    if len(blocks) < 2:
        blocks = [(m.start(), m.end()) for m in re.finditer(r"\S.*", text)]
    out: list[Segment] = []
    group: tuple[int, int] | None = None
    for s, e in blocks:
        if group and e - group[0] <= PARAGRAPH_GROUP_CHARS:
            group = (group[0], e)
            continue
        if group:
            out.append(Segment(*group))
        if e - s > MAX_CLAUSE_CHARS:
            out.extend(Segment(a, b) for a, b in _sentence_pieces(text, s, e, MAX_CLAUSE_CHARS))
            group = None
        else:
            group = (s, e)
    if group:
        out.append(Segment(*group))
    return out


def segment(text: str) -> list[Segment]:
    """The clauses of a contract, in order, covering every non-blank character once; ``[]`` for blank text."""
    if not text.strip():
        return []
    bounds = _boundaries(text)
    if sum(1 for b in bounds if b.number) < MIN_BOUNDARIES:
        segments = _paragraph_groups(text)
    else:
        segments = _merge_small(text, _split(text, 0, len(text), bounds, None))
    return [_trimmed(text, s) for s in segments if text[s.start:s.end].strip()]


def _trimmed(text: str, seg: Segment) -> Segment:
    start, end = seg.start, seg.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Segment(start, end, seg.number, seg.heading)
