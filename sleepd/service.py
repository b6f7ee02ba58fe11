"""The operations every front end shares (REST, CLI, MCP): query, status, refresh, purge,
access changes, reindex. One Service holds the ledger, the index and the query engine of one process.

A daemon loads the embedding model (exporting it the first time on this machine) in the
background as it starts: a query that comes meanwhile is answered 503 "memory not ready: loading
the embedding model" at once, never left waiting on the export."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sleepd import defaults
from sleepd.access import same_access, with_access
from sleepd.aggregates import refresh_aggregates
from sleepd.auth import Principal
from sleepd.embed import Embedder, get_embedder
from sleepd.errors import BadRequest, Forbidden, ModelLoading, NotFound, Unavailable
from sleepd.index import VectorIndex, open_index
from sleepd.indexer import Indexer
from sleepd.ledger import Ledger
from sleepd.ledger.refresh import freshness_counts
from sleepd.query import QueryEngine, QueryResult
from sleepd.retention import Retention
from sleepd.settings import FileSource, Settings, Source
from sleepd.status import status_report
from sleepd.tokens import get_tokenizer

__all__ = ["MODEL_LOADING", "Service", "apply_access", "declare_sources"]

log = logging.getLogger("sleepd.service")

#: the message of the 503 a query gets while the daemon loads the model
MODEL_LOADING = "memory not ready: loading the embedding model"

#: how often the query re-reads where file sources live (to read a changed item's current lines)
ROOTS_SECONDS = 5.0


class Service:
    def __init__(self, settings: Settings, ledger: Ledger, index: VectorIndex,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.index = index
        self.retention = Retention(ledger, settings)
        self.indexer = Indexer(ledger, index, settings.query_log_days, maintenance=self.retention.run_if_due)
        self._embedder = embedder
        self._engine: QueryEngine | None = None
        self._roots_read = -ROOTS_SECONDS
        #: extra status from the daemon (components, worker, scheduler, first pass) when one runs
        #: this; it is given the status report so far
        self.extra_status: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        #: called after refresh so the scheduler does not wait for its next tick
        self.on_refresh: Callable[[], None] | None = None
        #: scans the named sources now (the daemon's running watchers); without it, a lifted purge
        #: is scanned by watchers made for the occasion
        self.rescan: Callable[[list[str]], object] | None = None
        #: True from a daemon's start until :meth:`load_model` is done; queries get a 503 meanwhile
        self.model_loading = False
        self._model_error: str | None = None

    @classmethod
    def open(cls, settings: Settings, ledger: Ledger | None = None) -> Service:
        """A service over the settings' ledger and index (the index folder is locked to us)."""
        ledger = ledger or Ledger(settings.database_url)
        index = open_index(settings.home, defaults.EMBED_DIM, settings.qdrant_url)
        return cls(settings, ledger, index)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self.index.close()

    @property
    def engine(self) -> QueryEngine:
        if self._engine is None:
            self._engine = QueryEngine(self.ledger, self.index, self._embedder or self.embedder(),
                                       get_tokenizer(self.settings.tokenizer))
        if time.monotonic() - self._roots_read >= ROOTS_SECONDS:  # not a ledger read per query
            self._engine.roots = {s.name: s.path for s in self.ledger.sources() if isinstance(s, FileSource)}
            self._roots_read = time.monotonic()
        return self._engine

    def embedder(self) -> Embedder:
        """The process-wide model for the configured backend; its ONNX export is cached once per
        machine (settings.model_cache), in home/models only when that cannot be written."""
        return get_embedder(self.settings.embed_backend, *self.settings.embedder_dirs)

    def load_model(self) -> None:
        """Load (or export, the first time) the model now; a daemon runs this in a thread as it starts."""
        started = time.monotonic()
        try:
            self._embedder = self._embedder or self.embedder()
            log.info("embedding model ready (%s) in %.1f s", self._embedder.backend, time.monotonic() - started)
        except Exception as exc:
            self._model_error = f"{type(exc).__name__}: {exc}"
            log.error("the embedding model failed to load: %s", self._model_error)
        finally:
            self.model_loading = False

    @property
    def model_state(self) -> str:
        """"loading", "ready", "error: ..." or "not loaded" (loaded by the first query)."""
        if self.model_loading:
            return "loading"
        if self._model_error is not None:
            return f"error: {self._model_error}"
        return "ready" if self._embedder is not None or self._engine is not None else "not loaded"

    def query(self, q: object, budget: object, principal: Principal) -> QueryResult:
        if self.model_loading:
            raise ModelLoading(MODEL_LOADING)
        if self._model_error is not None:
            raise Unavailable(f"memory not ready: the embedding model failed to load ({self._model_error})")
        self.indexer.sync()  # cheap when nothing is pending; makes a fresh publish visible now
        return self.engine.query(q, budget, principal)

    def status(self) -> dict[str, Any]:
        status = status_report(self.ledger, self.settings)
        if self.extra_status is not None:
            status.update(self.extra_status(status))
        return status

    def refresh(self, principal: Principal, source: str | None = None, pattern: str | None = None,
                force: bool = False) -> dict[str, Any]:
        _require_admin(principal)
        self._check_source(source)
        items = self.ledger.queue_refresh(source, pattern, force)
        self.ledger.audit(principal.name, "refresh", {"source": source, "path": pattern, "force": force,
                                                      "queued": len(items)})
        if self.on_refresh is not None:
            self.on_refresh()
        return {"queued": len(items), "items": items, "source": source, "path": pattern, "force": force}

    def refresh_state(self, principal: Principal, item_ids: object) -> dict[str, Any]:
        """Where the items of a refresh stand (see :meth:`Ledger.freshness`), with counts by state:
        ``sleepd refresh --wait`` polls it until none is "waiting"."""
        _require_admin(principal)
        if not isinstance(item_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                      for i in item_ids):
            raise BadRequest("'items' must be a list of item ids (whole numbers), as refresh returned them")
        if len(item_ids) > defaults.REFRESH_STATE_MAX:
            raise BadRequest(f"at most {defaults.REFRESH_STATE_MAX} items per call; got {len(item_ids)}")
        items = self.ledger.freshness(item_ids)
        return {"items": items, **freshness_counts(items)}

    def purge(self, principal: Principal, source: str | None = None, pattern: str | None = None,
              lift: bool = False, dry_run: bool = False, keep_excluded: bool = False) -> dict[str, Any]:
        """Remove memory (see :meth:`Ledger.purge`); with ``lift``, stop excluding a glob purged
        before, so the next scan tracks its files again. ``dry_run`` says what would go and removes
        nothing. A glob that matches no tracked item is refused (a typo would otherwise purge
        nothing and silently exclude the glob for good) unless ``keep_excluded`` asks to keep it
        as an exclusion anyway."""
        _require_admin(principal)
        if lift:
            if pattern is None:
                raise BadRequest("lifting a purge needs the path glob that was purged")
            lifted = self.ledger.lift_purge(source, pattern)
            if not lifted:
                raise NotFound(f"no purge of {pattern!r} in {'source ' + repr(source) if source else 'all sources'}")
            # at once, not at the next periodic rescan: the glob's files are tracked and queued now
            self._rescan([source] if source else [s.name for s in self.ledger.sources()])
            found = self.ledger.tracked(source, pattern)
            self.ledger.audit(principal.name, "purge.lift", {"source": source, "path": pattern, "found": len(found)})
            if self.on_refresh is not None:
                self.on_refresh()
            return {"source": source, "path": pattern, "lifted": lifted, "found": len(found),
                    "items": found[:defaults.LISTED_KEYS]}
        if source is None and pattern is None:
            raise BadRequest("purge needs a source or a path glob")
        self._check_source(source)
        preview = self.ledger.purge_preview(source, pattern)
        if dry_run:
            return {"source": source, "path": pattern, "dry_run": True, **preview}
        if pattern is not None and not preview["items"] and not keep_excluded:
            where = f"source {source!r}" if source else "any source"
            raise BadRequest(f"no tracked item of {where} matches {pattern!r}: nothing to purge (keep_excluded "
                             "to exclude the glob from memory anyway)")
        if self._engine is not None:
            self._engine.flush_log()  # the query log of queries already answered goes with the items
        receipt, record_ids = self.ledger.purge(source, pattern)
        receipt.index_points = self.indexer.remove(record_ids)
        if pattern is not None:  # aggregates that drew on purged items went too: re-made from what is left
            for name in [source] if source else [s.name for s in self.ledger.sources()]:
                refresh_aggregates(self.ledger, name, when_quiet=False)
        self.ledger.audit(principal.name, "purge", {"source": source, "path": pattern, **receipt.as_dict()})
        if source is not None and pattern is None:  # the whole source went: it is forgotten too
            self.ledger.audit(principal.name, "source.remove", {"source": source, "items": receipt.items})
        return {"source": source, "path": pattern, **receipt.as_dict()}

    def _rescan(self, names: list[str]) -> None:
        if self.rescan is not None:
            self.rescan(names)
            return
        from sleepd.watchers import watcher_for

        for source in self.ledger.sources():
            if source.name in names:
                watcher = watcher_for(source, self.ledger, self.settings)
                try:
                    watcher.scan()
                finally:
                    watcher.stop()

    def change_access(self, principal: Principal, source: str, access: object,
                      paths: object = None) -> dict[str, Any]:
        """Give ``source`` a new access list (and, unless ``paths`` is None, new path globs), in
        effect for the next query: records keep their version, the index's points their vectors."""
        _require_admin(principal)
        self._check_source(source)
        found = self.ledger.get_source(source)
        assert found is not None
        receipt = apply_access(self.ledger, with_access(found, access, paths), principal.name)
        self.indexer.sync()  # the points carry the new lists before this returns
        if self.on_refresh is not None:  # the aggregates' rebuilds are queued: no need to wait a tick
            self.on_refresh()
        return receipt

    def reindex(self, principal: Principal) -> dict[str, Any]:
        _require_admin(principal)
        points = self.indexer.rebuild()
        self.ledger.audit(principal.name, "reindex", {"points": points})
        return {"points": points}

    def _check_source(self, source: str | None) -> None:
        if source is not None and self.ledger.get_source(source) is None:
            known = ", ".join(s.name for s in self.ledger.sources()) or "none"
            raise NotFound(f"no source named {source!r} (known: {known})")


