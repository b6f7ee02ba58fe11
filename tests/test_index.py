"""The vector index on real engines: Qdrant Edge, and qdrant-client's local mode for the server path."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as edge
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from sleepd import defaults
from sleepd.index import EdgeIndex, Hit, Point, QdrantServerIndex, VectorIndex, open_index
from sleepd.index.scan import _kth_largest
from sleepd.sparse import document_vector, query_vector, terms

DIM = 8


def _open(kind: str, home: Path) -> VectorIndex:
    return open_index(home, DIM, qdrant_url=f"local:{home / 'q'}" if kind == "local" else None)


def _basis(i: int) -> list[float]:
    vector = [0.0] * DIM
    vector[i % DIM] = 1.0
    return vector


def _point(i: int, access: list[str], source: str = "repo", vector: list[float] | None = None) -> Point:
    payload: dict[str, object] = {
        "access": access,
        "source": source,
        "item_id": i,
        "kind": "chunk",
        "version": 1,
    }
    return Point(str(uuid.uuid4()), vector if vector is not None else _basis(i), payload)


@pytest.fixture(params=["edge", "local"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def index(kind: str, tmp_path: Path) -> Iterator[VectorIndex]:
    idx = _open(kind, tmp_path)
    yield idx
    idx.close()


def test_backend_choice_decides_where_the_points_live(kind: str, tmp_path: Path) -> None:
    """No URL: an edge shard in the home's "index" folder; "local:" + path: a qdrant-client
    collection named "sleepd" there. Each engine, opened on its own, finds the point."""
    point = _point(3, ["t"])
    index = _open(kind, tmp_path)
    index.upsert([point])
    index.close()
    if kind == "edge":
        assert not (tmp_path / "q").exists()
        shard = edge.EdgeShard.load(str(tmp_path / "index"))
        try:
            found = [str(r.id) for r in shard.retrieve([point.id], with_payload=False, with_vector=False)]
        finally:
            shard.close()
    else:
        assert not (tmp_path / "index").exists()
        client = QdrantClient(path=str(tmp_path / "q"))
        try:
            found = [str(r.id) for r in client.retrieve("sleepd", [point.id])]
        finally:
            client.close()
    assert found == [point.id]


def test_nearest_first_with_cosine_score(index: VectorIndex) -> None:
    points = [_point(i, ["team"]) for i in range(5)]
    index.upsert(points)
    hits = index.search(_basis(2), limit=3)
    assert hits[0].id == points[2].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    # an unnormalised query still scores by cosine
    near = index.search([0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0], limit=2)
    assert {h.id for h in near} == {points[2].id, points[3].id}
    assert near[0].score == pytest.approx(2**-0.5, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index.search(_basis(0), limit=0)) == 0


def test_access_filter(index: VectorIndex) -> None:
    a, b, ac = _point(0, ["team:a"]), _point(1, ["team:b"]), _point(2, ["team:a", "team:c"])
    index.upsert([a, b, ac])
    query = _basis(1)  # nearest to b, which must still be filtered out
    assert {h.id for h in index.search(query, 10, access=["team:a"])} == {a.id, ac.id}
    assert [h.id for h in index.search(query, 10, access=["team:c", "nobody"])] == [ac.id]
    assert index.search(query, 10, access=["nobody"]) == []
    assert index.search(query, 10, access=[]) == []
    admin = index.search(query, 10, access=None)
    assert admin[0].id == b.id
    assert {h.id for h in admin} == {a.id, b.id, ac.id}


def test_set_access_rewrites_the_payload_of_items_in_place(index: VectorIndex) -> None:
    """An access change: the points of the named items get the new list, vectors and the other
    payload fields untouched, and the access filter follows at once."""
    points = [_point(i, ["eng"]) for i in range(3)] + [_point(1, ["eng"], vector=_basis(5))]
    index.upsert(points)
    index.set_access(["legal", "hr"], [1, 2])
    payloads = index.payloads([p.id for p in points] + [str(uuid.uuid4())])
    assert [payloads[p.id]["access"] for p in points] == [["eng"], ["legal", "hr"], ["legal", "hr"], ["legal", "hr"]]
    assert all(payloads[p.id]["item_id"] == p.payload["item_id"] and payloads[p.id]["source"] == "repo"
               for p in points) and len(payloads) == len(points)
    assert {h.id for h in index.search(_basis(1), 10, access=["eng"])} == {points[0].id}
    legal = index.search(_basis(5), 10, access=["legal"])
    assert legal[0].id == points[3].id and legal[0].score == pytest.approx(1.0, abs=1e-5)  # its vector kept
    index.set_access(["eng"], [])  # no items: nothing changes
    assert index.payloads([points[1].id])[points[1].id]["access"] == ["legal", "hr"]


def test_sources_filter(index: VectorIndex) -> None:
    docs, code, both = _point(0, ["t"], "docs"), _point(1, ["t"], "code"), _point(2, ["u"], "code")
    index.upsert([docs, code, both])
    assert [h.id for h in index.search(_basis(1), 10, sources=["docs"])] == [docs.id]
    assert {h.id for h in index.search(_basis(1), 10, sources=["code", "x"])} == {code.id, both.id}
    assert [h.id for h in index.search(_basis(1), 10, access=["u"], sources=["code"])] == [both.id]
    assert index.search(_basis(1), 10, access=["u"], sources=["docs"]) == []
    assert index.search(_basis(1), 10, sources=[]) == []


def test_delete_counts_present_ids_only(index: VectorIndex) -> None:
    points = [_point(i, ["t"]) for i in range(4)]
    index.upsert(points)
    gone = points[1]
    assert index.delete([gone.id, str(uuid.uuid4())]) == 1
    assert index.delete([gone.id]) == 0
    assert index.delete([points[2].id, points[2].id]) == 1
    assert index.delete([]) == 0
    hits = index.search(gone.vector, 10)
    assert gone.id not in {h.id for h in hits}
    assert {h.id for h in hits} == {points[0].id, points[3].id}
    assert index.count() == 2


def test_upsert_replaces_and_batches(index: VectorIndex) -> None:
    points = [_point(i, ["t"], vector=[1.0, i / 600, 0, 0, 0, 0, 0, 0]) for i in range(600)]
    index.upsert(points)
    assert index.count() == 600
    assert index.ids() == {p.id for p in points}
    moved = Point(points[0].id, _basis(7), {**points[0].payload, "access": ["other"], "version": 2})
    index.upsert([moved])
    assert index.count() == 600
    assert [h.id for h in index.search(_basis(7), 5, access=["other"])] == [moved.id]
    assert index.search(_basis(7), 1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_clear_keeps_index_usable(index: VectorIndex) -> None:
    index.upsert([_point(i, ["t"]) for i in range(3)])
    index.clear()
    assert index.count() == 0
    assert index.ids() == set()
    assert index.search(_basis(0), 5) == []
    again = _point(0, ["t"])
    index.upsert([again])
    assert index.ids() == {again.id}
    assert index.search(_basis(0), 5, access=["t"])[0].id == again.id


def test_reopen_after_close_sees_points(kind: str, tmp_path: Path) -> None:
    points = [_point(i, ["t"], "s") for i in range(5)]
    first = _open(kind, tmp_path)
    first.upsert(points)
    first.delete([points[4].id])
    first.close()
    first.close()  # a second close is harmless
    second = _open(kind, tmp_path)
    try:
        assert second.count() == 4
        assert second.ids() == {p.id for p in points[:4]}
        assert second.search(_basis(3), 1, access=["t"], sources=["s"])[0].id == points[3].id
    finally:
        second.close()


def test_second_open_while_open_is_refused(kind: str, tmp_path: Path) -> None:
    first = _open(kind, tmp_path)
    try:
        with pytest.raises(RuntimeError, match="in use by another process"):
            _open(kind, tmp_path)
        first.upsert([_point(0, ["t"])])  # the failed open left the first handle working
        assert first.count() == 1
    finally:
        first.close()
    _open(kind, tmp_path).close()  # closing released the lock


def test_edge_lock_holds_across_processes(tmp_path: Path) -> None:
    held = open_index(tmp_path, DIM)
    try:
        code = (
            "import sys; from pathlib import Path; from sleepd.index import open_index\n"
            "try:\n    open_index(Path(sys.argv[1]), 8)\n"
            "except RuntimeError as exc:\n    print(exc)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=Path(__file__).resolve().parents[1],  # import this checkout's sleepd
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "in use by another process" in done.stdout, done.stderr
    finally:
        held.close()


def test_wrong_dimension_is_rejected(index: VectorIndex) -> None:
    with pytest.raises(ValueError, match="8 floats"):
        index.upsert([Point(str(uuid.uuid4()), [1.0, 0.0], {"access": ["t"]})])
    with pytest.raises(ValueError, match="8 floats"):
        index.search([1.0, 0.0, 0.0], 5)


def test_edge_indexes_the_filtered_payload_fields(tmp_path: Path) -> None:
    open_index(tmp_path, DIM).close()
    shard = edge.EdgeShard.load(str(tmp_path / "index"))
    try:
        schema = {name: info.data_type for name, info in shard.info().payload_schema.items()}
    finally:
        shard.close()
    assert schema == {
        "access": edge.PayloadSchemaType.Keyword,
        "source": edge.PayloadSchemaType.Keyword,
        "item_id": edge.PayloadSchemaType.Integer,
    }


def test_edge_search_is_exact_whatever_the_segments(tmp_path: Path) -> None:
    """Issue 12: once a shard is optimized (an HNSW graph built, which depends on the order and
    timing of writes), an approximate search returned other candidates than before. The search is
    exact: the true nearest points, before and after the graph exists."""
    import numpy as np

    path, dim = tmp_path / "index", 64
    config = edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=dim, distance=edge.Distance.Cosine),
        sparse_vectors={defaults.SPARSE_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=10, default_segment_number=1),
        hnsw_config=edge.HnswIndexConfig(m=4, ef_construct=8, full_scan_threshold=10))
    edge.EdgeShard.create(str(path), config).close()  # a shard that will build a (poor) graph
    idx = EdgeIndex(path, dim)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vectors))]
    idx.upsert([Point(ids[i], vectors[i], {"access": ["a"], "source": "s", "item_id": i % 7})
                for i in range(len(vectors))])
    queries = rng.standard_normal((10, dim)).astype(np.float32)
    truth = [[ids[i] for i in np.argsort(-(vectors @ q), kind="stable")[:32]] for q in queries]
    assert [[h.id for h in idx.search(q, 32, access=["a"])] for q in queries] == truth
    assert idx._shard.optimize() and idx._shard.info().indexed_vectors_count == len(vectors)
    assert [[h.id for h in idx.search(q, 32, access=["a"])] for q in queries] == truth
    idx.close()


def _worded(i: int, text: str, access: list[str]) -> Point:
    point = _point(i, access)
    return Point(point.id, point.vector, point.payload, document_vector(f"record {i}", text))


def test_sparse_search_finds_a_word_weighs_it_by_idf_and_filters(index: VectorIndex) -> None:
    """Issue 12: the keyword side of the index. A rare word outranks a common one (the engine's IDF
    modifier), a point without the word is not returned, and the access filter holds."""
    filler = [_worded(i, "the supplier shall deliver the goods on time", ["a"]) for i in range(40)]
    rare = _worded(100, "the supplier shall pay penalty zorblax-417 on late goods", ["a"])
    hidden = _worded(101, "zorblax-417 appears here too", ["b"])
    index.upsert([*filler, rare, hidden])
    hits = index.search_sparse(query_vector(terms("zorblax-417 supplier")), 10, access=["a"])
    assert hits[0].id == rare.id and hits[0].score > hits[1].score
    assert hidden.id not in {h.id for h in hits}
    assert [h.id for h in index.search_sparse(query_vector(terms("zorblax")), 10, access=["b"])] == [hidden.id]
    assert index.search_sparse(query_vector(terms("nothing matches")), 10, access=["a"]) == []
    assert index.search_sparse(query_vector(frozenset()), 10) == []


def test_an_edge_index_made_before_sparse_vectors_is_recreated_at_open(tmp_path: Path) -> None:
    """An index folder from before the sparse vectors opens (no manual step), empty and marked
    ``upgraded`` so that the indexer rebuilds it; opened again, it is not upgraded twice."""
    path = tmp_path / "index"
    path.mkdir()
    old = edge.EdgeShard.load(str(path), edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=DIM, distance=edge.Distance.Cosine)))
    old.update(edge.UpdateOperation.upsert_points([edge.Point(str(uuid.uuid4()), _basis(0), {"access": ["a"]})]))
    old.close()
    idx = EdgeIndex(path, DIM)
    assert idx.upgraded and idx.count() == 0
    idx.upsert([_worded(1, "zorblax", ["a"])])
    idx.close()
    again = EdgeIndex(path, DIM)
    assert not again.upgraded and again.count() == 1
    assert len(again.search_sparse(query_vector(terms("zorblax")), 5)) == 1
    again.close()


def test_a_collection_made_before_sparse_vectors_is_recreated_at_open(tmp_path: Path) -> None:
    """The server path (qdrant-client's local mode): a collection without the sparse vector is
    recreated with it at open, and marked ``upgraded``."""
    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection("sleepd", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE))
    client.upsert("sleepd", points=[qm.PointStruct(id=str(uuid.uuid4()), vector=_basis(0), payload={})])
    client.close()
    idx = QdrantServerIndex(DIM, "sleepd", path=tmp_path / "q")
    assert idx.upgraded and idx.count() == 0
    idx.upsert([_worded(1, "zorblax", ["a"])])
    idx.close()
    again = QdrantServerIndex(DIM, "sleepd", path=tmp_path / "q")
    assert not again.upgraded and again.count() == 1
    assert defaults.SPARSE_VECTOR in (again._client.get_collection("sleepd").config.params.sparse_vectors or {})
    again.close()


def test_an_index_of_another_dimension_is_not_wiped(tmp_path: Path) -> None:
    """Only the missing sparse vector is upgraded: a folder made for another dimension is an error
    that names it, and its points stay."""
    path = tmp_path / "index"
    EdgeIndex(path, DIM + 1).close()
    with pytest.raises(Exception, match=r"(?i)dim|size|incompatible"):
        EdgeIndex(path, DIM)
    same = EdgeIndex(path, DIM + 1)
    assert same.upgraded is False
    same.close()


def test_edge_dense_search_scans_first_and_keeps_the_engines_hits(tmp_path: Path) -> None:
    """Issue 12 (latency): over many points the dense search names a few ids to the engine (a numpy
    scan, sleepd/index/scan.py) instead of letting it read every vector; the hits and scores are the
    engine's full exact scan's, with the access and source filters, while the scan is being made
    (the engine's alone), after upserts, deletes, an access change, and once the shard is opened
    again (equal scores in any order, as before)."""
    import numpy as np

    from sleepd.index.scan import MIN_POINTS

    path, dim, n = tmp_path / "index", 32, 6 * MIN_POINTS + 600  # the narrowest filter leaves 1 in 6
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1] = vectors[0]  # a tie
    points = [Point(str(uuid.UUID(int=i + 1)), vectors[i].tolist(),
                    {"access": [("a", "b", "c")[i % 3]], "source": ("s", "t")[i % 2], "item_id": i // 10})
              for i in range(n)]
    queries = [v.tolist() for v in rng.standard_normal((6, dim)).astype(np.float32)] + [vectors[0].tolist()]
    filters: list[tuple[list[str] | None, list[str] | None]] = [(None, None), (["a", "b"], None), (None, ["t"]),
                                                                (["a"], ["s"])]

    def engine(idx: EdgeIndex, q: list[float], access: list[str] | None, sources: list[str] | None) -> list[Hit]:
        return idx._query(edge.Query.Nearest(q), 64, access, sources, None)  # the full exact scan

    def ordered(hits: list[Hit]) -> list[Hit]:  # equal scores come in the engine's order of the moment
        return sorted(hits, key=lambda h: (-h.score, h.id))

    def check(idx: EdgeIndex) -> None:
        for q in queries:
            for access, sources in filters:
                assert ordered(idx.search(q, 64, access=access, sources=sources)) == ordered(
                    engine(idx, q, access, sources))
                assert idx._scan is not None
                named = idx._scan.candidates(q, 64, access, sources)
                assert named is not None and 64 <= len(named) < n // 20

    idx = EdgeIndex(path, dim)
    idx.upsert(points[: n - 200])
    assert idx.search(queries[0], 64) == engine(idx, queries[0], None, None)  # the engine's alone, for now
    idx.upsert(points[n - 200: n - 100])  # while the scan is being made, or after
    assert idx.warm(120)
    check(idx)
    idx.upsert(points[n - 100:])  # kept in step by writes once the scan serves
    idx.upsert([Point(points[5].id, queries[0], points[5].payload)])  # moved next to a question
    assert idx.search(queries[0], 1)[0].id == points[5].id
    idx.delete([p.id for p in points[:300:3]])
    idx.set_access(["z"], list(range(20, 60)))
    check(idx)
    assert not {h.id for h in idx.search(queries[1], 64, access=["a"])} & {p.id for p in points[200:600]}
    idx.close()
    again = EdgeIndex(path, dim)  # the scan is made from the shard's stored points
    assert again.warm(120)
    check(again)
    again.close()


@given(st.lists(st.one_of(st.floats(-2, 2), st.just(float("-inf"))), min_size=1, max_size=600), st.data())
@settings(max_examples=300, deadline=None)
def test_the_scans_cut_is_the_exact_kth_largest(values: list[float], data: st.DataObject) -> None:
    k = data.draw(st.integers(1, len(values)))
    array = np.asarray(values, dtype=np.float64)
    assert _kth_largest(array, k) == sorted(values, reverse=True)[k - 1]
