"""The load of the fault run: a stream of file edits and SQL row changes, each with content never
written before, and questions asked throughout, every answer kept for the audit."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from tests.faults.cluster import Api

__all__ = ["WORDS", "Answer", "Edits", "Questions"]

WORDS = ("ledger", "harbor", "copper", "meadow", "signal", "lantern", "orbit", "granite", "willow", "ember",
         "falcon", "prism", "tundra", "velvet", "quarry", "cobalt", "saffron", "nimbus", "juniper", "basalt")
#: the item purged and the ones deleted during the run carry words nothing else uses, so the
#: questions about them would surely find them if they were still served
PURGED_FILE, DELETED_FILE = "purged.md", "deleted.md"
DELETED_ACCOUNT = 999
PURGED_TEXT = "The zebra quartz protocol rotates the vault keys every full moon."
DELETED_TEXT = "The walrus obsidian runbook restarts the tide gauges after a storm."
QUESTIONS = ("how are the zebra quartz vault keys rotated?", "walrus obsidian runbook for tide gauges",
             "which account is Gideon Flannery and what plan does he have?", "what does the copper harbor note say?",
             "revision notes about granite and willow", "which customers are on the enterprise plan?")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Edits:
    """Edits files in ``repo`` (written whole, by rename, as editors save) and rows of the
    ``accounts`` table; counts what it committed and remembers every file content it wrote."""

    repo: Path
    stage: Path
    app: Engine
    n_files: int
    n_accounts: int
    rng: random.Random
    file_edits: int = 0
    row_changes: int = 0
    written: dict[str, list[str]] = field(default_factory=dict)
    failed_writes: int = 0
    _serial: int = 0

    @property
    def files(self) -> list[str]:
        return [f"topic{i:02d}.md" for i in range(self.n_files)]

    def _text(self, name: str) -> str:
        self._serial += 1
        words = " ".join(self.rng.choice(WORDS) for _ in range(40))
        return f"# Notes on {name}\n\n## Revision {self._serial}\n\nRevision {self._serial} of {name}: {words}.\n"

    def write(self, name: str, body: str) -> None:
        data = body.encode()
        staged = self.stage / name
        staged.write_bytes(data)
        os.replace(staged, self.repo / name)  # a reader sees the old or the new file, never half of one
        self.written.setdefault(name, []).append(sha256(data))

    def seed(self) -> None:
        self.repo.mkdir()
        self.stage.mkdir()
        for name in self.files:
            self.write(name, self._text(name))
        self.write(PURGED_FILE, f"# Vault\n\n{PURGED_TEXT}\n")
        self.write(DELETED_FILE, f"# Gauges\n\n{DELETED_TEXT}\n")
        with self.app.begin() as conn:
            conn.execute(text("CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL, plan text NOT NULL, "
                              "note text NOT NULL, updated_at timestamp NOT NULL DEFAULT now())"))
            conn.execute(text("CREATE INDEX accounts_updated ON accounts (updated_at)"))
            for i in range(self.n_accounts):
                conn.execute(text("INSERT INTO accounts (id, name, plan, note) VALUES (:i, :n, :p, :note)"),
                             {"i": i, "n": f"Customer {i}", "p": self.rng.choice(("basic", "pro", "enterprise")),
                              "note": "opened"})
            conn.execute(text("INSERT INTO accounts (id, name, plan, note) VALUES (:i, 'Gideon Flannery', "
                              "'enterprise', 'walrus obsidian account')"), {"i": DELETED_ACCOUNT})

    def step(self) -> None:
        """One change: a file edit or a row update (a database that is down is tried again later)."""
        if self.rng.random() < 0.5:
            name = self.rng.choice(self.files)
            self.write(name, self._text(name))
            self.file_edits += 1
            return
        self._serial += 1
        try:
            with self.app.begin() as conn:
                conn.execute(text("UPDATE accounts SET note = :note, updated_at = now() WHERE id = :i"),
                             {"i": self.rng.randrange(self.n_accounts),
                              "note": f"note {self._serial}: {self.rng.choice(WORDS)} {self.rng.choice(WORDS)}"})
            self.row_changes += 1
        except Exception:  # the database is restarting: the application would retry too
            self.failed_writes += 1


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    items: set[str]


class Questions(threading.Thread):
    """Asks a question every ``every`` seconds until stopped, and keeps what each answer cited."""

    def __init__(self, api: Api, every: float = 0.25) -> None:
        super().__init__(name="fault-questions", daemon=True)
        self.api, self.every = api, every
        self.answers: list[Answer] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_event.wait(self.every):
            question = QUESTIONS[n % len(QUESTIONS)]
            n += 1
            sent = time.time()
            try:
                status, body = self.api.call("POST", "/v1/query", {"q": question, "budget": 2048}, timeout=60)
            except OSError:  # the API itself is unreachable: counted, the daemon check says why
                status, body = 0, {}
            items = {f"{r['source']}:{r['item']}" for r in body.get("records", [])} if status == 200 else set()
            self.answers.append(Answer(sent, time.time(), status, items))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=90)

    def served_after(self, item: str, acknowledged: float) -> list[Answer]:
        """Answers to questions sent after ``acknowledged`` that still cited ``item``."""
        return [a for a in self.answers if a.sent > acknowledged and item in a.items]

    def summary(self) -> dict[str, Any]:
        statuses = Counter(str(a.status) for a in self.answers if a.status != 200)
        return {"queries": len(self.answers), "ok": sum(a.status == 200 for a in self.answers),
                "errors": sum(statuses.values()), "error_statuses": dict(statuses)}
