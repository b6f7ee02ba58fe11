"""Terms of art a question may name, and what they mean in plain words, for the query to embed.

A small embedding model knows "governing law" but not "ROFR" or "cap on liability" well enough to
find a clause that never uses the term. When a question names one, the query embeds the term's
meaning with it. The contract terms are the CUAD v1 clause categories (:mod:`sleepd.cuad`, the one
list the contracts profile also classifies clauses into), with their plain-words meanings.
"""

from __future__ import annotations

import re

from sleepd.cuad import CLAUSE_CATEGORIES, PLAIN_WORDS

__all__ = ["ALIASES", "TERMS", "describe", "expand"]

#: a term (lower case) -> its meaning: every CUAD category with a meaning, then the aliases below
TERMS: dict[str, str] = {name.lower(): meaning for name, meaning in CLAUSE_CATEGORIES.items() if meaning}

#: other names of the same terms
ALIASES = {"rofr": "rofr/rofo/rofn", "rofo": "rofr/rofo/rofn", "rofn": "rofr/rofo/rofn",
           "right of first refusal": "rofr/rofo/rofn", "mfn": "most favored nation",
           "most favoured nation": "most favored nation", "limitation of liability": "cap on liability",
           "non-solicitation": "no-solicit of employees", "escrow": "source code escrow",
           "auto-renewal": "renewal term", "automatic renewal": "renewal term"}
for _alias, _term in ALIASES.items():
    TERMS.setdefault(_alias, TERMS[_term])

_PATTERN = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(TERMS, key=len, reverse=True)) + r")\b", re.I)


def expand(text: str) -> str:
    """``text`` followed by the meaning of each term of art it names (longest match first), or
    ``text`` unchanged when it names none."""
    meanings = dict.fromkeys(TERMS[m.group(0).lower()] for m in _PATTERN.finditer(text))
    return f"{text} ({'; '.join(meanings)})" if meanings else text


def describe(category: str) -> str:
    """A CUAD category's meaning and what people say instead of its name, in one line (``""`` for a
    name that is no category): what the contract portfolio's clause index is found by."""
    meaning = CLAUSE_CATEGORIES.get(category)
    return "; ".join(p for p in (meaning, PLAIN_WORDS.get(category)) if p)
