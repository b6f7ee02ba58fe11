"""API tokens and principals. Tokens are stored hashed; a principal reads a record when the
record's access list shares a value with the principal's name, groups or ``*``."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from sleepd.ledger import Ledger
from sleepd.schema import TokenRow

__all__ = ["Principal", "authenticate", "create_token", "read_token", "revoke_tokens"]

_PREFIX = "sk-sleepd-"


@dataclass(frozen=True)
class Principal:
    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False

    @property
    def access(self) -> list[str] | None:
        """Values an index filter matches on; None for an admin, who reads everything."""
        return None if self.admin else [self.name, *self.groups, "*"]

    def can_read(self, access: Sequence[str]) -> bool:
        allowed = self.access
        return allowed is None or bool(set(allowed) & set(access))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(ledger: Ledger, principal: str, groups: Sequence[str] = (), admin: bool = False) -> str:
    """A new token for ``principal``; the plaintext is returned once and never stored."""
    token = _PREFIX + secrets.token_urlsafe(32)
    with ledger.write() as s:
        s.add(TokenRow(hash=_digest(token), principal=principal, groups=json.dumps(list(groups)),
                       admin=admin, created_at=time.time()))
    ledger.audit("cli", "token.create", {"principal": principal, "groups": list(groups), "admin": admin})
    return token


def authenticate(ledger: Ledger, token: str | None) -> Principal | None:
    if not token:
        return None
    with ledger.read() as s:
        row = s.get(TokenRow, _digest(token))
    if row is None:
        return None
    return Principal(name=row.principal, groups=tuple(json.loads(row.groups)), admin=row.admin)


def revoke_tokens(ledger: Ledger, principal: str) -> int:
    with ledger.write() as s:
        rows = s.exec(select(TokenRow).where(TokenRow.principal == principal)).all()
        for row in rows:
            s.delete(row)
    ledger.audit("cli", "token.revoke", {"principal": principal, "count": len(rows)})
    return len(rows)


def read_token(home: Path) -> str | None:
    """The local admin token the daemon wrote to its home folder, if any."""
    try:
        return (home / "token").read_text().strip() or None
    except OSError:
        return None
