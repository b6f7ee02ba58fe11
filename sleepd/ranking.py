"""Ranking of a query's candidates: keyword weights and matches, the focus on a named item, the
fusion of the dense and sparse lists, and the total order that makes a pack the same in every home."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sleepd import defaults
from sleepd.aggregates import is_aggregate, is_test_path
from sleepd.index import Hit
from sleepd.pack import RAW_KIND
from sleepd.schema import Record
from sleepd.sparse import terms as _terms

#: weight of the keyword overlap against the cosine score; identifiers matter in code
KEYWORD_WEIGHT = 0.3
#: a small prior by kind: a symbol or section is denser evidence than a whole-file summary
KIND_PRIOR = {"symbol": 0.02, "section": 0.02, "file_summary": 0.0, "chunk": 0.0, "clause": 0.02,
              "contract_card": 0.01, "questions": 0.01,
              # LLM layer: a pre-computed answer to a likely question is the densest evidence there is
              "summary": 0.01, "qa": 0.03, "relation": 0.01, "risk": 0.02,
              # aggregates: a portfolio line answers a question across contracts at once
              "repo_map": 0.01, "package_summary": 0.01, "test_map": 0.0, "portfolio": 0.03, "source_overview": 0.0}
#: the question's words that name no item, as a second query over the named items: its weight
TOPIC_WEIGHT = 1.0
#: an item is named by a question when this many of its words are in all its candidate records...
FOCUS_NAME_TERMS = 2
#: ... of which there are at least this many, among the items of the top this-many rows
FOCUS_ROWS = 3
FOCUS_TOP = 3
#: ... and a question whose other words (its topic) are at most this many
FOCUS_MAX_TOPIC = 12
#: within a named item (:func:`_within_named`): the share of the first-stage score's differences
#: kept, the topic cosine's weight and the topic keyword score's (relative to the best). Tune half
#: (30 contracts, 141 clause questions), recall at 512/1,024/2,048 tokens, the bench's template /
#: hand-written wordings (not committed: "When was <name> signed?"): topic added to the first stage
#: (weight 1, before) .610/.851/.960 / .605/.869/.971; weight 2 .637/.871/.957 / .628/.901/.981;
#: weight 3 .671/.867/.964 / .628/.897/.974; within the item, share 0 .704/.908/.978 /
#: .649/.892/.943 ("when was it signed?" lost its preamble); 0.5 .707/.898/.964 / .660/.914/.964;
#: 0.3 .730/.913/.964 / .663/.914/.964
NAMED_FIRST_STAGE = 0.3
NAMED_TOPIC_WEIGHT = 2.0
NAMED_TOPIC_LEXICAL = 0.5
#: words every text repeats, which name nothing: "we" and "have" in every clause of a franchise
#: agreement written in the first person made "Where do we have to warn the other side ..." name it
FUNCTION_WORDS = frozenset({
    "we", "us", "our", "you", "your", "they", "them", "their", "he", "she", "his", "her", "its", "have", "has", "had",
    "was", "were", "been", "being", "will", "shall", "may", "must", "would", "could", "should", "not", "no", "any",
    "all", "other", "such", "that", "these", "those", "there", "then", "than", "so", "into", "under", "upon", "about",
    "after", "before", "over", "each", "either", "also", "only", "own", "same", "more", "most", "some"})
#: name words at most this many tokens apart belong to one name ("Promotion Agreement between Ashworth")
NAME_GAP = 2
#: tests restate the code they exercise, in a bug report's words; they rank below it unless the
#: question is about tests. SWE-bench, code tune half (23 issues), function-level recall at
#: 512/1,024/2,048 tokens (NAMED_WEIGHT 0.3): 0.05 .130/.196/.283; 0.15 .130/.196/.341; 0.3 .188/.297/.341;
#: 0.5 the same
TEST_PENALTY = 0.3
#: a question is about tests when it says so ...
TEST_WORDS = frozenset({"test", "tests", "fixture"})
#: ... in at most this many distinct terms: a bug report says "test" in passing (its repro is a
#: test; pytest's reports say "fixture"), and then its tests, which restate its words, filled
#: the pack ahead of the code at fault
TEST_QUESTION_TERMS = 30
#: keyword scoring reads this much of a record's text
KEYWORD_CHARS = 4000
#: a record whose title is a name the question quotes (:func:`quoted_names`: the function or class a
#: bug report names) gains this: among a long report's hundred words, the name says where to look.
#: SWE-bench, code tune half (23 issues), function-level recall at 256/1,024/4,096 tokens (with
#: identifiers as sparse terms, TEST_PENALTY 0.3): 0 .000/.167/.319; 0.15 .000/.210/.319; 0.3 .130/.297/.362;
#: 0.5 .174/.297/.362
NAMED_WEIGHT = 0.5
#: scores are compared to this many decimals; closer ones are ties, broken by content (issue 12)
SCORE_DIGITS = 6
_TOKEN = re.compile(r"[\w/.&'-]+|[?!;:()]")
#: what ends a sentence (and so a name) among :data:`_TOKEN`'s tokens
_SENTENCE_ENDS = frozenset("?!;:")
#: words that join the parts of a name: "between A and B", "A & B", "Agreement, dated as of"
_CONNECTORS = frozenset({"between", "among", "and", "&", "of", "the", "by", "with", "dated", "as", "d"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[a-z0-9][A-Z]")


def quoted_names(text: str) -> frozenset[str]:
    """The identifiers ``text`` quotes: words joined by underscores or in camelCase (``register_hook``,
    ``PolyFit``, ``getUserName``), which prose does not use. A plain word ("request", "Session")
    is not one: it names too much; nor a dunder (``__call__``): every other class has one."""
    return frozenset(w for w in _IDENTIFIER.findall(text) if "_" in w.strip("_") or _CAMEL.search(w))


def _named(names: frozenset[str], row: Record) -> bool:
    """Whether the record's title ends in a name the question quotes (a symbol's qualified name)."""
    return bool(names) and row.title.rsplit(".", 1)[-1] in names


#: the question's words in a record's title and in the start of its text, by record id: worked out
#: once a query for each candidate, then read by the weights, every keyword score and the focus
#: (a record's text is the same under its id within a query)
Matches = dict[str, tuple[frozenset[str], frozenset[str]]]


def _matches(terms: frozenset[str], row: Record, memo: Matches) -> tuple[frozenset[str], frozenset[str]]:
    """The words of ``terms`` in the record's title, and in the start of its text (what keyword
    scoring reads), from ``memo`` when this query has met the record before."""
    found = memo.get(row.id)
    if found is None:
        found = memo[row.id] = (terms & _terms(row.title), terms & _terms(row.text[:KEYWORD_CHARS]))
    return found


def _term_weights(query_terms: frozenset[str], rows: list[Record], memo: Matches | None = None) -> dict[str, float]:
    """Each query word's weight: 1, plus its inverse document frequency among the candidates. A
    word every candidate shares (the name of the contract they all come from) counts less than
    the word only one of them has (the clause's topic), but still counts: a customer's name is
    what picks their account. (Pure IDF weights cost tau2 retail 0.037 of recall at 1,024 tokens.)"""
    memo = {} if memo is None else memo
    seen = [title | text for title, text in (_matches(query_terms, r, memo) for r in rows)]
    n = len(seen)
    # in sorted order: a float sum depends on the order of its terms, and a frozenset's order on
    # the process's hash seed (two processes would rank exact ties apart by the last bit)
    return {t: 1.0 + math.log((n + 1) / (sum(t in s for s in seen) + 0.5)) for t in sorted(query_terms)}


def _keyword_score(weights: dict[str, float], matches: tuple[frozenset[str], frozenset[str]]) -> float:
    """The weighted share of the question's words in the record (``matches``: those in its title,
    those in its text): its title (a symbol's qualified name, a section's heading path) names what
    it is about; a long body mentions many words in passing, so each counts for half."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    title, text = matches
    in_title = sum(w for t, w in weights.items() if t in title) / total
    in_text = sum(w for t, w in weights.items() if t in text) / total
    return (in_title + in_text) / 2


