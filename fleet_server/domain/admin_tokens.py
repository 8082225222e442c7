"""Operator credentials: minted, listed and revoked with direct database access, stored as SHA-256 only.

Admin tokens are not managed over gRPC on purpose: whoever can mint one must already be able to
reach the database, so a leaked admin token cannot mint itself a successor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.domain.tokens import TokenKind, hash_token, mint
from fleet_server.errors import AlreadyExists, InvalidArgument, NotFound, Reason
from fleet_server.store import admin_tokens as store
from fleet_server.store.admin_tokens import StoredAdminToken

_LOGGER = logging.getLogger(__name__)

MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class IssuedAdminToken:
    name: str
    token: str


@dataclass(frozen=True)
class AdminTokenRecord:
    """An admin token as an operator may see it: its name and life, never its hash."""

    name: str
    created_at: datetime
    revoked_at: datetime | None


def _record(row: StoredAdminToken) -> AdminTokenRecord:
    return AdminTokenRecord(name=row.name, created_at=row.created_at, revoked_at=row.revoked_at)


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"an admin token named {name!r} already exists (names are never reused, even after revocation)"
    )


def create_admin_token(session: Session, name: str, now: datetime) -> IssuedAdminToken:
    """Mint a token named `name`; the plain token exists only in the returned value."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument.single("name", f"must be 1..{MAX_NAME_LENGTH} characters")
    if store.name_taken(session, name):
        raise _taken(name)
    token = mint(TokenKind.ADMIN)
    if not store.insert_token(session, name, hash_token(token), now):  # a concurrent create won
        raise _taken(name)
    _LOGGER.info("admin token %r created", name)
    return IssuedAdminToken(name=name, token=token)


def list_admin_tokens(session: Session) -> list[AdminTokenRecord]:
    """Every admin token ever minted, revoked ones included (an audit trail), by name."""
    return [_record(row) for row in store.list_tokens(session)]


def revoke_admin_token(session: Session, name: str, now: datetime) -> AdminTokenRecord:
    """Refuse the token named `name` from the next call on; revoking twice keeps the first time.

    The row is kept (not deleted) so `list` still shows who had access and until when.
    """
    row = store.lock_by_name(session, name.strip())
    if row is None:
        raise NotFound(f"no admin token named {name.strip()!r}", reason=Reason.ADMIN_TOKEN_NOT_FOUND)
    if row.revoked_at is None:
        row = store.revoke(session, row.id, now)
        _LOGGER.info("admin token %r revoked", row.name)
    return _record(row)


def reissue_local_token(session: Session, base_name: str, now: datetime) -> IssuedAdminToken:
    """Mint the local bootstrap token again, after its file was lost.

    The earlier bootstrap tokens (`base_name`, `base_name-2`, …) are revoked first: their plain
    text existed only in the lost file, so nobody can use them legitimately any more. Names are
    never reused, so the new token takes the next free suffix.
    """
    earlier = store.family(session, base_name)
    for row in earlier:
        if row.revoked_at is None:
            store.revoke(session, row.id, now)
            _LOGGER.info("admin token %r revoked: its bootstrap file is gone", row.name)
    taken = {row.name for row in earlier}
    name = base_name
    suffix = 1
    while name in taken:
        suffix += 1
        name = f"{base_name}-{suffix}"
    return create_admin_token(session, name, now)
