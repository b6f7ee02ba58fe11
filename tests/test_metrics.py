"""GET /metrics over a real ledger: the Prometheus text parses, and each family says what the
ledger holds (items by state, failures by kind, the queue and its oldest change, records,
query latency and tokens from the query log); admins only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlmodel import select

from sleepd.api import create_app
from sleepd.auth import Principal, create_token
from sleepd.embed import Embedder
from sleepd.metrics import error_kind
from sleepd.schema import QueryLogRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.watchers import Watchers
from tests.helpers import enrich_pending

ROOT = Principal("root", admin=True)


@pytest.fixture
def service(tmp_path: Path, settings: Settings, embedder: Embedder) -> Iterator[Service]:
    """notes/ enriched (two documents, one file of invalid UTF-8 that fails), then one more file observed
    and left pending."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "deploys.md").write_text("# Deploys\n\nDeploys run on Tuesdays after the freeze.\n")
    (notes / "oncall.md").write_text("# On call\n\nThe on-call engineer answers pages within 15 minutes.\n")
    (notes / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    svc = Service.open(settings)
    svc._embedder = embedder
    source = FileSource(name="notes", path=notes, profile="docs")
    svc.ledger.save_source(source)
    Watchers([source], svc.ledger, settings).scan_all()
    enrich_pending(svc, embedder)
    (notes / "later.md").write_text("# Later\n\nWritten after the last enrichment.\n")
    Watchers([source], svc.ledger, settings).scan_all()
    yield svc
    svc.close()
    svc.ledger.close()


def _samples(text: str) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return float(found[0])


def test_metrics_say_what_the_ledger_holds(service: Service) -> None:
    answers = [service.query(q, 256, ROOT) for q in ("when do deploys run", "who answers pages", "freeze")]
    service.engine.flush_log()
    api = TestClient(create_app(service))
    ops = create_token(service.ledger, "ops", admin=True)
    response = api.get("/metrics", headers={"Authorization": f"Bearer {ops}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    files = {"source": "notes", "aggregate": "false"}
    assert _value(samples, "sleepd_items", state="enriched", **files) == 2
    assert _value(samples, "sleepd_items", state="failed", **files) == 1
    assert _value(samples, "sleepd_items", state="pending", **files) == 1
    assert _value(samples, "sleepd_item_errors", source="notes", kind="encoding") == 1
    assert _value(samples, "sleepd_queue_depth", source="notes") == 1
    assert _value(samples, "sleepd_queue_oldest_age_seconds", source="notes") > 0
    records = sum(s.value for s in samples["sleepd_records"] if s.labels["source"] == "notes")
    assert records == service.status()["records"] > 0

    assert _value(samples, "sleepd_query_latency_seconds_count") == len(answers)
    with service.ledger.read() as s:
        logged = s.exec(select(QueryLogRow)).all()
    assert _value(samples, "sleepd_query_latency_seconds_sum") == pytest.approx(
        sum(r.latency_ms for r in logged) / 1000.0)
    assert _value(samples, "sleepd_query_tokens_sum") == sum(a.tokens_used for a in answers) > 0
    assert _value(samples, "sleepd_query_tokens_bucket", le="+Inf") == len(answers)
    assert _value(samples, "sleepd_query_tokens_bucket", le="256.0") == len(answers)  # the budget holds
    assert _value(samples, "sleepd_api_tokens", state="active") == 1
    assert _value(samples, "sleepd_index_lag") == 0


def test_metrics_need_an_admin_token(service: Service) -> None:
    api = TestClient(create_app(service))
    assert api.get("/metrics").json()["error"]["code"] == "unauthorized"
    reader = {"Authorization": f"Bearer {create_token(service.ledger, 'reader')}"}
    response = api.get("/metrics", headers=reader)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("error", "kind"), [
    ("file too large: 3000000 bytes, the limit (max_file_bytes) is 2000000", "too_large"),
    ("binary file (NUL bytes): not enriched", "binary"),
    ("invalid UTF-8 at byte 12: not enriched", "encoding"),
    ("PDF has no text layer (3 pages, scanned?): not enriched", "no_text"),
    ("unreadable: Permission denied", "unreadable"),
    ("something new", "other"),
    (None, "other"),
])
def test_error_kinds(error: str | None, kind: str) -> None:
    assert error_kind(error) == kind
