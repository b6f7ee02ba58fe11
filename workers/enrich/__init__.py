"""Deterministic enrichers: turn one file's text into draft memory records, with no model and no I/O.

Usage: ``drafts = enrich_text("click/core.py", source)``.

``profile="auto"`` sends known source-code extensions (and ``#!`` scripts) to the code enricher
(:mod:`workers.enrich.code`: a SYMBOL per class/function/method plus a FILE_SUMMARY) and
everything else to the prose enricher (:mod:`workers.enrich.docs`: SECTIONs by heading, CHUNKs as
the fallback). Code that cannot be parsed degrades to CHUNKs rather than raising.
``profile="contracts"`` sends every file to the contracts enricher (:mod:`workers.enrich.contracts`:
a CLAUSE per clause, classified into CUAD categories, and one CONTRACT_CARD); "auto" never picks it.
"""

from __future__ import annotations

from sleepd import defaults
from sleepd.records import Draft
from workers.enrich.accounts import enrich_account
from workers.enrich.code import enrich_code, language_for
from workers.enrich.contracts import enrich_contract
from workers.enrich.docs import enrich_docs

__all__ = ["PROFILES", "enrich_text"]

PROFILES = defaults.PROFILES


def enrich_text(path: str, text: str, profile: str = "auto") -> list[Draft]:
    """Draft records for one file.

    ``path`` is relative to the source root; it is what evidence cites and what module names and
    titles are built from. ``profile`` is one of :data:`PROFILES`: ``"auto"`` picks ``"code"`` for
    known source-code extensions (py, js, jsx, ts, tsx, go, java, rs, rb, c, h, cpp, hpp, cc, cs,
    php, kt, swift, scala, sh, lua, ...; see :data:`workers.enrich.code.EXTENSIONS`) and for
    ``#!`` scripts, else ``"docs"``. Every draft's evidence satisfies
    ``text.splitlines()[start - 1:end]`` == the lines it was made from. Empty or whitespace-only
    text gives ``[]``. Raises ValueError for an unknown profile (checked before anything else).
    ``meta`` holds ``language``/``module`` or ``symbol_kind``/``def_line`` (code), ``format`` (docs),
    and ``fallback`` (``unsupported``/``too_large``/``syntax_error``) where code became CHUNKs.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown enrich profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if not text.strip():
        return []
    if profile == "accounts":  # an sql item: ``text`` is sleepd.sql.rows.account_document(...)
        return enrich_account(path, text)
    if profile == "contracts":
        return enrich_contract(path, text)
    if profile == "code" or (profile == "auto" and language_for(path, text) is not None):
        return enrich_code(path, text)
    return enrich_docs(path, text)
