"""A first stage for the edge shard's exact dense search: every point's vector quantized to int8, all
scanned at once by onnxruntime's integer matrix product, to hand the engine a few ids to score
instead of letting it read every vector.

Why: the engine's exact scan reads 100k x 384 float32 (154 MB) a query: 12-14 ms of CPU at 100k
points on 2 loaded cores, 19-21 ms of the query's wall time (issue 12). A float32 copy scanned by
numpy reads as much and cost as much (11.5-13 ms of CPU, measured beside it). int8 codes are a
quarter of the bytes, and onnxruntime's ``MatMulInteger`` over a prepacked int8 matrix takes 2.2 ms
of CPU for 100k points (numpy's int8 product: 40 ms). The engine still scores what it returns:
hits and scores are the engine's own, bit for bit.

Why the engine's best ``limit`` are among the ids named. A point's unit vector ``x`` is stored as
codes ``c`` (int8) and a scale ``s`` (``x ~ s c``), with ``err = |x - s c|`` and ``size = |s c|``;
a question's unit vector ``q`` likewise as ``(d, t)`` with ``qerr = |q - t d|``. The integer
product ``c . d`` is exact (int32), so ``est = s t (c . d)`` and, by Cauchy-Schwarz,
``|q . x - est| <= err + qerr * size = bound``: ``q . x`` lies in ``[est - bound, est + bound]``.
The engine's score differs from ``q . x`` by at most ``e`` (its float32 rounding: under ``dim *
2**-24``, 2.3e-5 at 384). Let ``low`` be the ``limit``-th best ``est - bound``: each of those
points has an engine score of at least ``low - e``, so the engine's ``limit``-th best is at least
``low - e``, and a point of its top ``limit`` has ``est + bound >= low - 2e``. The scan names every
point with ``est + bound >= low -`` :data:`MARGIN`: a superset of the engine's top ``limit``. (Of
points tied at the cut, which one the engine keeps is its choice either way; the query drops
them all, :func:`sleepd.ranking.settled`.)

The codes are made from the engine's own stored vectors and payloads (a scroll) at the first
search or when the index is warmed (``EdgeIndex.warm``: the daemon does before it reports the
memory ready), and kept in step by the index's writes (upsert, delete, access changes, clear); nothing
is stored, so a rebuild from the ledger rebuilds them too. The prepacked matrix is a snapshot:
rows written since are scored by numpy (the same exact integer product) until
:data:`STALE_ROWS` of them make it worth packing again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MARGIN", "MIN_POINTS", "POINT_LEVELS", "QUERY_LEVELS", "STALE_ROWS", "DenseScan"]

#: how far below the cut (``low``) a point's upper bound may be and still be named: above twice
#: the engine's rounding (4.6e-5 at 384 dimensions) and the float64 arithmetic of the bounds
MARGIN = 1e-3
#: the scan pays only when the engine would read many vectors: with fewer points matching the
#: filter, the engine scans them itself
MIN_POINTS = 4096
#: rows written since the matrix was packed, scored by numpy meanwhile (0.2 s to pack 100k rows
#: again; numpy's int8 product costs ~0.4 ms per 1,000 rows)
STALE_ROWS = 2048
_GROW = 1024
#: the cut is looked for among the values at or above the k-th best of every 16th (0.1 ms at 100k)
SAMPLE_STRIDE = 16
#: a point's codes are within +-63, a question's within +-127 (then shifted to 1..255, uint8): on
#: AVX2, onnxruntime multiplies uint8 by int8 in pairs summed into int16 (``vpmaddubsw``), which
#: saturates above 32,767; 2 x 255 x 63 stays below (with +-127 codes the products were wrong)
POINT_LEVELS = 63
QUERY_LEVELS = 127


def _quantize(vectors: npt.NDArray[np.float64], levels: int) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64],
                                                          npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit rows (zero rows stay zero) as int8 codes, each row's scale, its error ``|x - s c|`` and
    the size of its approximation ``|s c|``."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    units = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    peaks = np.abs(units).max(axis=1)
    scales = np.where(peaks > 0, peaks / levels, 1.0)
    codes = np.clip(np.rint(units / scales[:, None]), -levels, levels).astype(np.int8)
    approx = codes * scales[:, None]
    return codes, scales, np.linalg.norm(units - approx, axis=1), np.linalg.norm(approx, axis=1)


def _product(codes: npt.NDArray[np.int8]) -> Any:
    """An onnxruntime session computing ``u @ codes.T`` for a uint8 row ``u`` (int32, exact), the
    codes prepacked as a constant."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rows, dim = codes.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["q", "codes"], ["dot"])], "scan",
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [1, dim])],
        [helper.make_tensor_value_info("dot", TensorProto.INT32, [1, rows])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(codes.T), "codes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2  # the first stage of a query at 100k: 3.8 ms on one thread, 2.7 on two
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _kth_largest(values: npt.NDArray[np.float64], k: int) -> float:
    """The ``k``-th largest of ``values`` (``k <= len(values)``), exactly, without partitioning them
    all (0.8 ms at 100k): the ``k``-th largest of every :data:`SAMPLE_STRIDE`-th value is at most it,
    so the values at or above that one hold the answer."""
    sample = values[::SAMPLE_STRIDE]
    if len(sample) > k:
        values = values[values >= np.partition(sample, len(sample) - k)[len(sample) - k]]
    return float(np.partition(values, len(values) - k)[len(values) - k])


class DenseScan:
    """int8 codes, bounds and the filtered payload fields (access, source, item id) of every point, by row."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._codes = np.zeros((0, dim), dtype=np.int8)
        self._scales = np.zeros(0, dtype=np.float64)
        self._errors = np.zeros(0, dtype=np.float64)
        self._sizes = np.zeros(0, dtype=np.float64)
        self._sums = np.zeros(0, dtype=np.int64)  # each row's codes summed: the uint8 offset's share
        self._alive = np.zeros(0, dtype=bool)
        self._access = np.zeros(0, dtype=np.int32)  # a code of the point's access list
        self._source = np.zeros(0, dtype=np.int32)  # a code of its source (-1: none)
        self._items = np.zeros(0, dtype=np.int64)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._access_codes: dict[frozenset[str], int] = {}
        self._source_codes: dict[str, int] = {}
        self._packed: Any = None  # the session over rows [0, _packed_rows) as they were then
        self._packed_rows = 0
        self._stale: set[int] = set()  # rows below _packed_rows written since

    def __len__(self) -> int:
        return len(self._row)

    def _code(self, access: object) -> int:
        values = frozenset(str(v) for v in access) if isinstance(access, list | tuple) else frozenset()
        return self._access_codes.setdefault(values, len(self._access_codes))

    def _grow(self, rows: int) -> None:
        size = max(rows, 2 * len(self._alive), _GROW)
        for name in ("_codes", "_scales", "_errors", "_sizes", "_sums", "_alive", "_access", "_source", "_items"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((size - len(old), *old.shape[1:]), dtype=old.dtype)]))

    def upsert(self, points: Iterable[tuple[str, Sequence[float], dict[str, object]]]) -> None:
        """Add or replace points: (id, vector, payload)."""
        batch = list(points)
        if not batch:
            return
        codes, scales, errors, sizes = _quantize(np.asarray([v for _, v, _ in batch], dtype=np.float64), POINT_LEVELS)
        for i, (point_id, _, payload) in enumerate(batch):
            row = self._row.get(point_id)
            if row is None:
                row = self._free.pop() if self._free else len(self._ids)
                if row == len(self._ids):
                    self._ids.append(point_id)
                    if row >= len(self._alive):
                        self._grow(row + 1)
                self._ids[row] = point_id
                self._row[point_id] = row
            if row < self._packed_rows:
                self._stale.add(row)
            self._codes[row], self._scales[row], self._errors[row], self._sizes[row] = (
                codes[i], scales[i], errors[i], sizes[i])
            self._sums[row] = int(codes[i].sum(dtype=np.int64))
            self._alive[row] = True
            self._access[row] = self._code(payload.get("access"))
            source = payload.get("source")
            self._source[row] = self._source_codes.setdefault(source, len(self._source_codes)) \
                if isinstance(source, str) else -1
            item = payload.get("item_id")
            self._items[row] = item if isinstance(item, int) else -1

    def delete(self, ids: Iterable[str]) -> None:
        for point_id in ids:
            row = self._row.pop(point_id, None)
            if row is not None:
                self._alive[row] = False
                self._free.append(row)

    def set_access(self, access: Sequence[str], items: Sequence[int]) -> None:
        used = len(self._ids)
        rows = np.isin(self._items[:used], np.asarray(list(items), dtype=np.int64)) & self._alive[:used]
        self._access[:used][rows] = self._code(list(access))

    def _keep(self, access: Sequence[str] | None, sources: Sequence[str] | None) -> npt.NDArray[np.bool_]:
        used = len(self._ids)
        keep = self._alive[:used].copy()
        if access is not None:
            wanted = set(access)
            allowed = np.fromiter((bool(values & wanted) for values in self._access_codes), dtype=bool,
                                  count=len(self._access_codes))
            keep &= allowed[self._access[:used]]
        if sources is not None:
            codes = [self._source_codes[s] for s in sources if s in self._source_codes]
            keep &= np.isin(self._source[:used], np.asarray(codes, dtype=np.int32))
        return keep

    def pack(self) -> None:
        """Pack every row's codes for onnxruntime now (0.2 s for 100k rows)."""
        used = len(self._ids)
        self._packed, self._packed_rows, self._stale = _product(self._codes[:used]), used, set()

    def _dots(self, query: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        """``codes . query`` of every row, exact: the packed matrix, and numpy for rows written since."""
        used = len(self._ids)
        if self._packed is None or len(self._stale) + used - self._packed_rows > STALE_ROWS:
            self.pack()
        dots = np.empty(used, dtype=np.int64)
        shifted = (query.astype(np.int16) + 128).astype(np.uint8)[None, :]  # MatMulInteger wants uint8 here
        packed = self._packed.run(None, {"q": shifted})[0][0].astype(np.int64)
        dots[: self._packed_rows] = packed - 128 * self._sums[: self._packed_rows]
        fresh = np.concatenate([np.fromiter(self._stale, dtype=np.int64, count=len(self._stale)),
                                np.arange(self._packed_rows, used, dtype=np.int64)])
        if len(fresh):
            dots[fresh] = self._codes[fresh].astype(np.int32) @ query.astype(np.int32)
        return dots

    def candidates(self, vector: Sequence[float], limit: int, access: Sequence[str] | None,
                   sources: Sequence[str] | None) -> list[str] | None:
        """The ids among which the engine's best ``limit`` (with this filter) are, or None when the
        filter leaves fewer than :data:`MIN_POINTS` points (the engine then scans them alone)."""
        keep = self._keep(access, sources)
        if int(np.count_nonzero(keep)) < max(MIN_POINTS, limit + 1):
            return None
        codes, scales, errors, _ = _quantize(np.asarray([vector], dtype=np.float64), QUERY_LEVELS)
        used = len(self._ids)
        estimate = self._dots(codes[0]) * (self._scales[:used] * scales[0])
        bound = self._errors[:used] + errors[0] * self._sizes[:used]
        low = np.where(keep, estimate - bound, -np.inf)
        cut = _kth_largest(low, limit)
        named = np.flatnonzero(keep & (estimate + bound >= cut - MARGIN))
        return [self._ids[row] for row in named.tolist()]
