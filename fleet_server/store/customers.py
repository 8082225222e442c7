"""The customers table: tenants, their token hashes, erasure, and the one "still active" guard of writers.

Every write of a customer's data starts with `HOLD_ACTIVE_CUSTOMER` (snapshots through
`hold_active`, the measurement batch statement inlines the same text as its `owner` step): it
locks the customer row FOR KEY SHARE, so an erasure — which locks the row FOR UPDATE before
deleting — and a write queue on one lock in one order instead of deadlocking, and a write that
waited for an erasure or a deactivation finds no active customer and writes nothing
(`customer_gone`). A live measurement batch takes the same row FOR SHARE instead
(`HOLD_MEASUREMENT_WRITER`), to meet the compression job on it as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Column, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.db.base import Base
from fleet_server.db.models import Customer
from fleet_server.errors import Reason, Unauthenticated


def _hold(columns: str, lock: str) -> str:
    """The "still active" guard selecting `columns` of the row locked FOR `lock`.

    psycopg's parameter style: the measurement write embeds this text, snapshots execute it.
    `token` is the hash of the token the call was authenticated with (NULL: not checked): a
    write is refused once that token stops being valid (a zero-grace rotation, an expired grace
    window), so a stream opened with a leaked token ends at its next batch, without a round trip
    more.
    """
    return (
        f"SELECT {columns} FROM fleet.customers WHERE id = %(customer)s AND is_active "
        "AND (%(token)s::text IS NULL OR token_hash = %(token)s "
        "OR (previous_token_hash = %(token)s AND previous_token_expires_at > %(now)s)) "
        f"FOR {lock}"
    )


HOLD_ACTIVE_CUSTOMER = _hold("id", "KEY SHARE")
# The live measurement batch's guard: the same row and its compression frontier, FOR SHARE. The
# compression job takes the row FOR NO KEY UPDATE before it reads a unit's hot rows and moves
# `cold_through` in the same transaction; those two locks conflict (FOR KEY SHARE would not), so
# a batch and a unit being written wait for each other, and a batch that waited reads the
# frontier as the unit left it (READ COMMITTED re-reads a row it had to wait for).
HOLD_MEASUREMENT_WRITER = _hold("id, cold_through", "SHARE")
# Why a writer was refused (only asked once it was): the row, if any, and whether it is active.
_WHY_REFUSED = "SELECT is_active FROM fleet.customers WHERE id = %(customer)s"


@dataclass(frozen=True)
class StoredCustomer:
    """A customer row as stored, token hashes included (they never leave the domain)."""

    id: int
    code: str
    name: str
    is_active: bool
    created_at: datetime
    token_hash: str
    token_issued_at: datetime
    previous_token_hash: str | None
    previous_token_expires_at: datetime | None


@dataclass(frozen=True)
class TokenOwner:
    """The customer a token belongs to; `current` is false for a token in its grace window."""

    id: int
    code: str
    is_active: bool
    current: bool
    previous_token_expires_at: datetime | None = None
    previous_token_last_used_at: datetime | None = None


def customer_gone(active: bool | None) -> Unauthenticated:
    """The refusal of a write whose token or customer stopped being valid after authentication.

    `active` is the customer row's `is_active` now (None: the row is gone).
    """
    if active is False:
        return Unauthenticated(
            "the customer was deactivated; this call writes nothing more", reason=Reason.CUSTOMER_INACTIVE
        )
    return Unauthenticated(
        "the token this call was authenticated with is no longer valid (rotated, its grace window "
        "ended, or the customer was erased); this call writes nothing more",
        reason=Reason.TOKEN_REVOKED,
    )


def hold_params(customer_id: int, token_hash: str | None, now: datetime | None) -> dict[str, Any]:
    return {"customer": customer_id, "token": token_hash, "now": now}


def hold_active(
    session: Session, customer_id: int, token_hash: str | None = None, now: datetime | None = None
) -> None:
    """Lock the active customer's row (FOR KEY SHARE) before touching any of its rows, or refuse.

    With `token_hash`, the token must still be valid at `now` too.
    """
    connection = session.connection()
    params = hold_params(customer_id, token_hash, now)
    if connection.exec_driver_sql(HOLD_ACTIVE_CUSTOMER, params).first() is None:
        row = connection.exec_driver_sql(_WHY_REFUSED, params).first()
        raise customer_gone(None if row is None else bool(row[0]))


def why_refused(cursor: Any, customer_id: int) -> Unauthenticated:
    """`customer_gone` for a writer on a driver connection (the measurement write)."""
    row = cursor.execute(_WHY_REFUSED, {"customer": customer_id}).fetchone()
    return customer_gone(None if row is None else bool(row[0]))


_COLUMNS = (
    Customer.id,
    Customer.code,
    Customer.name,
    Customer.is_active,
    Customer.created_at,
    Customer.token_hash,
    Customer.token_issued_at,
    Customer.previous_token_hash,
    Customer.previous_token_expires_at,
)


def _stored(row: Any) -> StoredCustomer:
    return StoredCustomer(*row)


def code_taken(session: Session, code: str) -> bool:
    return session.scalar(select(Customer.id).where(Customer.code == code)) is not None


def insert_customer(
    session: Session, code: str, name: str, token_hash: str, now: datetime
) -> StoredCustomer | None:
    """The new customer, or None when a concurrent create of the same code won the race."""
    statement = (
        insert(Customer)
        .values(
            code=code,
            name=name,
            is_active=True,
            created_at=now,
            token_hash=token_hash,
            token_issued_at=now,
        )
        .returning(*_COLUMNS)
    )
    try:
        with session.begin_nested():
            row = session.execute(statement).one()
    except IntegrityError as exc:
        if "uq_customers_code" in str(exc.orig):
            return None
        raise
    return _stored(row)


def load(session: Session, code: str, *, lock: bool = False) -> StoredCustomer | None:
    """The customer named `code`; `lock` takes its row FOR UPDATE until the transaction ends."""
    query = select(*_COLUMNS).where(Customer.code == code)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).one_or_none()
    return None if row is None else _stored(row)


def page(session: Session, after_code: str | None, limit: int) -> list[StoredCustomer]:
    """Up to `limit` customers ordered by code, after `after_code` (keyset: stable under inserts)."""
    query = select(*_COLUMNS).order_by(Customer.code).limit(limit)
    if after_code is not None:
        query = query.where(Customer.code > after_code)
    return [_stored(row) for row in session.execute(query)]


def ids_by_code(session: Session, codes: list[str]) -> list[tuple[int, str]]:
    """(id, code) of the customers among `codes`, by code; every customer when `codes` is empty."""
    statement = select(Customer.id, Customer.code).order_by(Customer.code)
    if codes:
        statement = statement.where(Customer.code.in_(codes))
    return [(row.id, row.code) for row in session.execute(statement)]


def set_tokens(
    session: Session,
    customer_id: int,
    token_hash: str,
    issued_at: datetime,
    previous_token_hash: str | None,
    previous_token_expires_at: datetime | None,
) -> StoredCustomer:
    """Store a rotation's token slots; the customer's row as it is now."""
    row = session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(
            token_hash=token_hash,
            token_issued_at=issued_at,
            previous_token_hash=previous_token_hash,
            previous_token_expires_at=previous_token_expires_at,
            # The token now in the previous slot has not been used as an old token yet.
            previous_token_last_used_at=None,
        )
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    ).one()
    return _stored(row)


def set_active(session: Session, customer_id: int, active: bool) -> StoredCustomer:
    row = session.execute(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(is_active=active)
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    ).one()
    return _stored(row)


# Token lookups run once per call: each is one autocommitted statement on the driver connection
# (see `Database.autocommit`), prepared once per connection.
_FIND_BY_TOKEN_HASH = (
    "SELECT id, code, is_active, token_hash = %(digest)s, previous_token_expires_at, "
    "previous_token_last_used_at FROM fleet.customers WHERE token_hash = %(digest)s "
    "OR (previous_token_hash = %(digest)s AND previous_token_expires_at > %(now)s) LIMIT 1"
)
_NOTE_PREVIOUS_TOKEN_USE = (
    "UPDATE fleet.customers SET previous_token_last_used_at = %(now)s WHERE id = %(customer)s "
    "AND (previous_token_last_used_at IS NULL OR previous_token_last_used_at < %(older_than)s)"
)


def find_by_token_hash(conn: psycopg.Connection[Any], digest: str, now: datetime) -> TokenOwner | None:
    """The customer whose current token, or previous token still in its grace window, hashes to `digest`."""
    row = conn.execute(_FIND_BY_TOKEN_HASH, {"digest": digest, "now": now}, prepare=True).fetchone()
    if row is None:
        return None
    customer_id, code, is_active, current, expires_at, last_used_at = row
    return TokenOwner(
        id=customer_id,
        code=code,
        is_active=is_active,
        current=bool(current),
        previous_token_expires_at=expires_at,
        previous_token_last_used_at=last_used_at,
    )


def note_previous_token_use(
    conn: psycopg.Connection[Any], customer_id: int, now: datetime, older_than: datetime
) -> None:
    """Set when the previous token was last used to `now`, unless another call already set it past
    `older_than` (concurrent calls and workers do not pile up writes)."""
    conn.execute(_NOTE_PREVIOUS_TOKEN_USE, {"now": now, "customer": customer_id, "older_than": older_than})


def _customer_tables() -> list[Table]:
    """Every table holding a customer's rows, children before parents, `customers` excluded.

    Derived from the models, so a table added later is erased too without touching this code.
    """
    tables: list[Table] = []
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != Customer.__tablename__ and "customer_id" in table.c:
            tables.append(table)
    return tables


def erase(session: Session, customer_id: int) -> dict[str, int]:
    """Delete the customer and every row of its data; the rows deleted per table.

    Each table is deleted explicitly (rather than left to ON DELETE CASCADE) so the caller gets
    an exact count per table for the erasure record. The caller holds the customer row FOR
    UPDATE (`load(lock=True)`), so a concurrent push waits and then writes nothing.
    """
    counts: dict[str, int] = {}
    for table in _customer_tables():
        column: Column[int] = table.c.customer_id
        result = session.execute(delete(table).where(column == customer_id))
        counts[table.name] = int(result.rowcount)  # type: ignore[attr-defined]
    result = session.execute(
        delete(Customer).where(Customer.id == customer_id).execution_options(synchronize_session=False)
    )
    counts[Customer.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined]
    return counts


def codes(session: Session, limit: int) -> list[str]:
    """Up to `limit` customer codes, by code (the candidates of a "did you mean")."""
    return list(session.scalars(select(Customer.code).order_by(Customer.code).limit(limit)))


@dataclass(frozen=True)
class TokenState:
    """A customer as fleet health sees it: active, and where its tokens stand."""

    id: int
    code: str
    name: str
    is_active: bool
    created_at: datetime
    token_issued_at: datetime
    previous_token_expires_at: datetime | None
    previous_token_last_used_at: datetime | None


_TOKEN_STATE = (
    Customer.id,
    Customer.code,
    Customer.name,
    Customer.is_active,
    Customer.created_at,
    Customer.token_issued_at,
    Customer.previous_token_expires_at,
    Customer.previous_token_last_used_at,
)


def token_states(
    session: Session, after_code: str | None, limit: int, code: str | None = None
) -> list[TokenState]:
    """Up to `limit` customers by code after `after_code` (or just `code`), with their token state."""
    query = select(*_TOKEN_STATE).order_by(Customer.code).limit(limit)
    if code is not None:
        query = query.where(Customer.code == code)
    if after_code is not None:
        query = query.where(Customer.code > after_code)
    return [TokenState(*row) for row in session.execute(query)]


def activity(session: Session) -> list[tuple[str, bool]]:
    """(code, is_active) of every customer."""
    return [
        (row.code, bool(row.is_active)) for row in session.execute(select(Customer.code, Customer.is_active))
    ]