def focus(text: str, terms: frozenset[str], scored: list[tuple[float, Record]],
           memo: Matches | None = None) -> Focus | None:
    """The items a question names, and what it asks about them; None when it names none.

    An item is named when at least :data:`FOCUS_NAME_TERMS` of the question's words appear in every
    one of its candidate enriched records (at least :data:`FOCUS_ROWS` of them; raw windows aside):
    a contract's name and parties head each of its clauses, a module's name each of its symbols. The topic is the
    question without those words (and without stop words). Only a short topic is asked again
    (at most :data:`FOCUS_MAX_TOPIC` words: "the governing law clause of <a contract's name>"): in
    a customer's long message or an issue's text the name is a small part, the first embedding
    already holds the topic, and a second one costs ~10-20 ms for nothing (tau2, SWE-bench)."""
    memo = {} if memo is None else memo
    # a raw window is not written to name its item (a clause is headed by its contract's name)
    enriched = [row for _, row in scored if row.kind != RAW_KIND]
    by_item: dict[int, list[Record]] = {}
    for row in enriched:
        by_item.setdefault(row.item_id, []).append(row)
    named: list[int] = []
    common_words: set[str] = set()
    for item_id in dict.fromkeys(r.item_id for r in enriched[:FOCUS_TOP]):
        rows = by_item[item_id]
        # an aggregate names many items in each of its records, and is named by none
        if len(rows) < FOCUS_ROWS or is_aggregate(rows[0].path):
            continue
        # the question's words in every one of them
        common = frozenset.intersection(*(title | body for title, body in (_matches(terms, r, memo) for r in rows)))
        common -= FUNCTION_WORDS
        if len(common) >= FOCUS_NAME_TERMS:
            named.append(item_id)
            common_words |= common
    topic, proper = _topic(text, common_words) if named else ("", False)
    if not topic or len(_terms(topic)) > FOCUS_MAX_TOPIC:
        return None
    return Focus(named, topic, proper)


