"""Operator credentials: minted with direct database access, stored as SHA-256 only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.auth.tokens import TokenKind, hash_token, mint
from fleet_server.db.models import AdminToken
from fleet_server.errors import AlreadyExists, InvalidArgument


@dataclass(frozen=True)
class IssuedAdminToken:
    name: str
    token: str


def create_admin_token(session: Session, name: str, now: datetime) -> IssuedAdminToken:
    """Mint a token named `name`; the plain token exists only in the returned value."""
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidArgument.single("name", "must be 1..64 characters")
    if session.scalar(select(AdminToken.id).where(AdminToken.name == name)) is not None:
        raise AlreadyExists(f"an admin token named {name!r} already exists")
    token = mint(TokenKind.ADMIN)
    session.add(AdminToken(name=name, token_hash=hash_token(token), created_at=now))
    session.flush()
    return IssuedAdminToken(name=name, token=token)
