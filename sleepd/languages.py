"""Which programming language a file is in, by its extension or its ``#!`` line.

Core, so that the aggregates' planner (``sleepd.aggregates``) and the code enricher
(``workers.enrich.code``) share one table without the core importing the workers. Imports only
the standard library.
"""

from __future__ import annotations

import re

__all__ = ["EXTENSIONS", "language_for"]

#: extension -> tree-sitter grammar name (as tree_sitter_language_pack 0.13 spells it)
EXTENSIONS = {ext: g for g, exts in (
    ("python", "py pyi pyw"), ("javascript", "js mjs cjs jsx"), ("typescript", "ts mts cts"), ("tsx", "tsx"),
    ("go", "go"), ("java", "java"), ("rust", "rs"), ("ruby", "rb rake"), ("c", "c"), ("csharp", "cs"),
    ("cpp", "cpp cc cxx h hpp hh hxx"), ("php", "php"), ("kotlin", "kt kts"), ("swift", "swift"),
    ("scala", "scala sc"), ("bash", "sh bash zsh"), ("lua", "lua")) for ext in exts.split()}
_SHEBANG = {"python": "python", "node": "javascript", "bash": "bash", "sh": "bash", "ruby": "ruby"}


def language_for(path: str, text: str = "") -> str | None:
    """The grammar for ``path`` by extension, else by a ``#!`` line in ``text``; None if not code."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if "." in name:
        return EXTENSIONS.get(name.rsplit(".", 1)[-1].lower())
    words = re.findall(r"[a-z]+", text.partition("\n")[0]) if text.startswith("#!") else []
    return next((_SHEBANG[w] for w in reversed(words) if w in _SHEBANG), None)
