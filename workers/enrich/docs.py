"""Deterministic enrichment of prose: section-aware chunks for Markdown, reStructuredText and plain text.

:func:`enrich_docs` turns one document into :class:`~sleepd.records.Draft` records:

* a document with headings gives one ``SECTION`` per heading; the title is the heading path
  (``"Install > From source"``) and the text starts with that path, so a record read on its own
  still says where it sits. Sections over ~300 tokens are split at paragraph boundaries (the
  path repeated in each window); short adjacent sections are merged up to ~300 tokens.
* plain text with paragraphs gives ``SECTION`` windows of grouped paragraphs, titled by the path.
* text with no structure at all gives ``CHUNK`` windows of ~250 tokens (:func:`chunk_lines`).
* a prose document of some length also gets a digest (:mod:`workers.enrich.digest`): one
  ``FILE_SUMMARY`` (title, outline of headings, an extractive summary and key facts, each
  sentence with its line) and one ``QUESTIONS`` record of likely questions, one per section heading,
  answered by the section's opening sentences and pointing at the section.

Every record's evidence is exact: ``text.splitlines()[start - 1:end]`` is the span it came from.
A line longer than a whole window is cut into pieces that all cite that one line.
Everything here is pure: no I/O, no globals mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.digest import QA, key_facts, qa_draft, question_for_heading, split_sentences, summarise
from workers.enrich.headings import FENCE, Heading, doc_format, find_headings

__all__ = ["CHUNK_TOKENS", "SECTION_TOKENS", "approx_tokens", "chunk_lines", "enrich_docs",
           "fit_text", "trim_lines"]

#: target size of a SECTION record, in approximate tokens
SECTION_TOKENS = 300
#: target size of a CHUNK record, in approximate tokens
CHUNK_TOKENS = 250
#: a document with fewer words than this is its own summary: no digest
DIGEST_MIN_WORDS = 150
#: sentences in a digest's summary, key facts, and questions in its QUESTIONS record
SUMMARY_SENTENCES = 4
KEY_FACTS = 6
LIKELY_QUESTIONS = 8
# ~4 characters per token for English and code: close enough to budget by, and free to compute.
_CHARS_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    """Approximate token count (characters / 4): cheap, and only ever used to size windows."""
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def fit_text(parts: list[str], max_chars: int) -> str:
    """Join the non-empty ``parts`` by lines; past ``max_chars``, cut at a line break and end with "…"."""
    text = "\n".join(p for p in parts if p)
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars - 2)
    return text[: cut if cut > 0 else max_chars - 2] + "\n…"


def trim_lines(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` lines, "…" marking the cut."""
    lines = text.splitlines()
    return "\n".join([*lines[:limit], "…"]) if len(lines) > limit else text


@dataclass(frozen=True)
class _Unit:
    """A piece of a window: lines ``start..end`` (0-based, inclusive) and the text it contributes."""

    start: int
    end: int
    text: str


