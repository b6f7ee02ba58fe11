"""Query latency: in process, over real HTTP (uvicorn on a loopback port), and at 100k points.

100k points are synthesised, never embedded: random unit vectors (numpy, seeded) with the payload
the indexer writes, upserted through :mod:`sleepd.index` like real records.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sleepd import defaults
from sleepd.index import EdgeIndex, Point, VectorIndex
from sleepd.service import Service

__all__ = ["fill_index", "percentiles", "serve", "synthetic_search_latency", "timed"]

#: groups the synthetic points are spread over, so the access filter has something to do
_GROUPS = ("*", "team-a", "team-b", "team-c")
#: points written per upsert while synthesising
_FILL_BATCH = 4096


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {"n": len(arr), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2), "mean_ms": round(float(arr.mean()), 2)}


def timed(calls: Mapping[str, Sequence[Callable[[], object]]], warmup: int = 3) -> dict[str, dict[str, float]]:
    """Latency of each named series of calls in milliseconds, after ``warmup`` untimed calls of
    each. The series are interleaved call by call, so load from elsewhere hits them alike."""
    for series in calls.values():
        for call in series[:warmup]:
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(max((len(c) for c in calls.values()), default=0)):
        for name, series in calls.items():
            if i < len(series):
                started = time.perf_counter()
                series[i]()
                samples[name].append((time.perf_counter() - started) * 1000)
    return {name: percentiles(values) for name, values in samples.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(service: Service) -> Iterator[str]:
    """The real API (uvicorn) over ``service`` on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from sleepd.api import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the bench API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _random_points(rng: np.random.Generator, count: int, dim: int, first_item: int) -> list[Point]:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = rng.integers(0, len(_GROUPS), size=count)
    return [Point(id=str(uuid.UUID(bytes=rng.bytes(16), version=4)), vector=vectors[i].tolist(),
                  payload={"access": [_GROUPS[groups[i]]], "source": "bench-filler", "kind": "synthetic",
                           "item_id": first_item + i // 20, "version": 1})
            for i in range(count)]


def fill_index(index: VectorIndex, count: int, seed: int = 0, dim: int = defaults.EMBED_DIM) -> float:
    """Add ``count`` random points; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for begin in range(0, count, _FILL_BATCH):
        index.upsert(_random_points(rng, min(_FILL_BATCH, count - begin), dim, 10_000_000 + begin // 20))
    return time.perf_counter() - started


def synthetic_search_latency(folder: Path, points: int, queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """Search latency of a fresh edge index holding ``points`` random points: filtered by access
    (a principal in one group) and unfiltered (an admin)."""
    index = EdgeIndex(folder, defaults.EMBED_DIM)
    try:
        build_s = fill_index(index, points, seed)
        rng = np.random.default_rng(seed + 1)
        vectors = rng.standard_normal((queries, defaults.EMBED_DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        as_lists = [v.tolist() for v in vectors]
        latency = timed({
            "filtered": [partial(index.search, v, defaults.CANDIDATES, access=["*", "team-a"]) for v in as_lists],
            "admin": [partial(index.search, v, defaults.CANDIDATES) for v in as_lists]})
        return {"points": index.count(), "build_seconds": round(build_s, 2), **latency,
                "how": f"{points} random unit vectors (numpy normal, seed {seed}, dim {defaults.EMBED_DIM}) with "
                       f"the indexer's payload, access spread over {len(_GROUPS)} groups, upserted into a fresh "
                       f"embedded Qdrant edge shard via sleepd.index.EdgeIndex; top-{defaults.CANDIDATES} "
                       "searches with random unit query vectors"}
    finally:
        index.close()
