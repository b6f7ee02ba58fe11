"""SQL sources, one room: their configuration (:mod:`sleepd.sql.config`), read-only engines
(:mod:`sleepd.sql.engines`), reading an item's rows (:mod:`sleepd.sql.rows`) and the watched
database's rights and triggers (:mod:`sleepd.sql.triggers`). Watching them is the sql watcher's
(:mod:`sleepd.watchers.sql`, beside the files watcher it shares an interface with); making an
account's records is the accounts enricher's (:mod:`workers.enrich.accounts`)."""
