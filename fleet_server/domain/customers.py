"""Customer lifecycle: creation with a token shown once (rotation, activation, deletion follow)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.auth.tokens import TokenKind, hash_token, mint
from fleet_server.db.models import Customer
from fleet_server.errors import AlreadyExists, Violations

CODE_PATTERN = re.compile(r"[A-Z0-9_-]{2,32}")


@dataclass(frozen=True)
class IssuedCustomer:
    """A customer with the plain token that was just issued (the only place it ever exists)."""

    customer: Customer
    token: str


def create_customer(session: Session, code: str, name: str, now: datetime) -> IssuedCustomer:
    """Register a customer and issue its first token."""
    problems = Violations()
    if not CODE_PATTERN.fullmatch(code):
        problems.add("code", "must match [A-Z0-9_-]{2,32}")
    if not name.strip():
        problems.add("name", "must not be empty")
    problems.raise_if_any()
    if session.scalar(select(Customer.id).where(Customer.code == code)) is not None:
        raise AlreadyExists(f"customer code {code} is taken", reason="CUSTOMER_CODE_TAKEN")
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
    session.flush()
    return IssuedCustomer(customer=customer, token=token)