def _split_long_line(line: str, max_chars: int) -> list[str]:
    """Cut one over-long line into pieces of at most ``max_chars``, at spaces where possible."""
    pieces: list[str] = []
    rest = line.strip()
    while len(rest) > max_chars:
        cut = rest.rfind(" ", max_chars // 2, max_chars)
        cut = cut if cut > 0 else max_chars
        pieces.append(rest[:cut])
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _line_units(lines: list[str], start: int, end: int, max_chars: int) -> list[_Unit]:
    """Units for lines ``start..end``: one per line, long lines cut into several."""
    units: list[_Unit] = []
    for i in range(start, end + 1):
        if len(lines[i]) > max_chars:
            units.extend(_Unit(i, i, piece) for piece in _split_long_line(lines[i], max_chars))
        else:
            units.append(_Unit(i, i, lines[i]))
    return units


def _blocks(lines: list[str], start: int, end: int, max_chars: int) -> list[_Unit]:
    """Paragraphs of lines ``start..end`` (fenced code kept whole); a block too big is cut by lines."""
    out: list[_Unit] = []
    i = start
    while i <= end:
        if not lines[i].strip():
            i += 1
            continue
        j, fence = i, ""
        while j <= end and (fence or lines[j].strip()):
            if (m := FENCE.match(lines[j])) is not None:
                fence = "" if fence else m.group(1)
            j += 1
        text = "\n".join(lines[i:j])
        fits = len(text) <= max_chars
        out.extend([_Unit(i, j - 1, text)] if fits else _line_units(lines, i, j - 1, max_chars))
        i = j
    return out


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for prev, unit in pairwise(units):
        # adjacent lines join with one newline; a gap (blank lines) stays a paragraph break
        parts.append(("\n" if unit.start <= prev.end + 1 else "\n\n") + unit.text)
    return "".join(parts)


def _pack(units: list[_Unit], max_chars: int) -> list[list[_Unit]]:
    """Greedy windows of consecutive units, each at most ``max_chars`` (a lone unit may be the max)."""
    windows: list[list[_Unit]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + len(unit.text) + 2 > max_chars:
            windows.append(current)
            current, size = [], 0
        current.append(unit)
        size += len(unit.text) + 2
    if current:
        windows.append(current)
    return windows


@dataclass
class _Part:
    """A section (or a window of one) before it becomes a Draft; only ``whole`` sections merge."""

    paths: list[tuple[str, ...]]  # heading path of each section it holds
    body: str  # the source text, without the heading-path prefix
    start: int
    end: int
    whole: bool


def _title(paths: list[tuple[str, ...]], root: str) -> str:
    """``"A > B"`` for one section; merged ones give their common path and the rest's last headings:
    ``"A > B | C | D"`` (B and its subsections C, D) or ``"A > C | D"`` (siblings under A)."""
    named = [p for p in paths if p] or [()]  # a preamble (no heading) sits under any path
    common = named[0]
    for path in named[1:]:
        same = (i for i, (x, y) in enumerate(zip(common, path, strict=False)) if x != y)
        common = common[: next(same, min(len(common), len(path)))]
    leaves = " | ".join(dict.fromkeys(p[-1] for p in named if len(p) > len(common)))
    head = " > ".join(common) or root
    return (f"{head}{' | ' if common in named else ' > '}{leaves}" if leaves else head)[:200]


def _section_parts(lines: list[str], start: int, end: int, path: tuple[str, ...], room: int) -> list[_Part]:
    """One part for a section that fits ``room`` chars, else windows split at paragraph boundaries."""
    blocks = _blocks(lines, start, end, room)
    windows = _pack(blocks, room) if blocks else []
    return [_Part([path], _join(w), w[0].start, w[-1].end, len(windows) == 1) for w in windows]


def _merge(parts: list[_Part], max_chars: int, root: str) -> list[_Part]:
    """Merge runs of adjacent whole sections while title and text together fit ``max_chars``."""
    out: list[_Part] = []
    for part in parts:
        last = out[-1] if out else None
        paths = [*last.paths, *part.paths] if last else part.paths
        size = len(_title(paths, root)) + len(last.body if last else "") + len(part.body) + 4
        if last and last.whole and part.whole and size <= max_chars:
            out[-1] = _Part(paths, f"{last.body}\n\n{part.body}", last.start, part.end, True)
        else:
            out.append(part)
    return out


def _heading_sections(
    lines: list[str], headings: list[Heading]
) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(start, end, heading path)`` per section, 0-based inclusive; a preamble has path ``()``."""
    bounds = [h.first for h in headings] + [len(lines)]
    sections: list[tuple[int, int, tuple[str, ...]]] = [(0, bounds[0] - 1, ())] if bounds[0] > 0 else []
    stack: list[Heading] = []
    for k, heading in enumerate(headings):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        sections.append((heading.first, bounds[k + 1] - 1, tuple(h.title for h in stack if h.title)))
    return sections


def _drafts(path: str, parts: list[_Part], fmt: str) -> list[Draft]:
    drafts = []
    for part in parts:
        title = _title(part.paths, path)
        evidence = (Evidence(path, part.start + 1, part.end + 1),)
        drafts.append(Draft(RecordKind.SECTION, f"{title}\n\n{part.body}", evidence, title, {"format": fmt}))
    return drafts


def chunk_lines(
    path: str, text: str, budget: int = CHUNK_TOKENS, meta: dict[str, str] | None = None
) -> list[Draft]:
    """``CHUNK`` windows of about ``budget`` tokens, by whole lines, preferring to cut at a blank line.

    The fallback for text with no usable structure (and for code that cannot be parsed); each
    draft gets a copy of ``meta``.
    """
    lines = text.splitlines()
    max_chars = budget * _CHARS_PER_TOKEN
    units = [u for u in _line_units(lines, 0, len(lines) - 1, max_chars) if u.text.strip()]
    drafts: list[Draft] = []
    i = 0
    while i < len(units):
        j, size = i, 0
        while j < len(units) and (j == i or size + len(units[j].text) + 1 <= max_chars):
            size += len(units[j].text) + 1
            j += 1
        # back up to just after a blank-line gap in the second half, so a window ends at a break
        for k in range(j - 1, (i + j) // 2, -1):
            if j < len(units) and units[k].start > units[k - 1].end + 1:
                j = k
                break
        window = units[i:j]
        start, end = window[0].start + 1, window[-1].end + 1
        title = f"{path}:{start}-{end}"
        evidence = (Evidence(path, start, end),)
        drafts.append(Draft(RecordKind.CHUNK, _join(window), evidence, title=title, meta=dict(meta or {})))
        i = j
    return drafts


def enrich_docs(path: str, text: str, budget: int = SECTION_TOKENS) -> list[Draft]:
    """Section records for one prose document; ``path`` (relative to its source root) is cited as-is.

    Returns ``[]`` for empty or whitespace-only text. Never raises on odd input.
    """
    if not text.strip():
        return []
    lines = text.splitlines()
    fmt = doc_format(path)
    headings = find_headings(lines, fmt)
    max_chars = budget * _CHARS_PER_TOKEN
    sections = _heading_sections(lines, headings) if headings else []
    if headings:
        parts: list[_Part] = []
        for start, end, heading_path in sections:
            # leave room for the heading path each window repeats (a floor, for absurdly long paths)
            room = max(max_chars - len(_title([heading_path], path)) - 2, max_chars // 2)
            parts.extend(_section_parts(lines, start, end, heading_path, room))
        drafts = _drafts(path, _merge(parts, max_chars, path), fmt)
    elif len(_blocks(lines, 0, len(lines) - 1, len(text) + 1)) < 2:
        # one paragraph (or a wall of lines; counted without cutting big ones): nothing to be section-aware about
        return chunk_lines(path, text)
    else:
        drafts = _drafts(path, _section_parts(lines, 0, len(lines) - 1, (), max_chars - len(path) - 2), fmt)
    if fmt == "data" or len(text.split()) < DIGEST_MIN_WORDS:
        return drafts
    return drafts + _digest(path, lines, sections, fmt)


def _doc_title(path: str, lines: list[str], sections: list[tuple[int, int, tuple[str, ...]]]) -> str:
    named = [p for _, _, p in sections if p]
    if named and len(named[0]) == 1:
        return named[0][0][:120]
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _outline(sections: list[tuple[int, int, tuple[str, ...]]], max_chars: int = 600) -> str:
    """Headings of the top two levels, "A (B; C) | D", cut to ``max_chars``."""
    tops: dict[str, list[str]] = {}
    for _, _, heading_path in sections:
        if heading_path:
            children = tops.setdefault(heading_path[0], [])
            if len(heading_path) == 2:
                children.append(heading_path[1])
    parts = [f"{top} ({'; '.join(kids)})" if kids else top for top, kids in tops.items()]
    return fit_text([" | ".join(parts)], max_chars).replace("\n", " ")


def _digest(path: str, lines: list[str], sections: list[tuple[int, int, tuple[str, ...]]], fmt: str) -> list[Draft]:
    """The document's FILE_SUMMARY (outline, summary, key facts) and its QUESTIONS record of likely questions."""
    title = _doc_title(path, lines, sections)
    sentences = split_sentences(lines)
    summary = summarise(sentences, SUMMARY_SENTENCES)
    facts = key_facts(sentences, KEY_FACTS, skip=summary)
    if not summary:
        return []
    rows = [f"{path}: {title}"]
    if len(sections) > 1:
        rows.append(f"Outline: {_outline(sections)}")
    rows.append("Summary:")
    rows.extend(f"- {s.text} (line {s.start_line})" for s in summary)
    if facts:
        rows.append("Key facts:")
        rows.extend(f"- {s.text} (line {s.start_line})" for s in facts)
    cited = [Evidence(path, s.start_line, s.end_line) for s in sorted([*summary, *facts], key=lambda s: s.start_line)]
    drafts = [Draft(RecordKind.FILE_SUMMARY, "\n".join(rows), (Evidence(path, 1, len(lines)), *cited),
                    f"{title}: summary", {"format": fmt})]
    pairs = [QA(f"What is {title} about?", summary[0].text, Evidence(path, summary[0].start_line,
                                                                       summary[0].end_line))]
    for start, end, heading_path in sections:
        if len(pairs) > LIKELY_QUESTIONS or not heading_path or heading_path == (title,):
            continue
        opening = split_sentences(lines, start + 1, end + 1)[:2]
        question = question_for_heading(heading_path[-1], title)
        if opening and question:
            answer = fit_text([" ".join(s.text for s in opening)], 280).replace("\n", " ")
            pairs.append(QA(question, answer, Evidence(path, start + 1, end + 1)))
    qa = qa_draft(title, pairs, {"format": fmt})
    return drafts + ([qa] if qa else [])
