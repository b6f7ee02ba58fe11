"""The ledger: durable state of sources, items, changes, versions and records.

Every write that matters happens here, in one transaction each. SQLite runs in WAL mode with
``BEGIN IMMEDIATE`` for writers (so two processes never deadlock upgrading a lock) and a
separate reader engine whose deferred transactions see one consistent snapshot.

One facade, :class:`Ledger`, composed of one mixin per concern: ``engine`` (connections,
sessions, meta, audit), ``sources``, ``outbox`` (observations and scheduling), ``versions``
(publish, retract, fail), ``access`` (access changes in place), ``archive`` (old versions'
records, retention), ``index_events``, ``queries`` (current records, query log), ``purge``,
``refresh`` (queue refreshes, read where they stand) and ``status``.
"""

from __future__ import annotations

from sleepd.ledger.access import AccessChange, AccessMixin
from sleepd.ledger.archive import ArchiveMixin, PruneReport
from sleepd.ledger.index_events import IndexEventsMixin
from sleepd.ledger.outbox import OutboxMixin
from sleepd.ledger.purge import PurgeMixin, PurgeReceipt
from sleepd.ledger.queries import QueriesMixin
from sleepd.ledger.refresh import RefreshMixin
from sleepd.ledger.sources import SourcesMixin
from sleepd.ledger.status import StatusMixin
from sleepd.ledger.versions import VersionsMixin, record_id

__all__ = ["AccessChange", "Ledger", "PruneReport", "PurgeReceipt", "record_id"]


class Ledger(SourcesMixin, OutboxMixin, VersionsMixin, AccessMixin, ArchiveMixin, IndexEventsMixin, QueriesMixin,
             PurgeMixin, RefreshMixin, StatusMixin):
    """Durable state of sources, items, changes, versions and records; every write that matters
    happens here, in one transaction each."""
