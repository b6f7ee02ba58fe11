"""Extractive digests: a summary, key facts and likely questions, each sentence with its lines.

Everything here is deterministic and pure; nothing is generated that the source does not say:

* :func:`split_sentences` cuts prose lines into sentences that remember their 1-based lines
  (fenced code, headings, tables and adornments are skipped);
* :func:`summarise` picks the few most central sentences (SumBasic: sentences made of the
  document's frequent words, each pick discounting its words so the next covers something else),
  favouring a section's opening sentence, and returns them in document order;
* :func:`key_facts` picks sentences that state something checkable: a number, a date, a version,
  a default, a requirement ("must", "only", "never"), a definition ("X is a ..."), a command;
* :func:`qa_draft` renders question/answer pairs as one ``QUESTIONS`` record whose evidence is every
  answer's span, so the query can return a pre-computed answer with its pointer.

The profiles build their questions from what they parse (a section's heading, a module's
symbols, an account's orders) and hand them to :func:`qa_draft`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sleepd.records import Draft, Evidence, RecordKind

__all__ = ["QA", "Sentence", "key_facts", "qa_draft", "question_for_heading", "split_sentences", "summarise"]

#: a sentence longer than this is cut (a wall of text with no full stops is not a sentence)
MAX_SENTENCE_CHARS = 320
#: shorter than this is a fragment ("See below."), not worth a summary slot
MIN_SENTENCE_WORDS = 4

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SKIP_LINE = re.compile(r"^\s*(#{1,6}\s|[=\-~^*+#]{3,}\s*$|\|.*\||\.\. |:\w[\w-]*:\s*$)")
_HEADING = re.compile(r"^\s*(#{1,6}\s|[=\-~^*+#]{3,}\s*$)")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# a sentence ends at . ! ? (not after an initial or a common abbreviation) before a capital, a digit or a quote
_END = re.compile(r"(?<![A-Z])(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\betc)(?<!\bNo)[.!?](?=\s+[\"'(\[`*A-Z0-9])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_'-]+")
_STOP = frozenset(
    ["about", "above", "after", "again", "against", "all", "also", "an", "and", "any", "are", "as", "at", "be",
     "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
     "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
     "he", "her", "here", "hers", "him", "his", "how", "if", "in", "into", "is", "it", "its", "itself", "just", "me",
     "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out",
     "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
     "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "use", "used",
     "uses", "using", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why",
     "will", "with", "would", "you", "your"]
)
_FACT = re.compile(
    r"\d|\b(?:must|required?|requires|never|always|only|default(?:s|ed)?|deprecated|note|warning|important|"
    r"maximum|minimum|at least|at most|limit|supports?|means|refers to|is an?|are the)\b|`[^`]+`",
    re.I,
)


@dataclass(frozen=True)
class Sentence:
    text: str
    start_line: int  # 1-based, inclusive
    end_line: int
    #: the sentence opens a paragraph that opens its section (a lead sentence)
    lead: bool = False


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    evidence: Evidence


def split_sentences(lines: Sequence[str], start: int = 0, end: int | None = None) -> list[Sentence]:
    """Sentences of ``lines[start:end]`` (0-based), prose only; line numbers in the result are 1-based."""
    end = len(lines) if end is None else end
    out: list[Sentence] = []
    para: list[tuple[int, str]] = []
    fence = ""
    first_para = True

    def flush() -> None:
        nonlocal first_para
        if para:
            out.extend(_sentences_of(para, lead=first_para))
            first_para = False
            para.clear()

    for i in range(start, end):
        line = lines[i]
        if (m := _FENCE.match(line)) is not None:
            flush()
            fence = "" if fence else m.group(1)
            continue
        if fence or _SKIP_LINE.match(line) or line.startswith(("    ", "\t")):
            flush()
            if not fence and _HEADING.match(line):
                first_para = True  # the next paragraph opens a section
            continue
        if not line.strip() or _BULLET.match(line):
            flush()
        if line.strip():
            para.append((i + 1, _BULLET.sub("", line).strip()))
    flush()
    return out


def _sentences_of(para: list[tuple[int, str]], lead: bool) -> list[Sentence]:
    text = ""
    starts: list[tuple[int, int]] = []  # (character offset, line number)
    for number, line in para:
        starts.append((len(text), number))
        text += line + " "

    def line_at(offset: int) -> int:
        return max(n for o, n in starts if o <= offset)

    out: list[Sentence] = []
    begin = 0
    for m in [*_END.finditer(text), None]:
        stop = m.end() if m else len(text)
        piece = text[begin:stop].strip()
        if piece:
            first = begin + len(text[begin:stop]) - len(text[begin:stop].lstrip())
            cut = piece if len(piece) <= MAX_SENTENCE_CHARS else piece[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
            out.append(Sentence(cut, line_at(first), line_at(max(first, stop - 2)), lead and not out))
        begin = stop
    return out


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP and len(w) > 2]


def summarise(sentences: Sequence[Sentence], limit: int) -> list[Sentence]:
    """Up to ``limit`` central sentences (SumBasic with a lead bonus), in document order."""
    candidates = [s for s in sentences if len(content_words(s.text)) >= MIN_SENTENCE_WORDS - 1
                  and len(s.text.split()) >= MIN_SENTENCE_WORDS]
    counts = Counter(w for s in candidates for w in set(content_words(s.text)))
    total = sum(counts.values()) or 1
    prob = {w: c / total for w, c in counts.items()}
    picked: list[Sentence] = []
    for _ in range(min(limit, len(candidates))):
        def score(s: Sentence) -> float:
            words = set(content_words(s.text))
            base = sum(prob[w] for w in words) / math.sqrt(len(words)) if words else 0.0
            return base * (1.5 if s is candidates[0] else 1.25 if s.lead else 1.0)

        best = max((s for s in candidates if s not in picked), key=score)
        picked.append(best)
        for w in set(content_words(best.text)):
            prob[w] *= prob[w] * 50  # SumBasic's squaring, rescaled so a 2% word drops to 2% of itself
    return sorted(picked, key=lambda s: s.start_line)


def key_facts(sentences: Sequence[Sentence], limit: int, skip: Iterable[Sentence] = ()) -> list[Sentence]:
    """Up to ``limit`` sentences that state something checkable (see the module doc), in document order."""
    taken = set(skip)
    scored = []
    for s in sentences:
        signals = len(_FACT.findall(s.text))
        if s in taken or not signals or len(s.text.split()) < MIN_SENTENCE_WORDS or len(s.text) > 240:
            continue
        scored.append((signals + 0.5 * s.lead, -s.start_line, s))
    scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return sorted((s for _, _, s in scored[:limit]), key=lambda s: s.start_line)


_HOW_VERBS = frozenset(
    ["add", "build", "call", "change", "check", "choose", "configure", "connect", "contribute", "create",
     "customize", "debug", "define", "deploy", "disable", "enable", "extend", "find", "get", "handle", "install",
     "integrate", "load", "log", "make", "manage", "migrate", "monitor", "read", "register", "release", "remove",
     "report", "request", "reset", "restore", "run", "send", "set", "setup", "start", "stop", "test", "troubleshoot",
     "update", "upgrade", "upload", "use", "validate", "write"]
)
_GERUND = {"adding": "add", "building": "build", "calling": "call", "changing": "change", "configuring": "configure",
           "connecting": "connect", "contributing": "contribute", "creating": "create", "customizing": "customize",
           "debugging": "debug", "defining": "define", "deploying": "deploy", "extending": "extend",
           "getting": "get", "handling": "handle", "installing": "install", "loading": "load", "logging": "log",
           "making": "make", "managing": "manage", "migrating": "migrate", "running": "run", "sending": "send",
           "setting": "set", "starting": "start", "testing": "test", "troubleshooting": "troubleshoot",
           "updating": "update", "upgrading": "upgrade", "using": "use", "writing": "write"}


def question_for_heading(heading: str, document: str) -> str:
    """A question a reader would ask that ``heading`` answers: "Installing from source" ->
    "How do I install from source?", "Authentication" -> "What does <document> say about authentication?"."""
    text = re.sub(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.)\s+", "", " ".join(re.sub(r"[`*]", "", heading).split()))
    text = text.rstrip(":.")
    if not text:
        return ""
    if text.endswith("?"):
        return text
    words = text.split()
    first = words[0].lower()
    rest = " ".join(words[1:])
    if first == "how" and len(words) > 2 and words[1].lower() == "to":
        return f"How do I {' '.join(words[2:])}?"
    if first in _HOW_VERBS or first in _GERUND:
        return f"How do I {_GERUND.get(first, first)} {rest}".rstrip() + "?"
    lowered = text if any(c.isupper() for c in text[1:]) else text[0].lower() + text[1:]
    return f"What does {document} say about {lowered}?"


def qa_draft(subject: str, pairs: Sequence[QA], meta: dict[str, str] | None = None) -> Draft | None:
    """One ``QUESTIONS`` record: "Likely questions about <subject>" and a Q/A pair per line, each answer with
    its lines; evidence = the answers' spans in order. None when there are no pairs."""
    if not pairs:
        return None
    lines = [f"Likely questions about {subject}:"]
    for qa in pairs:
        span = (f"line {qa.evidence.start_line}" if qa.evidence.start_line == qa.evidence.end_line
                else f"lines {qa.evidence.start_line}-{qa.evidence.end_line}")
        lines.append(f"Q: {qa.question}\nA: {qa.answer} ({qa.evidence.path}, {span})")
    evidence = tuple(dict.fromkeys(qa.evidence for qa in pairs))
    return Draft(RecordKind.QUESTIONS, "\n".join(lines), evidence, f"{subject}: likely questions",
                 {"generator": "deterministic", **(meta or {})})
