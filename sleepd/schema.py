"""The ledger's tables: the system of record for c' (SQLModel over SQLite or PostgreSQL).

Lists and dicts are stored as JSON text so one schema serves every database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import BigInteger, Column, Engine, Index, LargeBinary, Text, UniqueConstraint, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Field, SQLModel

__all__ = [
    "AGGREGATE_PREFIX",
    "ARCHIVED_COLUMNS",
    "ITEM_COLUMNS",
    "OPEN_CHANGES",
    "RECORD_COLUMNS",
    "AuditRow",
    "ChangeRow",
    "ChangeStatus",
    "IndexEventRow",
    "Item",
    "ItemRow",
    "ItemState",
    "LlmUsageRow",
    "MetaRow",
    "QueryLogItemRow",
    "QueryLogRow",
    "Record",
    "RecordArchiveRow",
    "RecordRow",
    "SourceRow",
    "TokenRow",
    "TokenStateRow",
    "VersionRow",
    "upgrade",
]


#: keys of synthetic items (repository map, portfolio...): watchers never list them, so a rescan
#: never deletes them as missing. Here, below the ledger, which needs it as much as the aggregates do
AGGREGATE_PREFIX = "@aggregate/"


class ItemState(str, Enum):
    """Where an item stands."""

    #: a change was observed and awaits enrichment
    PENDING = "pending"
    #: its current memory matches the content last observed
    ENRICHED = "enriched"
    #: the last attempt failed; ``error`` says why
    FAILED = "failed"
    #: the file is gone; its records are retracted
    DELETED = "deleted"


class ChangeStatus(str, Enum):
    """Life of one observed change (the outbox row)."""

    #: recorded, not yet handed to the broker
    PENDING = "pending"
    #: handed to the broker at ``enqueued_at``; re-enqueued if the lease runs out
    ENQUEUED = "enqueued"
    #: enriched (or found already current)
    DONE = "done"
    #: a later change of the same item was enriched instead
    SUPERSEDED = "superseded"
    #: enrichment failed; ``error`` says why
    FAILED = "failed"


#: the states of a change still to be done (handed out or not)
OPEN_CHANGES = (ChangeStatus.PENDING.value, ChangeStatus.ENQUEUED.value)


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"
    name: str = Field(primary_key=True)
    kind: str
    config: str = Field(sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    last_scan_at: float | None = None
    created_at: float


class ItemRow(SQLModel, table=True):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("source", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    key: str
    state: str = Field(default=ItemState.PENDING.value, index=True)
    observed_hash: str | None = None
    size: int = Field(default=0, sa_type=BigInteger)
    mtime_ns: int = Field(default=0, sa_type=BigInteger)  # nanoseconds overflow a 32-bit INTEGER
    version: int = 0
    enriched_hash: str | None = None
    pipeline_version: str | None = None
    n_records: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: float = 0.0


class ChangeRow(SQLModel, table=True):
    __tablename__ = "changes"
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(index=True)
    #: None means the item was deleted
    content_hash: str | None = None
    status: str = Field(default=ChangeStatus.PENDING.value, index=True)
    #: higher first: explicit refreshes jump the queue
    priority: int = 0
    force: bool = False
    observed_at: float
    enqueued_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))


class VersionRow(SQLModel, table=True):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("item_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(index=True)
    version: int
    content_hash: str
    pipeline_version: str
    status: str
    n_records: int
    created_at: float


class RecordRow(SQLModel, table=True):
    __tablename__ = "records"
    #: an item's card is read by its kind every query (sleepd.cards): 1.3 ms for 12 contracts
    #: through the item_id index, whose rows had to be read to find the kind
    __table_args__ = (Index("ix_records_item_kind", "item_id", "kind"),)
    id: str = Field(primary_key=True)
    item_id: int = Field(index=True)
    version: int
    source: str = Field(index=True)
    path: str
    kind: str
    title: str = ""
    text: str = Field(sa_column=Column(Text, nullable=False))
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    access: str = Field(sa_column=Column(Text, nullable=False))
    #: float32 vector beside the record so the index is rebuilt without re-embedding
    embedding: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_hash: str
    pipeline_version: str
    created_at: float


@dataclass(slots=True, eq=False)
class Record:
    """A current record as the query reads it: the columns of a :class:`RecordRow` but its stored
    vector, as a plain object. Building 128 ORM rows took 2.0 of a 3.1 ms read at 100k points, and
    every attribute read of one goes through SQLAlchemy's instrumentation (~3,500 a query)."""

    id: str
    item_id: int
    version: int
    source: str
    path: str
    kind: str
    title: str
    text: str
    evidence: str
    access: str
    content_hash: str
    pipeline_version: str
    created_at: float


