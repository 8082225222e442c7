"""Monthly partitions of `fleet.measurements`, created on demand for any month a batch touches.

A partition is created in its own short transaction before the batch's transaction starts, as
a plain table that is then ATTACHed: `ATTACH PARTITION` needs only a SHARE UPDATE EXCLUSIVE
lock on the parent, so a back-fill that opens an old month never blocks other customers'
inserts or queries (`CREATE TABLE … PARTITION OF` would take ACCESS EXCLUSIVE on the parent
and queue behind every in-flight batch). Creators serialise on a transaction-level advisory
lock and re-check the catalogue under it, so concurrent batches of several server processes
create each month exactly once. Months known to exist are remembered by a `Partitions` object,
one per process and database (the app builds it); a stale memory (a partition dropped behind the
server's back) is detected by the insert failing and healed by `forget`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from fleet_server.db.base import PARTITION_SCHEMA, SCHEMA
from fleet_server.db.session import Database
from fleet_server.store.locks import lock_partition_creation

_LOGGER = logging.getLogger(__name__)

PARENT = f"{SCHEMA}.measurements"
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000


def month_of(micros: int) -> int:
    """The month (`year * 12 + month - 1`) of a time given in microseconds since the Unix epoch."""
    moment = _UNIX_EPOCH + timedelta(microseconds=micros)
    return moment.year * 12 + moment.month - 1


def months_touched(times_us: list[int]) -> set[int]:
    """Every month the times fall in; one conversion per distinct day, two in the common case."""
    if not times_us:
        return set()
    first, last = month_of(min(times_us)), month_of(max(times_us))
    if first == last:
        return {first}
    return {month_of(day * _DAY_US) for day in {t // _DAY_US for t in times_us}}


def month_start(month: int) -> datetime:
    year, index = divmod(month, 12)
    return datetime(year, index + 1, 1, tzinfo=UTC)


def partition_name(month: int) -> str:
    """`measurements_p202101` for January 2021."""
    start = month_start(month)
    return f"measurements_p{start.year:04d}{start.month:02d}"


@dataclass(frozen=True)
class Opened:
    """What `ensure` did: how many partitions it created, and the months left without one."""

    created: int = 0
    refused: tuple[int, ...] = ()


class Partitions:
    """The partitions of one database, and the months this process knows to exist already.

    Every method blocks (run them on a database thread); concurrent callers are safe.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._known: set[int] = set()

    def ensure(self, months: Iterable[int], limit: int | None = None) -> Opened:
        """Make sure a partition exists for each month; cheap when the process already knows them.

        At most `limit` partitions are created (None: any number), oldest month first; the
        months past it are returned as `refused`, still without a partition.
        """
        with self._lock:
            missing = sorted(set(months) - self._known)
        if not missing:
            return Opened()
        created, existing, refused = self._db.transaction(_create_missing, missing, limit)
        with self._lock:
            self._known.update(created, existing)
        return Opened(len(created), tuple(refused))

    def forget(self) -> None:
        """Drop what this process believes exists (after an insert found a month without partition)."""
        with self._lock:
            self._known.clear()


def _create_missing(
    session: Session, months: list[int], limit: int | None
) -> tuple[list[int], list[int], list[int]]:
    """(created, already there, refused over `limit`) of `months`, under the creators' lock."""
    lock_partition_creation(session)
    created: list[int] = []
    existing: list[int] = []
    refused: list[int] = []
    for month in months:
        name = partition_name(month)
        qualified = f"{PARTITION_SCHEMA}.{name}"
        attached = session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits "
                "WHERE inhrelid = to_regclass(:name) AND inhparent = to_regclass(:parent))"
            ),
            {"name": qualified, "parent": PARENT},
        )
        if attached:
            existing.append(month)
            continue
        if limit is not None and len(created) >= limit:
            refused.append(month)
            continue
        created.append(month)
        lower = month_start(month).isoformat()
        upper = month_start(month + 1).isoformat()
        session.execute(text(f"CREATE TABLE IF NOT EXISTS {qualified} (LIKE {PARENT} INCLUDING DEFAULTS)"))
        session.execute(
            text(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {qualified} "
                f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
            )
        )
        _LOGGER.info("created measurement partition %s [%s, %s)", qualified, lower, upper)
    return created, existing, refused


def list_partitions(session: Session) -> list[str]:
    """Names of the attached monthly partitions, oldest first (for tests and operators)."""
    rows = session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent) ORDER BY c.relname"
        ),
        {"parent": PARENT},
    )
    return [str(r[0]) for r in rows]
