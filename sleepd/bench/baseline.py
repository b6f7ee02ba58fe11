"""The plain-RAG baseline: fixed-size token chunks over the same files, the same embedder, top-k
by cosine, packed greedily into the same budget with the same header per piece as sleepd's packer.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpe_openai
import numpy as np

from sleepd.bench.corpora import Snippet
from sleepd.embed import Embedder, Vectors
from sleepd.pack import MIN_PARTIAL, SEPARATOR, fit, record_header
from sleepd.tokens import Tokenizer

__all__ = ["CHUNK_OVERLAP", "CHUNK_TOKENS", "TOP_K", "Chunk", "PlainRAG"]

#: the issue's baseline: 512-token chunks overlapping by 64 (cl100k tokens)
CHUNK_TOKENS = 512
CHUNK_OVERLAP = 64
#: chunks ranked before packing: as many candidates as sleepd asks of its index
TOP_K = 64


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int
    end_line: int
    text: str


def _line_of(starts: list[int], offset: int) -> int:
    """1-based line holding character ``offset``, given each line's start offset."""
    return bisect.bisect_right(starts, offset)


def chunk_text(path: str, text: str, encoding: Any, size: int = CHUNK_TOKENS,
               overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    """Windows of ``size`` tokens every ``size - overlap`` tokens, each with the lines it spans."""
    enc = encoding
    tokens = enc.encode(text)
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    chunks: list[Chunk] = []
    step = size - overlap
    for begin in range(0, max(len(tokens) - overlap, 1), step):
        window = tokens[begin:begin + size]
        if not window:
            break
        offset = len(enc.decode(tokens[:begin]))
        body = enc.decode(window)
        end_offset = max(offset, offset + len(body.rstrip("\n")) - 1)
        chunks.append(Chunk(path, _line_of(starts, offset), _line_of(starts, end_offset), body))
    return chunks


class PlainRAG:
    """Chunks of every file of one source, embedded once; ``pack`` answers one query."""

    def __init__(self, source: str, embedder: Embedder, tokenizer: Tokenizer) -> None:
        self.source = source
        self.embedder = embedder
        self.tokenizer = tokenizer
        self._encoding = bpe_openai.get_encoding(tokenizer.name)
        self.chunks: list[Chunk] = []
        self.vectors: Vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        self.embed_seconds = 0.0

    def build(self, files: Iterable[tuple[str, str]]) -> None:
        for path, text in files:
            if text.strip():
                self.chunks.extend(chunk_text(path, text, self._encoding))
        started = time.perf_counter()
        self.vectors = self.embedder.encode([c.text for c in self.chunks])
        self.embed_seconds = time.perf_counter() - started

    def ranked(self, query_vector: Vectors, k: int = TOP_K) -> list[int]:
        scores = self.vectors @ query_vector
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=np.int64)
        return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]

    def pack(self, ranked: list[int], budget: int) -> tuple[list[Snippet], int]:
        """Greedy packing with sleepd's rules: a header per piece, the last piece cut to fit if at
        least MIN_PARTIAL tokens remain, and ``used`` the exact count of the pieces joined by
        newlines. A cut chunk cites only the lines it still holds."""
        used = 0
        packed: list[Snippet] = []
        cited: set[tuple[str, str]] = set()
        for i in ranked:
            remaining = budget - used
            if remaining < MIN_PARTIAL // 2:
                break
            chunk = self.chunks[i]
            span = [{"start_line": chunk.start_line, "end_line": chunk.end_line}]
            header = record_header("chunk", self.source, chunk.path, span, cited)
            lead = SEPARATOR if packed else ""  # the join costs what it costs sleepd's packs
            fitted = fit(self.tokenizer, lead + header, chunk.text, remaining)
            if fitted is None:
                continue
            body, cost = fitted
            end_line = chunk.end_line if body == chunk.text else chunk.start_line + body.rstrip("\n").count("\n")
            used += cost
            cited.add((self.source, chunk.path))
            packed.append(Snippet(chunk.path, chunk.start_line, end_line, header + body, "chunk"))
        # the same exact accounting as sleepd: the count of the joined text, within the budget
        while packed and (used := self.tokenizer.count(SEPARATOR.join(p.text for p in packed))) > budget:
            packed.pop()
        return packed, used if packed else 0
