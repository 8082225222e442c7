"""Customer lifecycle: create, read, page through, rotate tokens, (de)activate, erase.

Every function takes the unit of work's `Session` and, where time matters, `now` from the
injected clock, so grace windows are tested at their edges without sleeping. Plain tokens exist
only in the `IssuedCustomer` a function returns; the database sees their SHA-256 alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Table, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.auth.tokens import TokenKind, hash_token, mint
from fleet_server.db.base import Base
from fleet_server.db.models import Customer
from fleet_server.errors import AlreadyExists, InvalidArgument, NotFound, Reason, Violations

_LOGGER = logging.getLogger(__name__)

CODE_PATTERN = re.compile(r"[A-Z0-9_-]{2,32}")
MAX_NAME_LENGTH = 200
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A grace window is a hand-over period, not a second permanent credential: a rotation whose old
# token outlives a month has not really rotated anything.
MAX_GRACE = timedelta(days=30)


@dataclass(frozen=True)
class CustomerRecord:
    """A customer as callers may see it: no hashes, and the grace window only while it is open."""

    id: int
    code: str
    name: str
    is_active: bool
    created_at: datetime
    token_issued_at: datetime
    previous_token_expires_at: datetime | None

    @classmethod
    def of(cls, row: Customer, now: datetime) -> CustomerRecord:
        expires = row.previous_token_expires_at
        open_window = row.previous_token_hash is not None and expires is not None and expires > now
        return cls(
            id=row.id,
            code=row.code,
            name=row.name,
            is_active=row.is_active,
            created_at=row.created_at,
            token_issued_at=row.token_issued_at,
            previous_token_expires_at=expires if open_window else None,
        )


@dataclass(frozen=True)
class IssuedCustomer:
    """A customer with the plain token that was just issued (the only place it ever exists)."""

    customer: CustomerRecord
    token: str


@dataclass(frozen=True)
class CustomerPage:
    """One page of customers by code; `last_code` is set when more customers follow."""

    customers: list[CustomerRecord]
    last_code: str | None


def check_code(code: str, path: str, problems: Violations) -> None:
    """Record a code that can never name a customer, so a typo reads as a typo, not NOT_FOUND."""
    if not CODE_PATTERN.fullmatch(code):
        problems.add(path, "must match [A-Z0-9_-]{2,32}")


def create_customer(session: Session, code: str, name: str, now: datetime) -> IssuedCustomer:
    """Register a customer and issue its first token (no previous token: nothing to hand over)."""
    problems = Violations()
    check_code(code, "code", problems)
    if not name.strip():
        problems.add("name", "must not be empty")
    elif len(name.strip()) > MAX_NAME_LENGTH:
        problems.add("name", f"must be at most {MAX_NAME_LENGTH} characters")
    problems.raise_if_any()
    if session.scalar(select(Customer.id).where(Customer.code == code)) is not None:
        raise _code_taken(code)
    token = mint(TokenKind.CUSTOMER)
    customer = Customer(
        code=code,
        name=name.strip(),
        is_active=True,
        created_at=now,
        token_hash=hash_token(token),
        token_issued_at=now,
    )
    session.add(customer)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same code won the race
        if "uq_customers_code" in str(exc.orig):
            raise _code_taken(code) from None
        raise
    return IssuedCustomer(customer=CustomerRecord.of(customer, now), token=token)


def _code_taken(code: str) -> AlreadyExists:
    return AlreadyExists(
        f"customer code {code} is taken", reason=Reason.CUSTOMER_CODE_TAKEN, metadata={"code": code}
    )


def _load(session: Session, code: str, *, lock: bool = False) -> Customer:
    problems = Violations()
    check_code(code, "code", problems)
    problems.raise_if_any()
    query = select(Customer).where(Customer.code == code)
    if lock:
        query = query.with_for_update()
    customer = session.scalar(query)
    if customer is None:
        raise NotFound(
            f"no customer with code {code}", reason=Reason.CUSTOMER_NOT_FOUND, metadata={"code": code}
        )
    return customer


def get_customer(session: Session, code: str, now: datetime) -> CustomerRecord:
    """The customer named `code`; NOT_FOUND when there is none."""
    return CustomerRecord.of(_load(session, code), now)


def customer_id_for(session: Session, code: str) -> int:
    """The id behind `code` for a read of one customer's data, refused as every lookup by code is."""
    return _load(session, code).id


