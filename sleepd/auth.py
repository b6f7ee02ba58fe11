"""API tokens and principals. Tokens are stored hashed; a principal reads a record when the
record's access list shares a value with the principal's name, groups or ``*``.

A token is named by its principal or by its id (the first 12 hex digits of its hash, shown by
``sleepd token list``). Revoking keeps the token's row, so the list still shows it, and marks it
in ``token_state``: the next request with it is refused (401) and the refusal is audited."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from sleepd import defaults
from sleepd.errors import NotFound, Unauthorized
from sleepd.ledger import Ledger
from sleepd.schema import TokenRow, TokenStateRow

__all__ = [
    "Principal",
    "authenticate",
    "bearer_principal",
    "create_token",
    "list_tokens",
    "read_token",
    "revoke",
    "revoke_tokens",
    "token_id",
]

log = logging.getLogger("sleepd.auth")

_PREFIX = "sk-sleepd-"
#: hex digits of the hash that name a token: enough to be unique, short enough to type
ID_LENGTH = 12
#: a token id as ``revoke`` accepts it: at least 6 hex digits, so a typo cannot name many tokens
_TOKEN_ID = re.compile(r"[0-9a-f]{6,64}")


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


def token_id(digest: str) -> str:
    """The public name of a token: a prefix of its hash (the hash itself reveals nothing)."""
    return digest[:ID_LENGTH]


def create_token(ledger: Ledger, principal: str, groups: Sequence[str] = (), admin: bool = False,
                 actor: str = "cli") -> str:
    """A new token for ``principal``; the plaintext is returned once and never stored."""
    token = _PREFIX + secrets.token_urlsafe(32)
    digest = _digest(token)
    with ledger.write() as s:
        s.add(TokenRow(hash=digest, principal=principal, groups=json.dumps(list(groups)),
                       admin=admin, created_at=time.time()))
    ledger.audit(actor, "token.create", {"principal": principal, "groups": list(groups), "admin": admin,
                                         "token": token_id(digest)})
    return token


def authenticate(ledger: Ledger, token: str | None) -> Principal | None:
    """The principal of ``token``; None for an unknown one. A revoked token raises
    :class:`Unauthorized` and the refusal is audited."""
    if not token:
        return None
    digest = _digest(token)
    with ledger.read() as s:  # one statement, as plain columns: every request pays for it
        row = s.execute(sa_select(col(TokenRow.principal), col(TokenRow.groups), col(TokenRow.admin),
                                  col(TokenStateRow.revoked_at), col(TokenStateRow.last_used_at))
                        .outerjoin(TokenStateRow, col(TokenStateRow.hash) == col(TokenRow.hash))
                        .where(col(TokenRow.hash) == digest)).first()
    if row is None:
        return None
    principal, groups, admin, revoked_at, last_used_at = row
    if revoked_at is not None:
        ledger.audit(principal, "token.refused", {"token": token_id(digest), "reason": "revoked",
                                                  "revoked_at": revoked_at})
        raise Unauthorized(f"token {token_id(digest)} of {principal!r} was revoked")
    if last_used_at is None or time.time() - last_used_at >= defaults.TOKEN_TOUCH_SECONDS:
        _touch(ledger, digest)
    return Principal(name=principal, groups=tuple(json.loads(groups)), admin=admin)


def bearer_principal(ledger: Ledger, header: str) -> Principal:
    """The principal of an ``Authorization: Bearer <token>`` header, for every HTTP front end
    (REST and MCP); raises :class:`Unauthorized` when it is missing, unknown or revoked."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    principal = authenticate(ledger, token.strip())
    if principal is None:
        raise Unauthorized("invalid token")
    return principal


def _touch(ledger: Ledger, digest: str) -> None:
    """Note the token's use; a busy ledger must not fail the request, so errors are only logged."""
    try:
        with ledger.write() as s:
            state = s.get(TokenStateRow, digest)
            if state is None:
                s.add(TokenStateRow(hash=digest, last_used_at=time.time()))
            elif state.revoked_at is None:
                state.last_used_at = time.time()
    except SQLAlchemyError as exc:
        log.warning("could not note the use of token %s: %s", token_id(digest), exc)


def list_tokens(ledger: Ledger) -> list[dict[str, Any]]:
    """Every token, revoked ones too, oldest first; never the token nor its full hash."""
    with ledger.read() as s:
        rows = s.exec(select(TokenRow).order_by(col(TokenRow.created_at))).all()
        states = {st.hash: st for st in s.exec(select(TokenStateRow)).all()}
    listed = []
    for row in rows:
        state = states.get(row.hash)
        listed.append({
            "id": token_id(row.hash), "principal": row.principal, "groups": json.loads(row.groups),
            "admin": row.admin, "created_at": row.created_at,
            "last_used_at": state.last_used_at if state else None,
            "revoked_at": state.revoked_at if state else None,
            "revoked_by": state.revoked_by if state else None,
        })
    return listed


def revoke(ledger: Ledger, name: str, actor: str) -> list[str]:
    """Revoke the live tokens named ``name`` (a principal, or a token id); returns their ids.
    Raises :class:`NotFound` when no live token has that name."""
    now = time.time()
    with ledger.write() as s:
        rows = s.exec(select(TokenRow).where(TokenRow.principal == name)).all()
        if not rows and _TOKEN_ID.fullmatch(name.lower()):
            rows = s.exec(select(TokenRow).where(col(TokenRow.hash).startswith(name.lower(), autoescape=True))).all()
        revoked = []
        for row in rows:
            state = s.get(TokenStateRow, row.hash)
            if state is None:
                state = TokenStateRow(hash=row.hash)
                s.add(state)
            elif state.revoked_at is not None:
                continue
            state.revoked_at, state.revoked_by = now, actor
            revoked.append((token_id(row.hash), row.principal))
    if not revoked:
        what = "token" if not rows else "live token"
        raise NotFound(f"no {what} named {name!r} (a principal or a token id from `sleepd token list`)")
    ledger.audit(actor, "token.revoke", {"name": name, "tokens": [i for i, _ in revoked],
                                         "principals": sorted({p for _, p in revoked})})
    return [i for i, _ in revoked]


def revoke_tokens(ledger: Ledger, principal: str, actor: str = "cli") -> int:
    """Revoke every live token of ``principal``; returns how many (0 when none)."""
    try:
        return len(revoke(ledger, principal, actor))
    except NotFound:
        return 0


def read_token(home: Path) -> str | None:
    """The local admin token the daemon wrote to its home folder, if any."""
    try:
        return (home / "token").read_text().strip() or None
    except OSError:
        return None
