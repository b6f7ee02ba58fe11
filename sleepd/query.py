"""Answer a question from c' within a token budget: candidates from the index (a dense and a sparse
search, fused by reciprocal rank), verified against the ledger, ranked (cosine + keyword + kind +
fusion + sparse score), packed with a real tokenizer."""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from pathlib import Path

from sleepd import defaults, routing
from sleepd.auth import Principal
from sleepd.cards import CARD_BUDGET, CARD_ITEMS, CARD_KIND
from sleepd.embed import Embedder
from sleepd.errors import BadRequest
from sleepd.glossary import expand
from sleepd.index import VectorIndex
from sleepd.ledger import Ledger
from sleepd.order import item_scores
from sleepd.pack import MIN_PARTIAL, PackedRecord, QueryResult, fit, pack, record_header
from sleepd.ranking import Matches, Named, cosine, focus, fuse, quoted_names, rank, rank_key, relative, settled
from sleepd.schema import Item, QueryLogRow, Record
from sleepd.sparse import query_vector
from sleepd.sparse import terms as _terms
from sleepd.tokens import Tokenizer

__all__ = ["MIN_PARTIAL", "PackedRecord", "QueryEngine", "QueryResult", "candidate_pool", "check_query", "fit", "fuse",
           "rank_key", "record_header", "settled"]

log = logging.getLogger("sleepd.query")

#: query-log rows written per ledger transaction at most
LOG_BATCH = 256
#: a query's log row waits this long for others to share its transaction: one commit (1.3 ms of
#: the log thread's CPU, taken from the next query) per busy half second instead of per query
LOG_SECONDS = 0.5


def check_query(q: object, budget: object) -> tuple[str, int]:
    """Validate a query and budget, or raise BadRequest saying what is wrong."""
    if not isinstance(q, str) or not q.strip():
        raise BadRequest("query 'q' must be a non-empty string")
    if len(q) > defaults.MAX_QUERY_CHARS:
        raise BadRequest(f"query is {len(q)} characters; the limit is {defaults.MAX_QUERY_CHARS}")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise BadRequest(f"budget must be an integer, got {budget!r}")
    if not defaults.MIN_BUDGET <= budget <= defaults.MAX_BUDGET:
        raise BadRequest(f"budget {budget} is out of range: use {defaults.MIN_BUDGET}..{defaults.MAX_BUDGET} tokens")
    return q.strip(), budget