@dataclass(slots=True, eq=False)
class Item:
    """An item as the query reads it beside its candidates (a plain object, as :class:`Record`)."""

    id: int
    source: str
    key: str
    state: str
    observed_hash: str | None
    version: int
    enriched_hash: str | None


#: the columns a :class:`Record` and an :class:`Item` are read from, in their fields' order
RECORD_COLUMNS = tuple(RecordRow.__table__.columns[name] for name in Record.__slots__)  # type: ignore[attr-defined]
ITEM_COLUMNS = tuple(ItemRow.__table__.columns[name] for name in Item.__slots__)  # type: ignore[attr-defined]


class RecordArchiveRow(SQLModel, table=True):
    """A record of a version no longer published (superseded, or its item deleted), kept for
    ``sleepd show --version`` and ``diff`` until retention (``keep_versions``) or a purge removes
    it. A table of its own, so ``records`` holds only current records and nothing that reads it
    (the query, the indexer, the aggregates, the metrics) has to filter. Without the embedding:
    old records are never in the vector index, and the vector is most of a row."""

    __tablename__ = "record_archive"
    __table_args__ = (Index("ix_record_archive_item_version", "item_id", "version"),)
    id: str = Field(primary_key=True)
    item_id: int
    version: int
    source: str
    path: str
    kind: str
    title: str = ""
    text: str = Field(sa_column=Column(Text, nullable=False))
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    access: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str
    pipeline_version: str
    created_at: float


#: the columns a record keeps when it is archived (all but the embedding)
ARCHIVED_COLUMNS = ("id", "item_id", "version", "source", "path", "kind", "title", "text", "evidence", "access",
                    "content_hash", "pipeline_version", "created_at")


class IndexEventRow(SQLModel, table=True):
    """What the single indexer must apply to the vector index, in order.

    The indexer follows ``applied``, not a cursor over ``seq``: on PostgreSQL two publishers can
    commit a lower seq after a higher one, and a cursor would have passed it already."""

    __tablename__ = "index_events"
    seq: int | None = Field(default=None, primary_key=True)
    op: str
    record_id: str
    applied: bool = Field(default=False, index=True)


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


class TokenRow(SQLModel, table=True):
    __tablename__ = "tokens"
    #: sha256 of the token: the token itself is never stored
    hash: str = Field(primary_key=True)
    principal: str = Field(index=True)
    groups: str = "[]"
    admin: bool = False
    created_at: float


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit"
    id: int | None = Field(default=None, primary_key=True)
    at: float
    actor: str
    action: str
    detail: str = Field(sa_column=Column(Text, nullable=False))


class QueryLogRow(SQLModel, table=True):
    __tablename__ = "query_log"
    id: int | None = Field(default=None, primary_key=True)
    #: indexed: retention deletes by age
    at: float = Field(index=True)
    principal: str
    query: str = Field(sa_column=Column(Text, nullable=False))
    budget: int
    tokens_used: int
    n_records: int
    latency_ms: float
    #: items the answer drew on (also in ``query_log_items``, where a purge finds them by SQL)
    items: str = "[]"
    #: which records served it: memory, raw or mixed (sleepd.pack.ROUTES); None for an empty pack
    route: str | None = None


