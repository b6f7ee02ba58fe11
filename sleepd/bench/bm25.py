"""The BM25 baseline: the plain-RAG baseline's chunks ranked by BM25 (``bm25s``, Lucene's
variant, k1 = 1.5, b = 0.75) over their words instead of by cosine, and packed by the same code
(same budget, same headers, same exact accounting). It is what a keyword search engine over
fixed-size windows gives; it finds an exact rare token (an error code, a made-up word) that an
embedding misses."""

from __future__ import annotations

import re

import bm25s
import numpy as np

from sleepd.bench.baseline import TOP_K, Chunk

__all__ = ["BM25Chunks", "terms"]

#: a term: a run of letters and digits, lower-cased (``parse_url`` gives ``parse`` and ``url``)
_TERM = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    return _TERM.findall(text.lower())


class BM25Chunks:
    """BM25 over the given chunks (built once); ``ranked`` answers one query."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self._index = bm25s.BM25()
        if chunks:
            self._index.index([terms(c.text) for c in chunks], show_progress=False)

    def ranked(self, query: str, k: int = TOP_K) -> list[int]:
        """Indexes of the ``k`` best chunks by BM25 score, best first; ties by chunk order; chunks
        that share no term with the query are left out."""
        words = terms(query)
        if not self.chunks or not words:
            return []
        scores = np.asarray(self._index.get_scores(words), dtype=np.float64)
        order = np.lexsort((np.arange(len(scores)), -scores))  # score descending, then position
        return [int(i) for i in order[:k] if scores[i] > 0]