def candidate_pool(budget: int) -> int:
    """Candidates asked of the index for a budget: :data:`~sleepd.defaults.CANDIDATES`, or one per
    :data:`~sleepd.defaults.CANDIDATE_TOKENS` of budget when that is more, at most
    :data:`~sleepd.defaults.MAX_CANDIDATES` (the query doubles it while a pack does not fill)."""
    return max(defaults.CANDIDATES, min(defaults.MAX_CANDIDATES, budget // defaults.CANDIDATE_TOKENS))


def _may_read(principal: Principal, rows: list[Record]) -> list[Record]:
    """The rows ``principal`` may read (an admin reads everything: no access list to parse)."""
    if principal.access is None:
        return rows
    return [r for r in rows if principal.can_read(json.loads(r.access))]


class QueryEngine:
    def __init__(self, ledger: Ledger, index: VectorIndex, embedder: Embedder, tokenizer: Tokenizer,
                 roots: dict[str, Path] | None = None) -> None:
        self.ledger = ledger
        self.index = index
        self.embedder = embedder
        self.tokenizer = tokenizer
        #: the vector of a question or a named item's topic ("the governing law", asked of contract
        #: after contract), by its text: an embedding is most of a query's CPU
        self.vector = functools.lru_cache(maxsize=defaults.VECTOR_CACHE)(self._encode)
        #: source name -> folder, to read the raw region of an item changed since enrichment
        self.roots = roots or {}
        # the query log is written by a thread of its own: a ledger commit is not the caller's wait
        self._log: queue.SimpleQueue[QueryLogRow | threading.Event | None] = queue.SimpleQueue()
        self._log_thread = threading.Thread(target=self._write_log, name="sleepd-query-log", daemon=True)
        self._log_thread.start()

    def _encode(self, text: str) -> tuple[float, ...]:
        return tuple(self.embedder.encode_one(text).tolist())

    def _write_log(self) -> None:
        while True:
            batch = [self._log.get()]
            deadline = time.monotonic() + LOG_SECONDS
            # rows gather until the deadline; a flush or close writes them at once
            while isinstance(batch[-1], QueryLogRow) and len(batch) < LOG_BATCH:
                try:
                    batch.append(self._log.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            rows = [r for r in batch if isinstance(r, QueryLogRow)]
            try:
                self.ledger.log_query(*rows)
            except Exception:  # a full disk must not stop queries; the next batch tries again
                log.exception("could not write %d query-log rows", len(rows))
            for marker in batch:
                if isinstance(marker, threading.Event):
                    marker.set()
            if None in batch:
                return

    def flush_log(self, timeout: float = 10.0) -> None:
        """Wait until every query answered so far is in the query log."""
        done = threading.Event()
        self._log.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued for the query log and stop its thread."""
        if self._log_thread.is_alive():
            self._log.put(None)
            self._log_thread.join(timeout=10.0)

    def query(self, q: object, budget: object, principal: Principal) -> QueryResult:
        started = time.perf_counter()
        text, limit = check_query(q, budget)
        vector = self.vector(text)
        terms = _terms(text)
        memo: Matches = {}  # each candidate's words are looked at once, whatever the pool
        pool = candidate_pool(limit)
        while True:
            scored, items, exhausted = self._candidates(text, terms, vector, memo, pool, principal)
            cards = self._cards(text, scored, limit, principal)
            result = pack(self.tokenizer, text, limit, scored, items, self.roots, cards)
            # a pack that did not fill while the index may hold more: ask for twice as many
            if exhausted or pool >= defaults.MAX_CANDIDATES or limit - result.tokens_used < MIN_PARTIAL:
                break
            pool = min(pool * 2, defaults.MAX_CANDIDATES)
        packed = {(r.source, r.item) for r in result.records}
        self._log.put(QueryLogRow(
            at=time.time(), principal=principal.name, query=text, budget=limit,
            tokens_used=result.tokens_used, n_records=len(result.records), route=result.route,
            latency_ms=(time.perf_counter() - started) * 1000,
            items=json.dumps(sorted({r.item_id for _, r in scored if (r.source, r.path) in packed}))))
        return result

    def _candidates(self, text: str, terms: frozenset[str], vector: tuple[float, ...], memo: Matches, pool: int,
                    principal: Principal) -> tuple[list[tuple[float, Record]], dict[int, Item], bool]:
        """The readable candidates, ranked, with their items, and whether the index has no more
        (the dense search returned fewer than ``pool`` hits)."""
        hits = self.index.search(vector, pool, access=principal.access)
        dense_hits = settled(hits, pool)
        # the question's words, for what no embedding places: a made-up name, an error code, an id
        sparse_hits = settled(self.index.search_sparse(query_vector(terms), pool, access=principal.access), pool)
        dense = {h.id: h.score for h in dense_hits}
        lexical = relative(sparse_hits)
        fused = fuse([dense_hits, sparse_hits], [defaults.DENSE_RRF_WEIGHT, defaults.SPARSE_RRF_WEIGHT])
        across = routing.cross_item(text)
        if across:  # a question across items: the aggregates are candidates too (sleepd.routing)
            near, words = (settled(h, pool) for h in routing.aggregate_hits(
                self.index, self.ledger, vector, terms, pool, principal.access))
            dense = {h.id: h.score for h in near} | dense
            own = fuse([near, words], [defaults.DENSE_RRF_WEIGHT, defaults.SPARSE_RRF_WEIGHT])
            lexical = lexical | {i: max(score, lexical.get(i, 0.0)) for i, score in relative(words).items()}
            fused = fused | {i: max(score, fused.get(i, 0.0)) for i, score in own.items()}
        rows, items = self._readable(list(dense) + sorted(fused.keys() - dense.keys()), principal)
        # found by its words alone: its cosine from the embedding stored beside it (the candidates'
        # read leaves embeddings out, so these few are read again)
        for rid, embedding in self.ledger.embeddings([r.id for r in rows if r.id not in dense]).items():
            dense[rid] = cosine(vector, embedding)
        names = quoted_names(text)
        scored = rank(terms, rows, dense, {}, fused, lexical, memo, names)
        # a question across items names none of them (the aggregates answer it)
        named = None if across else focus(text, terms, scored, memo)
        if named is not None:
            # the question names an item: ask again, of that item alone, what it asks about it
            # (without the name, whose words dominate the question's embedding)
            item_ids, topic, proper = named
            topic_hits = self.index.search(self.vector(expand(topic)), pool, access=principal.access, items=item_ids)
            topical = {h.id: h.score for h in settled(topic_hits, pool)}
            within = None
            if proper:  # named by a proper name: its records rank by the topic (ranking._within_named)
                topic_words = settled(self.index.search_sparse(query_vector(_terms(topic)), pool,
                                                               access=principal.access, items=item_ids), pool)
                within = Named(frozenset(item_ids), relative(topic_words))
            found = topical.keys() | (within.topic_lexical.keys() if within else set())
            more, more_items = self._readable(sorted(found - dense.keys()), principal)
            rows, items = rows + more, items | more_items
            scored = rank(terms, rows, dense, topical, fused, lexical, memo, names, within)
        return routing.promote(scored) if across else scored, items, len(hits) < pool

    def _cards(self, text: str, scored: list[tuple[float, Record]], limit: int,
               principal: Principal) -> dict[int, Record]:
        """The cards the caller may read of the items a pack of ``limit`` tokens may card: none
        above :data:`~sleepd.cards.CARD_BUDGET`, nor for a question across items, which the
        aggregates answer a line an item (the tune half's portfolio questions lost up to .03 of
        recall to cards beside them)."""
        if limit > CARD_BUDGET or routing.cross_item(text):
            return {}
        item_ids = [item for item, _ in item_scores(scored)[:CARD_ITEMS]]
        cards = self.ledger.item_cards(item_ids, CARD_KIND)
        readable = {c.id for c in _may_read(principal, list(cards.values()))}
        return {i: c for i, c in cards.items() if c.id in readable}

    def _readable(self, ids: list[str], principal: Principal) -> tuple[list[Record], dict[int, Item]]:
        rows, items = self.ledger.current_records(ids)
        # a card is packed by its item (sleepd.cards), not found as a record of its own
        return _may_read(principal, [r for r in rows if r.kind != CARD_KIND]), items
