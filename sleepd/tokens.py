"""Token counting with a real tokenizer (cl100k/o200k ship offline in ``bpe-openai``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import bpe_openai

from sleepd.errors import ConfigError

__all__ = ["Tokenizer", "get_tokenizer"]

_ALIASES = {"cl100k": "cl100k_base", "o200k": "o200k_base"}
#: token counts kept, by text (the texts with them: 32 MB at most)
COUNTS_KEPT = 8192
KEPT_CHARS = 4096


class Tokenizer:
    def __init__(self, name: str) -> None:
        self.name = _ALIASES.get(name, name)
        try:
            self._encoding: Any = bpe_openai.get_encoding(self.name)
        except Exception:  # the library raises its own types for unknown names
            known = ", ".join(bpe_openai.list_encoding_names())
            raise ConfigError(f"Config 'tokenizer' has value {name!r}. One of: {known}.") from None
        self._kept = lru_cache(maxsize=COUNTS_KEPT)(self._count)

    def count(self, text: str) -> int:
        """``text``'s tokens, every part of it read as ordinary text: a record or a question may
        quote ``<|endoftext|>`` (a tokenizer's source, a chat log), which ``encode`` refuses to
        encode at all. Also the cheaper call. Kept by text up to :data:`KEPT_CHARS`: a pack counts
        10-20 records, most of which other queries pack too (a whole context is never met again)."""
        return self._kept(text) if len(text) <= KEPT_CHARS else self._count(text)

    def _count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def truncate(self, text: str, limit: int) -> str:
        """The longest prefix of ``text`` that fits ``limit`` tokens (cut at a token boundary)."""
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= limit:
            return text
        return str(self._encoding.decode(tokens[:limit]))


@lru_cache(maxsize=4)
def get_tokenizer(name: str) -> Tokenizer:
    return Tokenizer(name)
