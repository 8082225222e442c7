"""Customer lifecycle: create, read, page through, rotate tokens, (de)activate, erase.

Every function takes the unit of work's `Session` and, where time matters, `now` from the
injected clock, so grace windows are tested at their edges without sleeping. Plain tokens exist
only in the `IssuedCustomer` a function returns; the database sees their SHA-256 alone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from fleet_server.domain.paging import CUSTOMER_PAGES, Page, cut
from fleet_server.domain.rules import check_text
from fleet_server.domain.tokens import TokenKind, hash_token, mint
from fleet_server.errors import AlreadyExists, InvalidArgument, NotFound, Reason, Violations
from fleet_server.store import customers as store
from fleet_server.store.customers import StoredCustomer

CODE_PATTERN = re.compile(r"[A-Z0-9_-]{2,32}")
# A "did you mean" compares spellings against at most this many codes (a miss is rare and an
# operator's; beyond it, only a different case is looked up).
_SPELLING_CANDIDATES = 10_000
# A grace window is a hand-over period, not a second permanent credential: a rotation whose old
# token outlives a month has not really rotated anything.
MAX_GRACE = timedelta(days=30)
# How many unknown codes a NOT_FOUND names before it only counts the rest.
MAX_NAMED_CODES = 10


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
    def of(cls, row: StoredCustomer, now: datetime) -> CustomerRecord:
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


def check_code(code: str, path: str, problems: Violations, session: Session | None = None) -> None:
    """Record a code that can never name a customer, so a typo reads as a typo, not NOT_FOUND;
    with a `session`, the customer it was probably meant to name (`acme` → ACME)."""
    if not CODE_PATTERN.fullmatch(code):
        problems.add(path, "must match [A-Z0-9_-]{2,32}" + _did_you_mean(session, code))


def unknown_customers(session: Session, codes: Sequence[str]) -> NotFound:
    """The one refusal of well-formed codes that name no customer, every lookup by code alike.

    Each code gets the existing code it most likely meant, when one is close: these calls are
    an operator's (admin token), who may see every code. At most `MAX_NAMED_CODES` are named
    (in the message and in `ErrorInfo.metadata`), the rest counted: an error travels in trailing
    metadata, which a default client caps at 16 KiB, and 1,000 unknown codes named in full made
    it fail the call as RESOURCE_EXHAUSTED instead of showing NOT_FOUND.
    """
    unknown = list(codes)
    wanted = unknown[:MAX_NAMED_CODES]
    hints = {code: nearest for code in wanted if (nearest := _nearest(session, code)) is not None}
    listed = ", ".join(f"{code} (did you mean {hints[code]}?)" if code in hints else code for code in wanted)
    if len(unknown) > len(wanted):
        listed += f" (and {len(unknown) - len(wanted)} more)"
    metadata = {"codes": ",".join(wanted), "unknown": str(len(unknown))}
    if len(wanted) == 1:
        metadata["code"] = wanted[0]
        if wanted[0] in hints:
            metadata["did_you_mean"] = hints[wanted[0]]
    plural = len(unknown) > 1
    return NotFound(
        f"no customer{'s' if plural else ''} with code{'s' if plural else ''} {listed}",
        reason=Reason.CUSTOMER_NOT_FOUND,
        metadata=metadata,
    )


def _nearest(session: Session, code: str) -> str | None:
    """The existing code `code` most likely meant: the same letters in upper case, else a close
    spelling (`ACEM` → ACME). Beyond `_SPELLING_CANDIDATES` customers only the case is tried."""
    candidates = store.codes(session, _SPELLING_CANDIDATES + 1)
    upper = code.strip().upper()
    if upper != code and upper in candidates:
        return upper
    if len(candidates) > _SPELLING_CANDIDATES:
        return upper if upper != code and store.code_taken(session, upper) else None
    close = difflib.get_close_matches(upper, [c for c in candidates if c != code], n=1, cutoff=0.75)
    return close[0] if close else None


def _did_you_mean(session: Session | None, code: str) -> str:
    nearest = _nearest(session, code) if session is not None and code.strip() else None
    return f" (did you mean {nearest}?)" if nearest else ""


def create_customer(session: Session, code: str, name: str, now: datetime) -> IssuedCustomer:
    """Register a customer and issue its first token (no previous token: nothing to hand over)."""
    problems = Violations()
    check_code(code, "code", problems)
    if not name.strip():
        problems.add("name", "must not be empty")
    else:
        check_text(name.strip(), "name", problems)
    problems.raise_if_any()
    if store.code_taken(session, code):
        raise _code_taken(code)
    token = mint(TokenKind.CUSTOMER)
    customer = store.insert_customer(session, code, name.strip(), hash_token(token), now)
    if customer is None:  # a concurrent create of the same code won the race
        raise _code_taken(code)
    return IssuedCustomer(customer=CustomerRecord.of(customer, now), token=token)


def _code_taken(code: str) -> AlreadyExists:
    return AlreadyExists(
        f"customer code {code} is taken", reason=Reason.CUSTOMER_CODE_TAKEN, metadata={"code": code}
    )


def _load(session: Session, code: str, *, lock: bool = False) -> StoredCustomer:
    problems = Violations()
    check_code(code, "code", problems, session)
    problems.raise_if_any()
    customer = store.load(session, code, lock=lock)
    if customer is None:
        raise unknown_customers(session, [code])
    return customer


def get_customer(session: Session, code: str, now: datetime) -> CustomerRecord:
    """The customer named `code`; NOT_FOUND when there is none."""
    return CustomerRecord.of(_load(session, code), now)


def customer_id_for(session: Session, code: str) -> int:
    """The id behind `code` for a read of one customer's data, refused as every lookup by code is."""
    return _load(session, code).id


def list_customers(
    session: Session, page_size: int, after_code: str | None, now: datetime
) -> Page[CustomerRecord]:
    """Customers ordered by code, starting after `after_code` (keyset: stable under inserts)."""
    size = CUSTOMER_PAGES.size(page_size)
    rows = store.page(session, after_code, size + 1)
    return cut([CustomerRecord.of(row, now) for row in rows], size)


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
    keep_previous = window > timedelta(0)
    rotated = store.set_tokens(
        session,
        customer.id,
        hash_token(token),
        now,
        previous_token_hash=customer.token_hash if keep_previous else None,
        previous_token_expires_at=now + window if keep_previous else None,
    )
    return IssuedCustomer(customer=CustomerRecord.of(rotated, now), token=token)


def set_active(session: Session, code: str, active: bool, now: datetime) -> CustomerRecord:
    """(De)activate: an inactive customer's current and previous tokens are both refused; data stays.

    Idempotent, so a retried call after a lost response is harmless. Reactivation honours
    whatever the token slots hold at that moment (an expired grace window stays expired).
    """
    customer = _load(session, code, lock=True)
    if customer.is_active != active:
        customer = store.set_active(session, customer.id, active)
    return CustomerRecord.of(customer, now)


def delete_customer(session: Session, code: str) -> dict[str, int]:
    """GDPR erasure: the customer and every row of its data, in this one transaction.

    The customer row is locked first (the erasure's side of the writers' guard): a concurrent
    push waits for the erasure and then fails instead of writing orphans. The counts, per
    table, are the erasure record.
    """
    customer = _load(session, code, lock=True)
    return store.erase(session, customer.id)