class Focus(NamedTuple):
    """What :func:`focus` finds: the items a question names and its topic, and whether it names
    them by a proper name (a phrase of their words with a capitalised word in it: "the Promotion
    Agreement between Ashworth, Inc. and ..."), as a person names a contract, a party or a module,
    rather than by words an item happens to repeat in every record ("the year the company was
    founded": a knowledge base's company profile repeats "company" and "year")."""

    items: list[int]
    topic: str
    proper: bool


def _topic(text: str, name: set[str]) -> tuple[str, bool]:
    """``text`` without the phrase that names the item and without stop words, in order.

    The name is where the words of ``name`` (stemmed terms) cluster (:func:`_name_spans`), not
    every word of ``name`` wherever it stands: in "the Agreement Date clause of the Promotion
    Agreement between Ashworth, Inc. and James W. Nantz" the first "Agreement" is what is asked
    about, and the parties after the title belong to the name even when not every record of the
    item repeats them (the topic "Date clause between ASHWORTH JAMES W. III" embedded the parties
    and lost "Agreement"; tune half, 141 clause questions)."""
    tokens = [m.group(0) for m in _TOKEN.finditer(text)]
    dropped, proper = _name_spans(tokens, name)
    kept = [w for i, w in enumerate(tokens) if i not in dropped and _terms(w)]
    return " ".join(kept), proper


