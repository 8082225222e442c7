"""The admin_tokens table: operator credentials by name, stored as SHA-256 only, revoked but never deleted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.db.models import AdminToken


@dataclass(frozen=True)
class StoredAdminToken:
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


_COLUMNS = (AdminToken.id, AdminToken.name, AdminToken.created_at, AdminToken.revoked_at)


def name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(AdminToken.id).where(AdminToken.name == name)) is not None


def insert_token(session: Session, name: str, token_hash: str, now: datetime) -> bool:
    """Store a new token; False when a concurrent create of the same name won the race."""
    try:
        with session.begin_nested():
            session.execute(insert(AdminToken).values(name=name, token_hash=token_hash, created_at=now))
    except IntegrityError as exc:
        if "uq_admin_tokens_name" in str(exc.orig):
            return False
        raise
    return True


def list_tokens(session: Session) -> list[StoredAdminToken]:
    """Every admin token ever minted, revoked ones included, by name."""
    rows = session.execute(select(*_COLUMNS).order_by(AdminToken.name))
    return [StoredAdminToken(*row) for row in rows]


def lock_by_name(session: Session, name: str) -> StoredAdminToken | None:
    """The token named `name`, its row locked FOR UPDATE until the transaction ends."""
    row = session.execute(select(*_COLUMNS).where(AdminToken.name == name).with_for_update()).one_or_none()
    return None if row is None else StoredAdminToken(*row)


def family(session: Session, base_name: str) -> list[StoredAdminToken]:
    """The tokens named `base_name` or `base_name-…` (the bootstrap token and its successors)."""
    rows = session.execute(
        select(*_COLUMNS).where((AdminToken.name == base_name) | AdminToken.name.startswith(f"{base_name}-"))
    )
    return [StoredAdminToken(*row) for row in rows]


def revoke(session: Session, token_id: int, now: datetime) -> StoredAdminToken:
    row = session.execute(
        update(AdminToken)
        .where(AdminToken.id == token_id)
        .values(revoked_at=now)
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    ).one()
    return StoredAdminToken(*row)


# Run once per operator call, like the customer token lookup: one autocommitted statement.
_FIND_UNREVOKED = (
    "SELECT id, name, created_at, revoked_at FROM fleet.admin_tokens "
    "WHERE token_hash = %(digest)s AND revoked_at IS NULL"
)


def find_unrevoked_by_hash(conn: psycopg.Connection[Any], digest: str) -> StoredAdminToken | None:
    """The unrevoked token whose hash is `digest`."""
    row = conn.execute(_FIND_UNREVOKED, {"digest": digest}, prepare=True).fetchone()
    return None if row is None else StoredAdminToken(*row)