def page_size_or_default(page_size: int) -> int:
    """AIP-158: 0 means the default, too large is clamped, negative is the caller's mistake."""
    if page_size < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def list_customers(session: Session, page_size: int, after_code: str | None, now: datetime) -> CustomerPage:
    """Customers ordered by code, starting after `after_code` (keyset: stable under inserts)."""
    size = page_size_or_default(page_size)
    query = select(Customer).order_by(Customer.code).limit(size + 1)
    if after_code is not None:
        query = query.where(Customer.code > after_code)
    rows = list(session.scalars(query))
    more = len(rows) > size
    page = [CustomerRecord.of(row, now) for row in rows[:size]]
    return CustomerPage(customers=page, last_code=page[-1].code if more else None)


def check_grace(grace: timedelta) -> None:
    if grace < timedelta(0):
        raise InvalidArgument.single("grace_period", "must not be negative (0s = immediate cutover)")
    if grace > MAX_GRACE:
        raise InvalidArgument.single("grace_period", f"must be at most {MAX_GRACE.days} days")


def rotate_token(
    session: Session, code: str, grace: timedelta | None, default_grace: timedelta, now: datetime
) -> IssuedCustomer:
    """Issue a new token; the current one stays valid for `grace` (None = the server default).

    The row is locked first, so two concurrent rotations run one after the other: the second
    moves the first one's new token into the previous slot, and the original token is never
    left valid by both. A positive grace overwrites whatever the previous slot held (at most
    one previous token is honoured); zero clears it — an immediate cutover.
    """
    if grace is not None:
        check_grace(grace)
    window = default_grace if grace is None else grace
    customer = _load(session, code, lock=True)
    token = mint(TokenKind.CUSTOMER)
    if window > timedelta(0):
        customer.previous_token_hash = customer.token_hash
        customer.previous_token_expires_at = now + window
    else:
        customer.previous_token_hash = None
        customer.previous_token_expires_at = None
    customer.token_hash = hash_token(token)
    customer.token_issued_at = now
    session.flush()
    return IssuedCustomer(customer=CustomerRecord.of(customer, now), token=token)


def set_active(session: Session, code: str, active: bool, now: datetime) -> CustomerRecord:
    """(De)activate: an inactive customer's current and previous tokens are both refused; data stays.

    Idempotent, so a retried call after a lost response is harmless. Reactivation honours
    whatever the token slots hold at that moment (an expired grace window stays expired).
    """
    customer = _load(session, code, lock=True)
    if customer.is_active != active:
        customer.is_active = active
        session.flush()
    return CustomerRecord.of(customer, now)


def _customer_tables() -> list[Table]:
    """Every table holding a customer's rows, children before parents, `customers` last.

    Derived from the models, so a table added later is erased too without touching this code.
    """
    tables: list[Table] = []
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != Customer.__tablename__ and "customer_id" in table.c:
            tables.append(table)
    return tables


def delete_customer(session: Session, code: str) -> dict[str, int]:
    """GDPR erasure: the customer and every row of its data, in this one transaction.

    Each table is deleted explicitly (rather than left to ON DELETE CASCADE) so the caller gets
    an exact count per table for the erasure record. The customer row is locked first: a
    concurrent push waits for the erasure and then fails instead of writing orphans.
    """
    customer = _load(session, code, lock=True)
    counts: dict[str, int] = {}
    for table in _customer_tables():
        column: Column[int] = table.c.customer_id
        result = session.execute(delete(table).where(column == customer.id))
        counts[table.name] = int(result.rowcount)  # type: ignore[attr-defined]
    session.expunge(customer)
    result = session.execute(
        delete(Customer).where(Customer.id == customer.id).execution_options(synchronize_session=False)
    )
    counts[Customer.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined]
    return counts
