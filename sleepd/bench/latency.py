"""Query latency: in process, over real HTTP (uvicorn on a loopback port), and at 100k points.

100k points are synthesised, never embedded: random unit vectors (numpy, seeded) with the payload
the indexer writes, upserted through :mod:`sleepd.index` like real records. Each filler point
carries a sparse vector too, or the query's sparse search (half of its hybrid first stage) would
run over the corpus alone: its words are drawn (seeded) from a vocabulary with Zipf frequencies,
word ``r`` (1-based, most frequent first) with weight ``1 / r``, and its value per word is the
indexer's own BM25 saturation (:func:`sleepd.sparse.saturated`). In ``sleepd bench`` the vocabulary
is the corpus's own words ranked by how often its records use them, and the filler's lengths are
its records' (:func:`corpus_vocabulary`): the question's words then meet filler points as often as
they would meet records of such a corpus, so the engine walks posting lists of that length and
weighs words by IDF over all 100k points. (The filler is not in the ledger: a filler hit is
dropped when candidates are verified, where a real record would be read and ranked.)
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sleepd import defaults
from sleepd.index import EdgeIndex, Point, VectorIndex
from sleepd.ledger import Ledger
from sleepd.service import Service
from sleepd.sparse import SparseVector, document_terms, saturated, term_index

__all__ = ["FILLER_SOURCE", "Vocabulary", "corpus_vocabulary", "fill_index", "percentiles", "serve",
           "synthetic_search_latency", "synthetic_vocabulary", "timed"]

#: groups the synthetic points are spread over, so the access filter has something to do
_GROUPS = ("*", "team-a", "team-b", "team-c")
#: points written per upsert while synthesising
_FILL_BATCH = 4096
#: the "source" payload of every filler point
FILLER_SOURCE = "bench-filler"
#: Zipf's law: the word of frequency rank r is used about 1 / r**s times as often as the first
ZIPF_EXPONENT = 1.0
#: words in the vocabulary of an index with no corpus (the synthetic search latency)
SYNTHETIC_WORDS = 50_000
#: terms per filler point with no corpus to take lengths from: BM25's typical record
SYNTHETIC_TERMS = int(defaults.BM25_AVG_TERMS)
#: distinct words in each synthetic sparse query (a short question's)
SYNTHETIC_QUERY_TERMS = 8


@dataclass(frozen=True)
class Vocabulary:
    """What filler points are written in: sparse term indices, most frequent first, and the
    lengths (in terms, repeats counted) that a filler point's length is drawn from."""

    indices: tuple[int, ...]
    lengths: tuple[int, ...]

    def draw(self, rng: np.random.Generator, total: int) -> np.ndarray:
        """``total`` term indices drawn with Zipf frequencies over the vocabulary's ranks."""
        weights = 1.0 / np.arange(1, len(self.indices) + 1, dtype=np.float64) ** ZIPF_EXPONENT
        cdf = np.cumsum(weights / weights.sum())
        ranks = np.minimum(np.searchsorted(cdf, rng.random(total), side="right"), len(self.indices) - 1)
        return np.asarray(self.indices, dtype=np.int64)[ranks]


def corpus_vocabulary(ledger: Ledger) -> Vocabulary:
    """The words of the ledger's records as the indexer counts them (:func:`sleepd.sparse.document_terms`),
    most used first (ties by index), and each record's length in terms."""
    counts: Counter[int] = Counter()
    lengths: list[int] = []
    for rows in ledger.iter_records():
        for row in rows:
            found = [term_index(t) for t in document_terms(row.title, row.text)]
            counts.update(found)
            lengths.append(len(found))
    if not counts:
        return synthetic_vocabulary()
    return Vocabulary(tuple(sorted(counts, key=lambda i: (-counts[i], i))), tuple(sorted(lengths)))


def synthetic_vocabulary(size: int = SYNTHETIC_WORDS) -> Vocabulary:
    """Made-up words ``w0``, ``w1``, ... (most frequent first), every point :data:`SYNTHETIC_TERMS` long."""
    return Vocabulary(tuple(term_index(f"w{rank}") for rank in range(size)), (SYNTHETIC_TERMS,))


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {"n": len(arr), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2), "mean_ms": round(float(arr.mean()), 2)}


