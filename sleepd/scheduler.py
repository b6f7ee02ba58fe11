"""Decides when and what to enrich; hands work to Celery, never runs S(c) itself.

When: nobody queried for ``idle_seconds`` and the machine is not busy (explicit refreshes
go regardless). What first: refreshes, then changes in the order they were seen. A change
handed to the broker whose lease runs out is handed out again: the ledger is the outbox.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from enum import Enum

from sleepd import defaults, llm_budget
from sleepd.ledger import Ledger
from sleepd.settings import Settings

__all__ = ["Scheduler", "SchedulerState"]

log = logging.getLogger("sleepd.scheduler")

#: load average per core above which the machine counts as busy (our own worker included)
BUSY_LOAD_PER_CORE = 4.0

#: hands a batch of (item id, force) to the workers; raises if the broker refuses it
Send = Callable[[list[tuple[int, bool]]], None]


class SchedulerState(str, Enum):
    """What the scheduler did on its last tick."""

    #: queries arrived recently: only explicit refreshes run
    WAITING_FOR_IDLE = "waiting_for_idle"
    #: idle, handing work to workers
    DISPATCHING = "dispatching"
    #: the broker refused a task; retried next tick
    BROKER_DOWN = "broker_down"


class Scheduler:
    def __init__(self, ledger: Ledger, settings: Settings, send: Send, pipeline_version: str | None = None) -> None:
        self.ledger = ledger
        #: items enriched by another pipeline version are re-made when idle and nothing else waits
        self.pipeline_version = pipeline_version
        self.settings = settings
        self.send = send
        self.state = SchedulerState.DISPATCHING
        self.last_error: str | None = None
        self.dispatched = 0
        self.wake = threading.Event()

    def idle(self) -> bool:
        quiet = time.time() - self.ledger.last_query_at() >= self.settings.idle_seconds
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        return quiet and load < BUSY_LOAD_PER_CORE

    def tick(self) -> int:
        """Hand out what may run now. Returns the number of tasks sent."""
        idle = self.idle()
        room = self.settings.max_in_flight - self.ledger.in_flight(self.settings.lease_seconds)
        due = self.ledger.due_changes(room, self.settings.lease_seconds)
        if idle and not due and self.pipeline_version and self._queue_outdated(room):
            due = self.ledger.due_changes(room, self.settings.lease_seconds)
        if not idle:
            due = [c for c in due if c.priority > 0]
        self.state = SchedulerState.DISPATCHING if idle else SchedulerState.WAITING_FOR_IDLE
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
        if sent:
            self.ledger.mark_enqueued(sent)
            self.dispatched += len(sent)
        return len(sent)

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
