"""Operator credentials: minted, listed and revoked with direct database access, stored as SHA-256 only.

Admin tokens are not managed over gRPC on purpose: whoever can mint one must already be able to
reach the database, so a leaked admin token cannot mint itself a successor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.auth.tokens import TokenKind, hash_token, mint
from fleet_server.db.models import AdminToken
from fleet_server.errors import AlreadyExists, InvalidArgument, NotFound, Reason

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


def _record(row: AdminToken) -> AdminTokenRecord:
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
    if session.scalar(select(AdminToken.id).where(AdminToken.name == name)) is not None:
        raise _taken(name)
    token = mint(TokenKind.ADMIN)
    session.add(AdminToken(name=name, token_hash=hash_token(token), created_at=now))
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name won the race
        if "uq_admin_tokens_name" in str(exc.orig):
            raise _taken(name) from None
        raise
    _LOGGER.info("admin token %r created", name)
    return IssuedAdminToken(name=name, token=token)


def list_admin_tokens(session: Session) -> list[AdminTokenRecord]:
    """Every admin token ever minted, revoked ones included (an audit trail), by name."""
    return [_record(row) for row in session.scalars(select(AdminToken).order_by(AdminToken.name))]


def revoke_admin_token(session: Session, name: str, now: datetime) -> AdminTokenRecord:
    """Refuse the token named `name` from the next call on; revoking twice keeps the first time.

    The row is kept (not deleted) so `list` still shows who had access and until when.
    """
    row = session.scalar(select(AdminToken).where(AdminToken.name == name.strip()).with_for_update())
    if row is None:
        raise NotFound(f"no admin token named {name.strip()!r}", reason=Reason.ADMIN_TOKEN_NOT_FOUND)
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
        _LOGGER.info("admin token %r revoked", row.name)
    return _record(row)


def reissue_local_token(session: Session, base_name: str, now: datetime) -> IssuedAdminToken:
    """Mint the local bootstrap token again, after its file was lost.

    The earlier bootstrap tokens (`base_name`, `base_name-2`, …) are revoked first: their plain
    text existed only in the lost file, so nobody can use them legitimately any more. Names are
    never reused, so the new token takes the next free suffix.
    """
    earlier = session.scalars(
        select(AdminToken).where((AdminToken.name == base_name) | AdminToken.name.startswith(f"{base_name}-"))
    ).all()
    for row in earlier:
        if row.revoked_at is None:
            row.revoked_at = now
            _LOGGER.info("admin token %r revoked: its bootstrap file is gone", row.name)
    taken = {row.name for row in earlier}
    name = base_name
    suffix = 1
    while name in taken:
        suffix += 1
        name = f"{base_name}-{suffix}"
    return create_admin_token(session, name, now)