def timed(calls: Mapping[str, Sequence[Callable[[], object]]], warmup: int = 3) -> dict[str, dict[str, float]]:
    """Latency of each named series of calls in milliseconds, after ``warmup`` untimed calls of
    each. The series are interleaved call by call, so load from elsewhere hits them alike."""
    for series in calls.values():
        for call in series[:warmup]:
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(max((len(c) for c in calls.values()), default=0)):
        for name, series in calls.items():
            if i < len(series):
                started = time.perf_counter()
                series[i]()
                samples[name].append((time.perf_counter() - started) * 1000)
    return {name: percentiles(values) for name, values in samples.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(service: Service) -> Iterator[str]:
    """The real API (uvicorn) over ``service`` on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from sleepd.api import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the bench API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _random_points(rng: np.random.Generator, words: np.random.Generator, vocabulary: Vocabulary, count: int,
                   dim: int, first_item: int) -> list[Point]:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = rng.integers(0, len(_GROUPS), size=count)
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(count)]
    return [Point(id=ids[i], vector=vectors[i].tolist(), sparse=sparse,
                  payload={"access": [_GROUPS[groups[i]]], "source": FILLER_SOURCE, "kind": "synthetic",
                           "item_id": first_item + i // 20, "version": 1})
            for i, sparse in enumerate(_sparse_vectors(words, vocabulary, count))]


def _sparse_vectors(rng: np.random.Generator, vocabulary: Vocabulary, count: int) -> list[SparseVector]:
    """``count`` documents of Zipf-drawn words, each as long as a length drawn from the vocabulary's."""
    lengths = np.maximum(rng.choice(np.asarray(vocabulary.lengths, dtype=np.int64), size=count), 1)
    drawn = vocabulary.draw(rng, int(lengths.sum()))
    vectors = []
    for words in np.split(drawn, np.cumsum(lengths)[:-1]):
        indices, counts = np.unique(words, return_counts=True)
        vectors.append(saturated(dict(zip(indices.tolist(), counts.tolist(), strict=True))))
    return vectors


def fill_index(index: VectorIndex, count: int, seed: int = 0, dim: int = defaults.EMBED_DIM,
               vocabulary: Vocabulary | None = None) -> float:
    """Add ``count`` random points, each with a dense and a sparse vector (words of ``vocabulary``,
    made-up ones when None); returns the seconds it took. The words come from a generator of their
    own, so the dense vectors are those of the same seed without words."""
    vocabulary = vocabulary or synthetic_vocabulary()
    rng, words = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    started = time.perf_counter()
    for begin in range(0, count, _FILL_BATCH):
        index.upsert(_random_points(rng, words, vocabulary, min(_FILL_BATCH, count - begin), dim,
                                    10_000_000 + begin // 20))
    return time.perf_counter() - started


def synthetic_search_latency(folder: Path, points: int, queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """Search latency of a fresh edge index holding ``points`` random points: dense, filtered by
    access (a principal in one group) and unfiltered (an admin), and sparse (unfiltered) with
    questions of :data:`SYNTHETIC_QUERY_TERMS` words drawn like the filler's; timed once the dense
    search's first stage serves (its making, from the first search on, is ``first_stage_seconds``)."""
    index = EdgeIndex(folder, defaults.EMBED_DIM)
    try:
        vocabulary = synthetic_vocabulary()
        build_s = fill_index(index, points, seed, vocabulary=vocabulary)
        rng = np.random.default_rng(seed + 1)
        vectors = rng.standard_normal((queries, defaults.EMBED_DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        as_lists = [v.tolist() for v in vectors]
        questions = [_sparse_question(vocabulary.draw(rng, SYNTHETIC_QUERY_TERMS)) for _ in range(queries)]
        started = time.perf_counter()
        scan_s = time.perf_counter() - started if index.warm(600) else None  # the dense first stage (index.scan)
        latency = timed({
            "filtered": [partial(index.search, v, defaults.CANDIDATES, access=["*", "team-a"]) for v in as_lists],
            "admin": [partial(index.search, v, defaults.CANDIDATES) for v in as_lists],
            "sparse": [partial(index.search_sparse, q, defaults.CANDIDATES) for q in questions]})
        return {"points": index.count(), "build_seconds": round(build_s, 2),
                "first_stage_seconds": None if scan_s is None else round(scan_s, 2), **latency,
                "how": f"{points} random unit vectors (numpy normal, seed {seed}, dim {defaults.EMBED_DIM}) with "
                       f"the indexer's payload, access spread over {len(_GROUPS)} groups, each with a sparse vector of "
                       f"{SYNTHETIC_TERMS} words drawn with Zipf frequencies (1 / rank) from {SYNTHETIC_WORDS:,} "
                       "made-up ones, upserted into a fresh embedded Qdrant edge shard via sleepd.index.EdgeIndex; "
                       f"top-{defaults.CANDIDATES} searches with random unit query vectors, and sparse searches with "
                       f"{SYNTHETIC_QUERY_TERMS} words drawn the same way"}
    finally:
        index.close()


def _sparse_question(words: np.ndarray) -> SparseVector:
    """A question's sparse vector (:func:`sleepd.sparse.query_vector`'s shape): each word once, value 1."""
    indices = sorted(set(words.tolist()))
    return SparseVector(tuple(indices), tuple(1.0 for _ in indices))
