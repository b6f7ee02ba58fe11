"""Risk flags for a contract against a playbook of rules the user can edit.

A playbook is TOML: a list of ``[[rules]]``, each with an ``id``, a ``message``, a ``severity``
(``low``/``medium``/``high``) and conditions, all of which must hold for the rule to fire:

* ``requires = ["Renewal Term"]``: every listed CUAD category was found;
* ``absent = ["Governing Law"]``: none of the listed categories was found;
* ``field``, ``op``, ``value``: a key field compared with a number (``notice_days < 60``); a rule
  with a field does not fire when the contract does not state that field.

The default playbook ships as ``workers/enrich/playbook.toml``. A user playbook is merged over it
by rule id: a rule with a known id replaces the default one, ``enabled = false`` switches it off,
and ``replace_defaults = true`` at the top drops every default rule.
"""

from __future__ import annotations

import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sleepd.errors import ConfigError
from workers.enrich.clause_types import CATEGORIES

__all__ = ["Flag", "Rule", "evaluate", "load_playbook"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
_SEVERITIES = ("low", "medium", "high")
_KEYS = {"id", "message", "severity", "requires", "absent", "field", "op", "value", "enabled"}
_CATEGORY_NAMES = frozenset(c.name for c in CATEGORIES)


@dataclass(frozen=True)
class Rule:
    """One playbook rule; see the module docstring for what each condition means."""

    id: str
    message: str
    severity: str = "medium"
    requires: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    field: str = ""
    op: str = ""
    value: float = 0.0


@dataclass(frozen=True)
class Flag:
    """A rule that fired on one contract, with the field value that made it fire (if any)."""

    rule: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}"


def load_playbook(path: Path | None = None) -> tuple[Rule, ...]:
    """The default rules, with the user playbook at ``path`` merged over them; ConfigError if it is bad."""
    default = tomllib.loads(resources.files("workers.enrich").joinpath("playbook.toml").read_text("utf-8"))
    rules = {r.id: r for r in _rules(default, "playbook.toml")}
    if path is None:
        return tuple(rules.values())
    try:
        user = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Config 'playbook' has value {str(path)!r}. Cannot read it: {exc}.") from None
    if user.get("replace_defaults", False) is True:
        rules = {}
    disabled = {str(raw.get("id")) for raw in user.get("rules", []) if isinstance(raw, dict)
                and raw.get("enabled", True) is False}
    rules.update({r.id: r for r in _rules(user, str(path)) if r.id not in disabled})
    return tuple(r for r in rules.values() if r.id not in disabled)


def _rules(raw: Mapping[str, Any], where: str) -> list[Rule]:
    items = raw.get("rules", [])
    if not isinstance(items, list):
        raise ConfigError(f"Config '{where}: rules' has value {items!r}. Must be an array of tables ([[rules]]).")
    return [_rule(item, f"{where}: rules[{i}]") for i, item in enumerate(items)
            if not (isinstance(item, dict) and item.get("enabled", True) is False)]


def _rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"Config '{where}' has value {item!r}. Must be a table.")
    unknown = set(item) - _KEYS
    if unknown:
        raise ConfigError(f"Config '{where}' has unknown keys {sorted(unknown)}.")
    for key in ("id", "message"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ConfigError(f"Config '{where}.{key}' has value {item.get(key)!r}. Must be a non-empty string.")
    severity = item.get("severity", "medium")
    if severity not in _SEVERITIES:
        raise ConfigError(f"Config '{where}.severity' has value {severity!r}. One of {_SEVERITIES}.")
    lists = {key: item.get(key, []) for key in ("requires", "absent")}
    for key, names in lists.items():
        if not isinstance(names, list) or any(n not in _CATEGORY_NAMES for n in names):
            raise ConfigError(f"Config '{where}.{key}' has value {names!r}. Must list CUAD category names.")
    op, value = item.get("op", ""), item.get("value", 0)
    if item.get("field"):
        if op not in _OPS:
            raise ConfigError(f"Config '{where}.op' has value {op!r}. One of {tuple(_OPS)}.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"Config '{where}.value' has value {value!r}. Must be a number.")
    return Rule(item["id"], item["message"], severity, tuple(lists["requires"]), tuple(lists["absent"]),
                str(item.get("field", "")), op, float(value))


def evaluate(rules: tuple[Rule, ...], categories: set[str], fields: Mapping[str, str]) -> list[Flag]:
    """The rules that fire for a contract with these ``categories`` found and these key ``fields``."""
    flags = []
    for rule in rules:
        if not set(rule.requires) <= categories or set(rule.absent) & categories:
            continue
        message = rule.message
        if rule.field:
            try:
                actual = float(fields[rule.field])
            except (KeyError, ValueError):
                continue
            if not _OPS[rule.op](actual, rule.value):
                continue
            message = f"{message} ({rule.field} = {fields[rule.field]})"
        flags.append(Flag(rule.id, rule.severity, message))
    order = {s: i for i, s in enumerate(reversed(_SEVERITIES))}
    return sorted(flags, key=lambda f: order[f.severity])
