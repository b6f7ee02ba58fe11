"""The accounts corpora: tau2-bench's retail and airline databases in SQLite, watched as account
histories.

The question is what the customer says in a support task (its reason for calling and what it
knows); the gold evidence is each order (retail) or reservation (airline) the task's expected
actions touch, in the account of the customer who holds it.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from sleepd.bench.corpora import Corpus, Question, RowGold
from sleepd.bench.datasets import load_tau2_airline, load_tau2_retail, tau2_airline_source, tau2_retail_source
from sleepd.bench.split import in_half
from sleepd.errors import ConfigError
from sleepd.settings import SqlSource
from sleepd.sql.rows import read_item, row_id

__all__ = ["ACCOUNT_RULE", "DOMAINS", "load_accounts"]

ACCOUNT_RULE = ("a gold order (reservation) is recalled when its id appears in packed text cited to the account of "
                "the customer who holds it (a sleepd record of that account, or a baseline chunk of that "
                "account's rows); products and flights are reference data outside the watched tables and are not "
                "scored")


@dataclass(frozen=True)
class Domain:
    """A tau2 domain: where its data is, the table of the rows tasks act on, and how to load it."""

    name: str
    rows: str  # "orders" / "reservations": the db.json key and the table
    id_argument: str  # the action argument naming one of those rows
    load: Callable[..., dict[str, int]]
    source: Callable[..., SqlSource]


DOMAINS = {"retail": Domain("retail", "orders", "order_id", load_tau2_retail, tau2_retail_source),
           "airline": Domain("airline", "reservations", "reservation_id", load_tau2_airline, tau2_airline_source)}


def _instructions(task: dict[str, Any]) -> str:
    given = task["user_scenario"]["instructions"]
    if isinstance(given, str):
        return given
    return " ".join(str(given[k]) for k in ("reason_for_call", "known_info") if given.get(k))


def _orders(task: dict[str, Any], argument: str) -> list[str]:
    found: list[str] = []
    for action in (task.get("evaluation_criteria") or {}).get("actions") or []:
        order = (action.get("arguments") or {}).get(argument)
        if isinstance(order, str) and order not in found:
            found.append(order)
    return found


def render(source: SqlSource, key: str) -> tuple[str, str] | None:
    """One account as the baseline reads it: a line per row, ``table:id`` then the row as JSON."""
    found = read_item(source, key)
    if found is None:
        return None
    rows, _ = found
    lines = [f"{table.name}:{row_id(table, row)} {json.dumps(row, ensure_ascii=False, default=str)}"
             for table in source.tables for row in rows.get(table.name, [])]
    return key, "\n".join(lines)


def load_accounts(data: Path, work: Path, max_tasks: int | None, extra_users: int | None, seed: int = 0,
                  domain: str = "retail", half: str = "all") -> Corpus:
    """The ``domain``'s tasks of ``half`` (up to ``max_tasks``, in file order) whose actions touch an
    order or a reservation, over a database holding their customers and ``extra_users`` others (a seeded
    sample; None: all). The corpus is named "accounts" for retail, else after the domain."""
    spec = DOMAINS[domain]
    db_path, tasks_path = data / "tau2" / domain / "db.json", data / "tau2" / domain / "tasks.json"
    if not tasks_path.is_file():
        raise ConfigError(f"Config 'data' has value {str(data)!r}. Expected {tasks_path}.")
    db = json.loads(db_path.read_text(encoding="utf-8"))
    tasks = [t for t in json.loads(tasks_path.read_text(encoding="utf-8"))
             if _orders(t, spec.id_argument) and in_half("tau2", f"{domain}/{t['id']}", half)]
    tasks = tasks[:max_tasks]
    owner = {row_key: row["user_id"] for row_key, row in db[spec.rows].items()}
    wanted = {owner[o] for t in tasks for o in _orders(t, spec.id_argument) if o in owner}
    others = sorted(set(db["users"]) - wanted)
    if extra_users is not None:
        others = random.Random(seed).sample(others, min(extra_users, len(others)))
    users = sorted(wanted | set(others))
    name = "accounts" if domain == "retail" else domain
    root = work / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    url = f"sqlite:///{root / f'{domain}.db'}"
    spec.load(url, users=users, path=db_path)
    source = spec.source(url, name=name)
    questions = []
    for task in tasks:
        gold = tuple(RowGold(owner[o], o) for o in _orders(task, spec.id_argument) if o in owner)
        if gold:
            questions.append(Question(id=f"{domain}-{task['id']}", text=_instructions(task), gold=gold))

    def documents(keys: list[str]) -> list[tuple[str, str]]:
        return [doc for doc in (render(source, k) for k in keys) if doc is not None]

    def edit(marker: str) -> tuple[str, str]:
        key = questions[0].gold[0].path if questions else users[0]
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET email = :e, updated_at = :t WHERE user_id = :k"),
                             {"e": f"{marker}@example.com", "t": datetime.now(), "k": key})
                first, last = conn.execute(text("SELECT first_name, last_name FROM users WHERE user_id = :k"),
                                           {"k": key}).one()
        finally:
            engine.dispose()
        return key, f"What is the email address of {first} {last}, {marker}@example.com?"

    notes = [f"tau2 {domain}: {len(users)} accounts ({len(wanted)} customers of the tasks, {len(others)} others), "
             f"{len(questions)} tasks of the {half} half whose expected actions touch one of their {spec.rows}"]
    return Corpus(name=name, root=root, profile=source.profile, questions=questions, rule=ACCOUNT_RULE,
                  notes=notes, source=source, documents=documents, edit=edit)
