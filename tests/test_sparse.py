"""The sparse side's words and vectors: the same split for questions and records, stable indices,
BM25 saturation."""

from __future__ import annotations

import subprocess
import sys
import zlib

from sleepd import defaults
from sleepd.sparse import document_vector, query_vector, term_index, term_list, terms


def test_questions_and_records_split_words_the_same_way() -> None:
    assert terms("getUserName of zorblax-417") == {"getusername", "get", "user", "name", "zorblax", "417"}
    assert set(term_list("Redirects redirected the redirect")) == {"redirect"}
    assert term_list("a the of") == []  # stop words only


def test_term_indices_are_the_same_in_every_process() -> None:
    """Python's hash is salted per process; crc32 is not: an index written by one process is
    searched by another."""
    assert term_index("zorblax") == zlib.crc32(b"zorblax")
    code = "from sleepd.sparse import term_index; print(term_index('zorblax'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=".")
    assert int(out.stdout) == term_index("zorblax")


def test_document_values_saturate_with_term_frequency() -> None:
    once, thrice = document_vector("", "penalty clause"), document_vector("", "penalty penalty penalty clause")
    value = {i: v for i, v in zip(once.indices, once.values, strict=True)}[term_index("penalty")]
    more = {i: v for i, v in zip(thrice.indices, thrice.values, strict=True)}[term_index("penalty")]
    assert 0 < value < more < defaults.BM25_K1 + 1
    assert list(once.indices) == sorted(set(once.indices))


def test_the_title_counts_more_than_the_text() -> None:
    vector = document_vector("penalty", "clause")
    values = dict(zip(vector.indices, vector.values, strict=True))
    assert values[term_index("penalty")] > values[term_index("clause")]


def test_a_question_is_each_distinct_term_once_with_value_one() -> None:
    vector = query_vector(terms("penalty Penalty zorblax"))
    assert vector.indices == tuple(sorted({term_index("penalty"), term_index("zorblax")}))
    assert vector.values == (1.0, 1.0)


def test_an_identifier_joined_by_underscores_is_a_term_beside_its_parts() -> None:
    """Issue 12: ``register_hook`` was only ``register`` and ``hook``, two words every module of a
    code base has; the whole name is the rare term a bug report quotes."""
    assert terms("Session.register_hook breaks") == {"session", "register_hook", "register", "hook", "break"}
    assert terms("__call__ _format_repr x") == {"__call__", "call", "_format_repr", "format", "repr", "x"}
