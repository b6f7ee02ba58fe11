"""Decides when and what to enrich; hands work to Celery, never runs S(c) itself.

When: nobody queried for ``idle_seconds`` and the machine is not busy. Idle-awareness bounds
staleness, it never suspends work: explicit refreshes go regardless, and a change that waited
longer than its source's ``max_staleness_seconds`` goes whatever the load (the embedded worker is
niced, so queries keep the CPU first). What first: refreshes, then changes in the order they
were seen. A change handed to the broker whose lease runs out is handed out again: the ledger is
the outbox. Why it waits and how old the backlog is are part of the status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from sleepd import defaults, llm_budget
from sleepd.ledger import Ledger
from sleepd.schema import ChangeRow, ChangeStatus, ItemRow, QueryLogRow
from sleepd.settings import Settings

__all__ = ["Backlog", "Scheduler", "SchedulerState", "backlog", "busy_reason"]

log = logging.getLogger("sleepd.scheduler")

#: hands a batch of (item id, force) to the workers; raises if the broker refuses it
Send = Callable[[list[tuple[int, bool]]], None]


class SchedulerState(str, Enum):
    """What the scheduler did on its last tick."""

    #: queries arrived recently or the machine is loaded (``reason`` says which): only explicit
    #: refreshes and changes past their maximum staleness run
    WAITING_FOR_IDLE = "waiting_for_idle"
    #: busy, but changes older than their source's maximum staleness were handed out anyway
    FORCING_STALE = "forcing_stale"
    #: idle, handing work to workers
    DISPATCHING = "dispatching"
    #: the broker refused a task; retried next tick
    BROKER_DOWN = "broker_down"


@dataclass(frozen=True)
class Backlog:
    """One source's pending changes: how many, how old the oldest, when it will be forced."""

    source: str
    pending: int
    oldest_observed_at: float
    max_staleness_s: float

    def as_dict(self, now: float) -> dict[str, Any]:
        age = max(0.0, now - self.oldest_observed_at)
        return {"source": self.source, "pending": self.pending, "oldest_age_s": round(age, 1),
                "max_staleness_s": self.max_staleness_s,
                "forced_in_s": round(max(0.0, defaults.STALE_DISPATCH_SHARE * self.max_staleness_s - age), 1)}


def backlog(ledger: Ledger, settings: Settings) -> list[Backlog]:
    """Pending changes grouped by source (one small aggregate query; the status reads it)."""
    with ledger.read() as s:
        rows = s.exec(select(ItemRow.source, func.count(), func.min(ChangeRow.observed_at))
                      .join(ItemRow, col(ItemRow.id) == col(ChangeRow.item_id))
                      .where(ChangeRow.status == ChangeStatus.PENDING.value)
                      .group_by(ItemRow.source).order_by(ItemRow.source)).all()
    return [Backlog(source, int(n), float(oldest), settings.max_staleness(source)) for source, n, oldest in rows]


def busy_reason(ledger: Ledger, settings: Settings, now: float | None = None) -> str | None:
    """Why enrichment should wait now, in words a person reads ("3 queries in the last 10 s",
    "load 9.1 >= 8 (2 cores)"), or None when the machine is idle."""
    now = time.time() if now is None else now
    window = settings.idle_seconds
    if now - ledger.last_query_at() < window:
        with ledger.read() as s:
            recent = int(s.exec(select(func.count()).select_from(QueryLogRow)
                                .where(col(QueryLogRow.at) >= now - window)).one())
        recent = max(recent, 1)  # the log is written in batches: last_query_at may run ahead of it
        return f"{recent} {'query' if recent == 1 else 'queries'} in the last {window:g} s"
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    limit = settings.busy_load_per_core * cores
    if load >= limit:
        return f"load {load:.1f} >= {limit:g} ({cores} cores)"
    return None


