"""The embedding backends with the real model: ONNX gives the torch (sentence-transformers) vectors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepd.embed import MODEL_NAME, Embedder, resolve_backend
from sleepd.errors import ConfigError, SleepdError
from sleepd.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    return Embedder("torch")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache: Path) -> Embedder:
    return Embedder("onnx", onnx_cache)


def varied_texts() -> list[str]:
    """A few hundred real texts of every length: this repository's code and prose cut at random
    places (many past the model's 256 tokens, so truncated), plus edge cases."""
    rng = random.Random(7)
    sources = sorted([*ROOT.glob("sleepd/**/*.py"), *ROOT.glob("workers/**/*.py"), *ROOT.glob("*.md")])
    corpus = [p.read_text(encoding="utf-8") for p in sources]
    texts = ["", " ", "  leading and trailing spaces  ", "a", "What does the indemnity clause cap?",
             "naïve café résumé — “quotes” … ½", "合同的终止条款是什么\uff1f", "emoji 🚀🔥 and tabs\tand\nnewlines",
             "x" * 3000, "def f(x):\n    return x ** 2\n", "SELECT * FROM accounts WHERE id = 42;"]
    while len(texts) < 300:
        body = rng.choice(corpus)
        length = rng.choice([20, 80, 300, 900, 2500, 6000])
        start = rng.randrange(max(1, len(body) - length))
        texts.append(body[start:start + length])
    return texts


def test_onnx_matches_torch(torch_embedder: Embedder, onnx_embedder: Embedder) -> None:
    assert (torch_embedder.backend, onnx_embedder.backend) == ("torch", "onnx")
    texts = varied_texts()
    expected = torch_embedder.encode(texts)
    got = onnx_embedder.encode(texts)
    assert got.shape == expected.shape == (len(texts), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(got * expected, axis=1))) >= 0.9999


def test_single_query_path_matches(torch_embedder: Embedder, onnx_embedder: Embedder) -> None:
    for text in ["how is a contract terminated?", varied_texts()[40], "x" * 3000]:
        assert float(onnx_embedder.encode_one(text) @ torch_embedder.encode_one(text)) >= 0.9999


def test_batch_order_is_kept(onnx_embedder: Embedder) -> None:
    texts = varied_texts()[:70]  # more than one batch, lengths mixed: sorted inside, restored outside
    batch = onnx_embedder.encode(texts)
    for i in (0, 13, 69):
        assert float(batch[i] @ onnx_embedder.encode_one(texts[i])) >= 0.9999
    assert onnx_embedder.encode([]).shape == (0, 384)


def test_export_is_cached(onnx_embedder: Embedder, onnx_cache: Path) -> None:
    files = list(onnx_cache.glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith(f"{MODEL_NAME}-") and files[0].suffix == ".onnx"
    mtime = files[0].stat().st_mtime_ns
    again = Embedder("onnx", onnx_cache)
    assert list(onnx_cache.glob("*.onnx")) == files and files[0].stat().st_mtime_ns == mtime
    assert float(again.encode_one("cached") @ onnx_embedder.encode_one("cached")) >= 0.99999


def test_a_broken_onnx_backend_is_an_error_never_a_quiet_torch(tmp_path: Path) -> None:
    """Issue 12: auto once fell back to torch when the export failed (under load, in one process
    of two): its vectors then met the other backend's in one index. Now auto means onnx wherever
    onnxruntime is installed, and onnx that cannot load stops the process with the reason."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    assert resolve_backend("auto") == "onnx" and resolve_backend("torch") == "torch"
    for backend in ("onnx", "auto"):
        with pytest.raises(SleepdError, match="onnx embedding backend failed to load"):
            Embedder(backend, blocked)


def test_a_vector_does_not_depend_on_its_batch(onnx_embedder: Embedder) -> None:
    """A record's vector has the same bits whichever batch it is embedded in (the worker's batches
    depend on timing): padding beside a longer text moved it by ~1e-8 (issue 12)."""
    texts = varied_texts()[:40]
    alone = np.stack([onnx_embedder.encode([t, t])[0] for t in texts[:12]])
    for batch in (texts, texts[:12][::-1], [*texts[:12], "x" * 3000]):
        got = onnx_embedder.encode(batch)
        order = [batch.index(t) for t in texts[:12]]
        assert np.array_equal(got[order], alone)


def test_processes_exporting_at_once_share_one_export(tmp_path: Path) -> None:
    """Two processes that find no export start at once: one exports, the other waits for it."""
    script = ("import sys; from pathlib import Path; from sleepd.embed import Embedder; "
              "e = Embedder('auto', Path(sys.argv[1])); print(e.backend, float(e.encode_one('q')[0]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert outs[0][0] == outs[1][0] and outs[0][0].startswith("onnx ")
    assert [p.suffix for p in tmp_path.iterdir() if p.suffix == ".onnx"] == [".onnx"]


def test_embed_backend_setting(tmp_path: Path) -> None:
    env = {"SLEEPD_HOME": str(tmp_path)}
    assert load_settings(env).embed_backend == "auto"
    assert load_settings({**env, "SLEEPD_EMBED_BACKEND": "torch"}).embed_backend == "torch"
    with pytest.raises(ConfigError, match="'embed_backend' has value 'gpu'"):
        load_settings({**env, "SLEEPD_EMBED_BACKEND": "gpu"})
