"""Prometheus metrics, read from the ledger at each scrape: every process (daemon, workers, a
CLI) writes the ledger, so its tables are the one place that sees them all, and nothing is lost
when the daemon restarts.

The query histograms are built from the query log. A purge deletes the query-log rows that drew
on the purged items, which Prometheus sees as a counter reset (``rate()`` handles it).

GET /metrics needs an admin token like the other admin endpoints (it names sources and shows
load); point Prometheus at it with ``authorization: {credentials: <token>}`` in the scrape
config."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, false, func
from sqlmodel import Session, col, select

from sleepd import defaults
from sleepd.aggregates import AGGREGATE_PREFIX
from sleepd.ledger import Ledger
from sleepd.schema import (
    OPEN_CHANGES,
    ChangeRow,
    IndexEventRow,
    ItemRow,
    ItemState,
    QueryLogRow,
    RecordRow,
    SourceRow,
    TokenRow,
    TokenStateRow,
    VersionRow,
)

__all__ = ["LedgerCollector", "error_kind", "render"]

#: a failed item's error text, mapped to a few kinds so the label stays small
_ERROR_KINDS = (
    ("too_large", re.compile(r"too large", re.I)),
    ("binary", re.compile(r"binary", re.I)),
    ("encoding", re.compile(r"utf-8|decode", re.I)),
    ("no_text", re.compile(r"no text|encrypted", re.I)),
    ("unreadable", re.compile(r"unreadable|not a regular file|permission|no such file|watcher failed", re.I)),
    ("llm", re.compile(r"\bllm\b|model", re.I)),
)


def error_kind(error: str | None) -> str:
    """The kind of a failed item's error: too_large, binary, encoding, no_text, unreadable, llm, other."""
    text = error or ""
    return next((kind for kind, pattern in _ERROR_KINDS if pattern.search(text)), "other")


class LedgerCollector(Collector):
    """Collects every sleepd metric from one ledger, at scrape time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        with self.ledger.read() as s:
            yield from _queue(s, now)
            yield from _items(s)
            yield from _records(s)
            yield _histogram(s, "sleepd_query_latency_seconds", "Query latency (from the query log).",
                             col(QueryLogRow.latency_ms) / 1000.0, defaults.QUERY_LATENCY_BUCKETS)
            yield _histogram(s, "sleepd_query_tokens", "Tokens returned per query (from the query log).",
                             col(QueryLogRow.tokens_used), defaults.QUERY_TOKEN_BUCKETS)
            yield from _tokens_and_index(s)


def render(ledger: Ledger) -> bytes:
    """The Prometheus text exposition of ``ledger``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger))
    return generate_latest(registry)


def _queue(s: Session, now: float) -> Iterator[Metric]:
    depth = GaugeMetricFamily("sleepd_queue_depth", "Observed changes not yet enriched, by source.",
                              labels=["source"])
    age = GaugeMetricFamily("sleepd_queue_oldest_age_seconds",
                            "Age of the oldest change not yet enriched, by source (0 when none).", labels=["source"])
    rows = s.exec(select(ItemRow.source, func.count(), func.min(ChangeRow.observed_at))
                  .join(ItemRow, col(ItemRow.id) == col(ChangeRow.item_id))
                  .where(col(ChangeRow.status).in_(OPEN_CHANGES)).group_by(ItemRow.source)).all()
    seen = {source: (n, oldest) for source, n, oldest in rows}
    for source in _sources(s) | set(seen):
        n, oldest = seen.get(source, (0, None))
        depth.add_metric([source], n)
        age.add_metric([source], max(0.0, now - oldest) if oldest is not None else 0.0)
    yield depth
    yield age


def _items(s: Session) -> Iterator[Metric]:
    items = GaugeMetricFamily("sleepd_items", "Items by source and state (aggregates apart).",
                              labels=["source", "state", "aggregate"])
    is_agg = col(ItemRow.key).like(AGGREGATE_PREFIX + "%")
    counts = {(src, state, bool(agg)): n for src, state, agg, n in s.exec(
        select(ItemRow.source, ItemRow.state, is_agg, func.count()).group_by(ItemRow.source, ItemRow.state, is_agg))}
    for source in sorted(_sources(s) | {k[0] for k in counts}):
        for state in ItemState:
            for agg in (False, True):
                items.add_metric([source, state.value, str(agg).lower()], counts.get((source, state.value, agg), 0))
    yield items
    errors = GaugeMetricFamily("sleepd_item_errors", "Failed items by source and kind of error.",
                               labels=["source", "kind"])
    by_kind: dict[tuple[str, str], int] = {}
    for source, error in s.exec(select(ItemRow.source, ItemRow.error).where(
            ItemRow.state == ItemState.FAILED.value)).all():
        key = (source, error_kind(error))
        by_kind[key] = by_kind.get(key, 0) + 1
    for (source, kind), n in sorted(by_kind.items()):
        errors.add_metric([source, kind], n)
    yield errors


def _records(s: Session) -> Iterator[Metric]:
    records = GaugeMetricFamily("sleepd_records", "Published memory records by source and kind.",
                                labels=["source", "kind"])
    for source, kind, n in s.exec(select(RecordRow.source, RecordRow.kind, func.count())
                                  .group_by(RecordRow.source, RecordRow.kind)).all():
        records.add_metric([source, kind], n)
    yield records
    versions = GaugeMetricFamily("sleepd_versions", "Item versions by status (published, superseded, retracted).",
                                 labels=["status"])
    for status, n in s.exec(select(VersionRow.status, func.count()).group_by(VersionRow.status)).all():
        versions.add_metric([status], n)
    yield versions


def _histogram(s: Session, name: str, doc: str, value: Any, bounds: Sequence[float]) -> Metric:
    """A cumulative histogram computed in one SQL pass over the query log."""
    columns = [func.sum(case((value <= bound, 1), else_=0)) for bound in bounds]
    row: Sequence[Any] = s.exec(select(func.count(), func.sum(value), *columns)).one()  # type: ignore[call-overload]
    total, value_sum = int(row[0] or 0), float(row[1] or 0.0)
    cumulative = [int(n or 0) for n in row[2:]]
    buckets = [(_le(bound), n) for bound, n in zip(bounds, cumulative, strict=True)] + [("+Inf", total)]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=value_sum)


def _tokens_and_index(s: Session) -> Iterator[Metric]:
    tokens = GaugeMetricFamily("sleepd_api_tokens", "API tokens by state.", labels=["state"])
    total = int(s.exec(select(func.count()).select_from(TokenRow)).one())
    revoked = int(s.exec(select(func.count()).select_from(TokenStateRow)
                         .where(col(TokenStateRow.revoked_at).is_not(None))).one())
    tokens.add_metric(["active"], total - revoked)
    tokens.add_metric(["revoked"], revoked)
    yield tokens
    unapplied = int(s.exec(select(func.count()).select_from(IndexEventRow)
                           .where(col(IndexEventRow.applied) == false())).one())
    lag = GaugeMetricFamily("sleepd_index_lag", "Ledger events the vector index has not applied yet.")
    lag.add_metric([], unapplied)
    yield lag


def _sources(s: Session) -> set[str]:
    return set(s.exec(select(SourceRow.name)).all())


def _le(bound: float) -> str:
    return str(float(bound))