class Scheduler:
    def __init__(self, ledger: Ledger, settings: Settings, send: Send, pipeline_version: str | None = None) -> None:
        self.ledger = ledger
        #: items enriched by another pipeline version are re-made when idle and nothing else waits
        self.pipeline_version = pipeline_version
        self.settings = settings
        self.send = send
        self.state = SchedulerState.DISPATCHING
        #: why the last tick held work back (None when idle)
        self.reason: str | None = None
        self.last_error: str | None = None
        self.dispatched = 0
        #: changes handed out while busy because they were older than their maximum staleness
        self.forced = 0
        self.wake = threading.Event()

    def idle(self) -> bool:
        return busy_reason(self.ledger, self.settings) is None

    def tick(self) -> int:
        """Hand out what may run now. Returns the number of tasks sent."""
        now = time.time()
        reason = busy_reason(self.ledger, self.settings, now)
        room = self.settings.max_in_flight - self.ledger.in_flight(self.settings.lease_seconds)
        due = self.ledger.due_changes(room, self.settings.lease_seconds)
        if reason is None and not due and self.pipeline_version and self._queue_outdated(room):
            due = self.ledger.due_changes(room, self.settings.lease_seconds)
        forced: list[ChangeRow] = []
        if reason is not None:
            forced = self._overdue([c for c in due if c.priority <= 0], now)
            forced_ids = {c.id for c in forced}
            due = [c for c in due if c.priority > 0 or c.id in forced_ids]
        self.reason = reason
        if reason is None:
            self.state = SchedulerState.DISPATCHING
        else:
            self.state = SchedulerState.FORCING_STALE if forced else SchedulerState.WAITING_FOR_IDLE
        sent = self._send(due)
        if sent:
            self.ledger.mark_enqueued(sent)
            self.dispatched += len(sent)
            self.forced += sum(1 for c in forced if c.id in sent)
        return len(sent)

    def _send(self, due: Sequence[ChangeRow]) -> list[int]:
        """Batches as usual, forced or not; returns the ids of the changes the broker took."""
        sent: list[int] = []
        try:
            for start in range(0, len(due), defaults.BATCH_ITEMS):
                batch = due[start:start + defaults.BATCH_ITEMS]
                self.send([(c.item_id, c.force) for c in batch])
                sent.extend(c.id for c in batch if c.id is not None)
        except Exception as exc:  # broker down: the changes stay open in the ledger
            self.state = SchedulerState.BROKER_DOWN
            self.last_error = f"broker: {type(exc).__name__}: {exc}"
            log.warning("cannot enqueue: %s", self.last_error)
        else:
            self.last_error = None
        return sent

    def _overdue(self, changes: Sequence[ChangeRow], now: float) -> list[ChangeRow]:
        """The changes that waited long enough that they must go now to be fresh within their
        source's maximum staleness (:data:`sleepd.defaults.STALE_DISPATCH_SHARE` of it)."""
        if not changes:
            return []
        ids = list({c.item_id for c in changes})
        with self.ledger.read() as s:
            source_of = dict(s.exec(select(ItemRow.id, ItemRow.source).where(col(ItemRow.id).in_(ids))).all())
        return [c for c in changes
                if now - c.observed_at >= defaults.STALE_DISPATCH_SHARE
                * self.settings.max_staleness(source_of.get(c.item_id, ""))]

    def describe(self) -> dict[str, Any]:
        """The scheduler block of the status: state, why it waits, the backlog per source."""
        now = time.time()
        queue = [b.as_dict(now) for b in backlog(self.ledger, self.settings)]
        oldest = max(queue, key=lambda b: b["oldest_age_s"], default=None)
        return {
            "state": self.state.value, "reason": self.reason, "idle": self.reason is None,
            "dispatched": self.dispatched, "forced": self.forced, "error": self.last_error,
            "max_staleness_s": self.settings.max_staleness_seconds,
            "oldest_pending_age_s": oldest["oldest_age_s"] if oldest else None,
            "forced_in_s": min((b["forced_in_s"] for b in queue), default=None),
            "queue": queue,
        }

    def _queue_outdated(self, room: int) -> int:
        """Re-make outdated items, within the LLM budget: with none left today, items are only
        brought to the deterministic version (those already there wait for the next day)."""
        assert self.pipeline_version is not None
        target, skip = llm_budget.outdated_target(self.ledger, self.settings, self.pipeline_version)
        return self.ledger.queue_outdated(target, room, skip_sources=skip)

    def run(self, stop: threading.Event, tick: float = defaults.SCHEDULER_TICK) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the ledger may be down: keep going, show it in status
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("scheduler tick failed")
            self.wake.wait(tick)
            self.wake.clear()
