"""Words, and the sparse (BM25-style) vectors built from them, for the index's keyword side.

A made-up word, an error code or an exact identifier has no meaning a dense embedding can place
among 30,000 records; a sparse vector finds it by the word itself. The question and the records
are split by the same :func:`terms` (lower-cased, lightly stemmed, identifiers split) so their
words meet. Each term is hashed to a sparse index with crc32 (stable across processes, unlike
``hash``). A record's value for a term is its BM25 term-frequency saturation; the engine applies
the inverse document frequency (the IDF modifier), so the question's values are all 1.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from sleepd import defaults

__all__ = ["TERMS_VERSION", "SparseVector", "document_terms", "document_vector", "query_vector", "saturated", "stem",
           "term_index", "term_list", "terms"]

#: how :func:`terms` splits words; an index whose sparse vectors were made another way is rebuilt
#: from the ledger when it is opened (:class:`sleepd.indexer.Indexer`). 2: an identifier joined by
#: underscores is a term of its own beside its parts (before, only its parts)
TERMS_VERSION = "2"
#: a word: letters and digits, or an identifier joined by underscores (``register_hook``, ``__call__``)
_WORD = re.compile(r"_*[A-Za-z][A-Za-z0-9]*(?:_+[A-Za-z0-9]+)*_*|\d+")
_PART = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
STOP = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "if",
    "in", "is", "it", "of", "on", "or", "the", "this", "to", "what", "when", "where", "which", "who", "why",
    "with",
])


@dataclass(frozen=True)
class SparseVector:
    """Sorted, distinct term indices and their values."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


def stem(word: str) -> str:
    """A light suffix stem so ``redirects``, ``redirected`` and ``redirect`` meet."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _word_terms(word: str) -> list[str]:
    lower = word.lower()
    found = [lower]
    # camelCase, digits or an identifier joined by underscores: the parts too (the whole one is
    # the exact name a question about the code quotes: rare, so it weighs more than its parts)
    if lower != word or not word.isalpha():
        found.extend(part.lower() for part in _PART.findall(word) if part.lower() != lower)
    return [stem(w) for w in found if w not in STOP]


def term_list(text: str) -> list[str]:
    """Every term of ``text`` in order, repeats kept (for term frequencies)."""
    return [t for word in _WORD.findall(text) for t in _word_terms(word)]


@functools.lru_cache(maxsize=defaults.TERMS_CACHE)
def terms(text: str) -> frozenset[str]:
    """The distinct terms of ``text``. Cached: a record's text does not change under its id, and the
    same records answer many queries."""
    return frozenset(t for word in set(_WORD.findall(text)) for t in _word_terms(word))


def term_index(term: str) -> int:
    """A term's sparse index: crc32, the same in every process and on every machine."""
    return zlib.crc32(term.encode("utf-8"))


def document_vector(title: str, text: str) -> SparseVector:
    """A record's sparse vector: each term's BM25 saturation ``tf (k1 + 1) / (tf + k1 (1 - b + b
    len / avg))``. The title counts :data:`~sleepd.defaults.SPARSE_TITLE_REPEAT` times: it names what
    the record is about. Terms whose hashes collide are counted together."""
    return saturated(Counter(term_index(t) for t in document_terms(title, text)))


def document_terms(title: str, text: str) -> list[str]:
    """The terms a record's sparse vector counts, repeats kept: the title's
    :data:`~sleepd.defaults.SPARSE_TITLE_REPEAT` times, then the start of the text."""
    return term_list(title) * defaults.SPARSE_TITLE_REPEAT + term_list(text[: defaults.SPARSE_CHARS])


def saturated(counts: Mapping[int, int]) -> SparseVector:
    """The sparse vector of term counts (by sparse index): each one's BM25 saturation over the
    document's length (the sum of the counts)."""
    length = sum(counts.values())
    k1, b = defaults.BM25_K1, defaults.BM25_B
    norm = k1 * (1 - b + b * length / defaults.BM25_AVG_TERMS)
    indices = sorted(counts)
    return SparseVector(tuple(indices), tuple(counts[i] * (k1 + 1) / (counts[i] + norm) for i in indices))


def query_vector(question_terms: frozenset[str]) -> SparseVector:
    """The question's sparse vector: each distinct term once, value 1 (the engine weighs by IDF)."""
    indices = sorted({term_index(t) for t in question_terms})
    return SparseVector(tuple(indices), tuple(1.0 for _ in indices))
