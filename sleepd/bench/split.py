"""The tuning and test halves of every bench corpus, drawn by a hash so they never move.

An item belongs to a half by the SHA-256 of ``"<kind>:<id>"`` (a contract by its file name, a
SWE-bench issue by its repository and instance, a tau2 task by its domain and id): even lowest
bit, the tuning half; odd, the test half. Python's ``hash`` is salted per process, so it is not
used. Tune only on ``tune``; the README reports only ``test``.
"""

from __future__ import annotations

import hashlib

__all__ = ["HALVES", "SPLIT_RULE", "half_of", "in_half"]

#: ``all`` keeps both halves (the figures of a full run before the split)
HALVES = ("tune", "test", "all")
SPLIT_RULE = ("each item is in the tuning or the test half by the lowest bit of sha256('<kind>:<id>'): contracts "
              "by file name (a question follows its contract), code by repository and SWE-bench instance, "
              "accounts by tau2 task; even = tune, odd = test (kb: by the parity of the first byte of "
              "sha256(question id), sleepd/bench/kb.py)")


def half_of(kind: str, key: str) -> str:
    """``"tune"`` or ``"test"``: the half that ``key`` (an id of a ``kind`` of item) falls in."""
    digest = hashlib.sha256(f"{kind}:{key}".encode()).digest()
    return "test" if digest[-1] & 1 else "tune"


def in_half(kind: str, key: str, half: str) -> bool:
    """Whether ``key`` is in ``half`` (always, for ``"all"``)."""
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; expected one of {', '.join(HALVES)}")
    return half == "all" or half_of(kind, key) == half