def _name_spans(tokens: list[str], name: set[str]) -> tuple[set[int], bool]:
    """The positions of ``tokens`` that name the item: each cluster of name words (name words at most
    :data:`NAME_GAP` tokens apart) of at least two of them, or the largest cluster when none has
    two, with the capitalised words and connectors that follow it to the end of the sentence
    ("between ASHWORTH, INC. and JAMES W. NANTZ III"): the parties and the rest of a title; and
    whether a cluster of two or more holds a capitalised word (not the question's first)."""
    marks = [i for i, w in enumerate(tokens) if (t := _terms(w)) and t <= name]
    clusters: list[list[int]] = []
    for i in marks:
        if clusters and i - clusters[-1][-1] <= NAME_GAP + 1 and not _ends(tokens[clusters[-1][-1]:i]):
            clusters[-1].append(i)
        else:
            clusters.append([i])
    if not clusters:
        return set(), False
    phrases = [c for c in clusters if len(c) >= 2]
    chosen = phrases or [max(clusters, key=len)]
    proper = any(tokens[i][0].isupper() for c in phrases for i in c if i > 0)
    dropped: set[int] = set()
    for cluster in chosen:
        end = cluster[-1] + 1
        while end < len(tokens) and _continues_name(tokens[end]):
            if tokens[end] == "(":  # "Supply Agreement (DA-9801 licensed products) between ...": all of it
                closing = tokens.index(")", end) if ")" in tokens[end:] else end
                end = closing
            end += 1
        dropped.update(range(cluster[0], end))
    return dropped, proper


def _ends(tokens: list[str]) -> bool:
    return any(w in _SENTENCE_ENDS for w in tokens)


def _continues_name(word: str) -> bool:
    """Whether ``word`` may go on a name: a capitalised word, a number, or a connector of parties."""
    return word not in _SENTENCE_ENDS and (word[0].isupper() or word[0].isdigit() or word == "("
                                           or word.lower() in _CONNECTORS)


def rank_key(pair: tuple[float, Record]) -> tuple[float, str, str, str, str, str, str]:
    """A total order on scored rows that is the same in every home built from the same content:
    the score rounded to :data:`SCORE_DIGITS` (two homes' stored vectors may differ in the last
    bits), then what the row says and where, never its id (ids come from item ids, which depend on
    the order items were first seen) nor the order the ledger or the index returned it in."""
    score, row = pair
    return (-round(score, SCORE_DIGITS), row.source, row.path, row.evidence, row.kind, row.title, row.text)


def settled(hits: list[Hit], limit: int) -> list[Hit]:
    """``hits`` without those tied with the last one when the search was cut at ``limit``: of points
    with the same score (the same text twice), which ones make the cut depends on where the index
    stored them, and so on the order of writes; none of them does, then (unless all are tied)."""
    if len(hits) < limit or not hits:
        return hits
    last = hits[-1].score
    kept = [h for h in hits if h.score != last]
    return kept or hits


def fuse(lists: list[list[Hit]], weights: list[float], k: int = defaults.RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each id's sum over the lists of ``weight (k + 1) / (k + rank)`` (1 for
    the first of a list of weight 1). Ranks count scores rounded to :data:`SCORE_DIGITS`, and equal
    ones share the better rank: two homes' scores may differ in the last bits, their ranks may not."""
    fused: dict[str, float] = {}
    for hits, weight in zip(lists, weights, strict=True):
        rank, previous = 0, None
        for position, hit in enumerate(hits, start=1):
            score = round(hit.score, SCORE_DIGITS)
            if score != previous:
                rank, previous = position, score
            fused[hit.id] = fused.get(hit.id, 0.0) + weight * (k + 1) / (k + rank)
    return fused


def relative(hits: list[Hit]) -> dict[str, float]:
    """Each sparse hit's score over the best one's, in (0, 1]: BM25 sums IDF over the shared words,
    so its scale depends on the question's length and the corpus; the ratio does not. The ratio is
    rounded to :data:`SCORE_DIGITS` (two homes' scores may differ in the last bits)."""
    best = max((h.score for h in hits), default=0.0)
    if best <= 0:
        return {}
    return {h.id: round(h.score / best, SCORE_DIGITS) for h in hits}