def apply_access(ledger: Ledger, source: Source, actor: str) -> dict[str, Any]:
    """Save ``source`` with its (new) access and bring its records, aggregates and (through index
    events) the index in line, without re-enrichment; audited. The CLI, the API and the daemon's
    start (a changed config file) all come here."""
    change = ledger.change_access(source)
    if change.items:  # the retracted aggregates are planned again from the new groups
        refresh_aggregates(ledger, source.name, when_quiet=False)
    paths = source.access_paths if isinstance(source, FileSource) else ()
    receipt = {**change.as_dict(), "access": list(source.access),
               "paths": {glob: list(readers) for glob, readers in paths}}
    ledger.audit(actor, "access", receipt)
    return receipt


def _require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden(f"principal {principal.name!r} is not an admin")


def declare_sources(ledger: Ledger, settings: Settings, extra: tuple[FileSource, ...] = (),
                    extra_access: bool = True) -> None:
    """Save the declared sources (the config file's, then ``sleepd run PATH``'s) in the ledger. One
    whose declared readers differ from the ledger's takes an admin's access change (records and
    index follow, nothing is enriched again, audited as ``config``); one that declares none (a
    table without ``access``, a PATH without ``--access``) keeps what an admin set."""
    for source in (*settings.sources, *extra):
        known = ledger.get_source(source.name)
        undeclared = source.name in settings.access_undeclared if source in settings.sources else not extra_access
        if isinstance(known, FileSource) and isinstance(source, FileSource) and undeclared:
            source = replace(source, access=known.access, access_paths=known.access_paths)
        if known is not None and not same_access(known, source):
            log.warning("access of source %s changed in its declaration: records and index follow", source.name)
            apply_access(ledger, source, "config")
        else:
            ledger.save_source(source, actor="config" if source in settings.sources else "sleepd run")