class QueryLogItemRow(SQLModel, table=True):
    """One item a logged query drew on: a purge finds the query text to drop with one indexed
    lookup instead of reading the whole log inside its write transaction."""

    __tablename__ = "query_log_items"
    query_id: int = Field(primary_key=True)
    item_id: int = Field(primary_key=True, index=True)


class LlmUsageRow(SQLModel, table=True):
    """One call to the LLM (or one skipped for budget): the cost ledger of the LLM layer.
    A row is written as a reservation before the call and settled with the real usage after it."""

    __tablename__ = "llm_usage"
    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    source: str = Field(index=True)
    item_id: int
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    #: reserved | ok | malformed | failed | budget_exhausted
    outcome: str
    #: claims dropped because their evidence was not in the source
    dropped: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))


class TokenStateRow(SQLModel, table=True):
    """What happened to a token after it was made: when it was last used, when it was revoked.
    A table of its own so ledgers made before it gain it from create_all (which adds tables,
    never columns); a token without a row here was never used nor revoked."""

    __tablename__ = "token_state"
    #: TokenRow.hash
    hash: str = Field(primary_key=True)
    last_used_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None


def upgrade(engine: Engine) -> None:
    """Create the tables, and bring a ledger written by an older sleepd up to them: ``create_all``
    adds missing tables, never a column or an index of a table that exists."""
    inspector = inspect(engine)
    had_log = inspector.has_table(QueryLogRow.__tablename__)
    log_indexed = had_log and "ix_query_log_at" in {i["name"] for i in inspector.get_indexes("query_log")}
    had_log_items = inspector.has_table(QueryLogItemRow.__tablename__)
    old_events = (inspector.has_table(IndexEventRow.__tablename__)
                  and "applied" not in {c["name"] for c in inspector.get_columns(IndexEventRow.__tablename__)})
    no_route = had_log and "route" not in {c["name"] for c in inspector.get_columns(QueryLogRow.__tablename__)}
    had_records = inspector.has_table(RecordRow.__tablename__)
    records_indexed = had_records and "ix_records_item_kind" in {
        i["name"] for i in inspector.get_indexes(RecordRow.__tablename__)}
    SQLModel.metadata.create_all(engine)
    if had_records and not records_indexed:
        with engine.begin() as conn:  # IF NOT EXISTS: another process may be upgrading it too
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_records_item_kind ON records (item_id, kind)"))
    if old_events:
        _add_applied(engine)
    if no_route:
        _add_column(engine, QueryLogRow.__tablename__, "route", "VARCHAR")
    if had_log and not (log_indexed and had_log_items):
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE INDEX IF NOT EXISTS ix_query_log_at ON query_log (at)"))
                if not had_log_items:  # the items of queries logged before, found by SQL from now on
                    pairs = {(qid, int(iid)) for qid, items in conn.execute(text("SELECT id, items FROM query_log"))
                             for iid in json.loads(items or "[]")}
                    if pairs:
                        conn.execute(text("INSERT INTO query_log_items (query_id, item_id) VALUES (:q, :i)"),
                                     [{"q": q, "i": i} for q, i in sorted(pairs)])
        except IntegrityError:  # another process starting at the same moment filled it first
            pass


def _add_column(engine: Engine, table: str, column: str, sql_type: str) -> None:
    """Add a nullable column that a newer sleepd reads (the old rows have none to give)."""
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
    except DBAPIError:  # another process (the worker, the daemon) upgraded it first
        if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
            raise


def _add_applied(engine: Engine) -> None:
    """Events up to the old cursor were applied; those after it (or skipped by it) are not."""
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE index_events ADD COLUMN applied BOOLEAN NOT NULL DEFAULT false"))
            cursor = conn.execute(text("SELECT value FROM meta WHERE key = 'index_cursor'")).scalar()
            conn.execute(text("UPDATE index_events SET applied = true WHERE seq <= :c"), {"c": int(cursor or 0)})
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_index_events_applied ON index_events (applied)"))
    except DBAPIError:  # another process (the worker, the daemon) upgraded it first
        if "applied" not in {c["name"] for c in inspect(engine).get_columns(IndexEventRow.__tablename__)}:
            raise