def cosine(vector: Sequence[float], embedding: bytes) -> float:
    """The cosine of the question to a record's stored embedding (both L2-normalised)."""
    return float(np.dot(np.asarray(vector, dtype=np.float32), np.frombuffer(embedding, dtype=np.float32)))


def rank(terms: frozenset[str], rows: list[Record], dense: dict[str, float],
          topical: dict[str, float], fused: dict[str, float],
          lexical: dict[str, float] | None = None, memo: Matches | None = None,
          names: frozenset[str] = frozenset(), named: Named | None = None) -> list[tuple[float, Record]]:
    """Rows by score, best first: cosine to the question (a row found only by the focused search
    gets the lowest cosine seen), weighted keyword overlap, a prior by kind, a penalty for
    tests, the cosine to the focused topic (the lowest one seen outside the focus), and the
    first stage's reciprocal rank fusion of the dense and sparse lists, weighted, and the sparse
    search's own score relative to its best (:func:`relative`): the cosine's counterpart, without
    which a record the keywords find first but the embedding places far (an account named by a
    customer's name, zip code and order id in a long message) ranks by its low cosine alone.
    The records of the items a question names (``named``) are ranked among themselves by its
    topic alone (:func:`_within_named`)."""
    lexical = lexical or {}
    memo = {} if memo is None else memo
    weights = _term_weights(terms, rows, memo)
    wants_tests = bool(terms & TEST_WORDS) and len(terms) <= TEST_QUESTION_TERMS
    floor = min(dense.values(), default=0.0)
    topic_floor = min(topical.values(), default=0.0)
    scored = [(dense.get(r.id, floor) + KEYWORD_WEIGHT * _keyword_score(weights, _matches(terms, r, memo))
               + KIND_PRIOR.get(r.kind, 0.0)
               + TOPIC_WEIGHT * topical.get(r.id, topic_floor) + defaults.FUSION_WEIGHT * fused.get(r.id, 0.0)
               + defaults.SPARSE_SCORE_WEIGHT * lexical.get(r.id, 0.0) + NAMED_WEIGHT * _named(names, r)
               - (TEST_PENALTY if not wants_tests and is_test_path(r.path) else 0.0), r)
              for r in rows]
    if named is not None:
        scored = _within_named(scored, named, topical, topic_floor)
    return sorted(scored, key=rank_key)


@dataclass(frozen=True)
class Named:
    """The items a question names and how the records of each match its topic: the topic's sparse
    (keyword) search within them, each hit's score relative to the best (:func:`relative`)."""

    items: frozenset[int]
    topic_lexical: dict[str, float]


def _within_named(scored: list[tuple[float, Record]], named: Named, topical: dict[str, float],
                  topic_floor: float) -> list[tuple[float, Record]]:
    """``scored`` with each record of a named item re-scored: its item's best score, plus the
    record's cosine to the topic and its topic keyword score, and its kind's prior. Within a
    named contract every record repeats its name and parties, so the question's own cosine,
    keywords and fusion say how much of the name a record holds (the preamble, the parties'
    addresses), not whether it is the clause asked about; a clause that only the focused search
    found had no first-stage score at all. Yet the name is what a preamble is found by ("when was
    it signed?"), so a share of the first-stage differences stays (:data:`NAMED_FIRST_STAGE`)."""
    best: dict[int, float] = {}
    for score, row in scored:
        if row.item_id in named.items:
            best[row.item_id] = max(best.get(row.item_id, score), score)
    return [(best[r.item_id] + NAMED_FIRST_STAGE * (s - best[r.item_id])
             + (NAMED_TOPIC_WEIGHT - TOPIC_WEIGHT) * topical.get(r.id, topic_floor)
             + NAMED_TOPIC_LEXICAL * named.topic_lexical.get(r.id, 0.0), r)
            if r.item_id in named.items else (s, r) for s, r in scored]
