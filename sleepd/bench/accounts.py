"""The accounts corpus: tau2-bench's retail database in SQLite, watched as account histories.

The question is what the customer says in a support task (its reason for calling and what it
knows); the gold evidence is each order the task's expected actions touch, in the account of the
customer who placed it.
"""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from sleepd.bench.corpora import Corpus, Question, RowGold
from sleepd.datasets import load_tau2_retail, tau2_retail_source
from sleepd.errors import ConfigError
from sleepd.settings import SqlSource
from sleepd.sqlrows import read_item, row_id

__all__ = ["ACCOUNT_RULE", "load_accounts"]

ACCOUNT_RULE = ("a gold order is recalled when its order id appears in packed text cited to the account of the "
                "customer who placed it (a sleepd record of that account, or a baseline chunk of that account's "
                "rows); products are reference data outside the watched tables and are not scored")


def _instructions(task: dict[str, Any]) -> str:
    given = task["user_scenario"]["instructions"]
    if isinstance(given, str):
        return given
    return " ".join(str(given[k]) for k in ("reason_for_call", "known_info") if given.get(k))


def _orders(task: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for action in (task.get("evaluation_criteria") or {}).get("actions") or []:
        order = (action.get("arguments") or {}).get("order_id")
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


def load_accounts(data: Path, work: Path, max_tasks: int | None, extra_users: int | None, seed: int = 0) -> Corpus:
    """The retail tasks (up to ``max_tasks``, in file order) whose actions touch an order, over a
    database holding their customers and ``extra_users`` others (a seeded sample; None: all)."""
    db_path, tasks_path = data / "tau2" / "retail" / "db.json", data / "tau2" / "retail" / "tasks.json"
    if not tasks_path.is_file():
        raise ConfigError(f"Config 'data' has value {str(data)!r}. Expected {tasks_path}.")
    db = json.loads(db_path.read_text(encoding="utf-8"))
    tasks = [t for t in json.loads(tasks_path.read_text(encoding="utf-8")) if _orders(t)][:max_tasks]
    owner = {order_id: order["user_id"] for order_id, order in db["orders"].items()}
    wanted = {owner[o] for t in tasks for o in _orders(t) if o in owner}
    others = sorted(set(db["users"]) - wanted)
    if extra_users is not None:
        others = random.Random(seed).sample(others, min(extra_users, len(others)))
    users = sorted(wanted | set(others))
    root = work / "accounts"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    url = f"sqlite:///{root / 'retail.db'}"
    load_tau2_retail(url, users=users, path=db_path)
    source = tau2_retail_source(url, name="accounts")
    questions = []
    for task in tasks:
        gold = tuple(RowGold(owner[o], o) for o in _orders(task) if o in owner)
        if gold:
            questions.append(Question(id=f"retail-{task['id']}", text=_instructions(task), gold=gold))

    def documents(keys: list[str]) -> list[tuple[str, str]]:
        return [doc for doc in (render(source, k) for k in keys) if doc is not None]

    def edit(marker: str) -> tuple[str, str]:
        key = questions[0].gold[0].path if questions else users[0]
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET address2 = :a, updated_at = :t WHERE user_id = :k"),
                             {"a": f"Suite {marker}", "t": datetime.now(), "k": key})
                first, last = conn.execute(text("SELECT first_name, last_name FROM users WHERE user_id = :k"),
                                           {"k": key}).one()
        finally:
            engine.dispose()
        return key, f"What is the address of {first} {last}, Suite {marker}?"

    notes = [f"tau2 retail: {len(users)} accounts ({len(wanted)} customers of the tasks, {len(others)} others), "
             f"{len(questions)} tasks whose expected actions touch an order"]
    return Corpus(name="accounts", root=root, profile=source.profile, questions=questions, rule=ACCOUNT_RULE,
                  notes=notes, source=source, documents=documents, edit=edit)
