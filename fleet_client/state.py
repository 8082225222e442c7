"""PushState: what the pusher knows between runs, persisted through SQLAlchemy, plus a lock row.

Per resource (`sites`, `devices`, `municipalities`, `tariffs`, `measurements`): the measurement
cursor, the last acknowledged snapshot hash, last attempt, last success, consecutive failures,
next attempt and last error; for measurements also the lanes (`fleet_client.lanes`), saved in
the same transaction as the cursor. Beside them, the quarantine: measurement rows the server
refused as invalid, each with the server's reason, skipped so the rows behind them flow (see
`measurement_push`). A local SQLite file by default, or any URL (the portal's own database
works: the tables are prefixed `fleet_push_`).

The schema only grows by whole tables, which `open()` creates when missing: a state written by
an older fleet-push opens as it is (no lanes row = one lane), and an older fleet-push ignores the
tables it does not know.

Exactly one pusher may write a state. `acquire()` takes a lock row; a second pusher refuses to
run with a message naming the holder. A lock is taken over only when its holder is provably
gone: its process no longer exists on this host, or it has not written a heartbeat for
`stale_after_s`. Every state write re-checks ownership in the same transaction (a fencing
check), so a pusher whose lock was taken over cannot overwrite the new holder's cursor.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from fleet_client.clock import Clock, SystemClock
from fleet_client.errors import FleetClientError
from fleet_client.lanes import LaneState
from fleet_client.resources import MEASUREMENTS, RESOURCES
from fleet_client.rows import Cursor, MeasurementRow
from fleet_client.sqltypes import UtcDateTime

_LOGGER = logging.getLogger(__name__)

DEFAULT_STATE_URL = "sqlite:///.fleet/push-state.sqlite3"
"""Next to the server's own `.fleet/` data folder convention (git-ignored in this repository)."""
_AUTH_BLOCK = "auth_block"
_PUSH_TARGET = "push_target"

_metadata = MetaData()

state_table = Table(
    "fleet_push_state",
    _metadata,
    Column("resource", String(32), primary_key=True),
    Column("cursor", Text),
    Column("snapshot_hash", String(64)),
    Column("last_attempt", UtcDateTime),
    Column("last_success", UtcDateTime),
    Column("failures", Integer, nullable=False, default=0),
    Column("next_attempt", UtcDateTime),
    Column("last_error", Text),
    Column("rows_sent", Integer, nullable=False, default=0),
)

lanes_table = Table(
    "fleet_push_lanes",
    _metadata,
    Column("resource", String(32), primary_key=True),
    Column("split", Text),
    Column("live_cursor", Text),
    Column("backfill_started", UtcDateTime),
    Column("backfill_finished", UtcDateTime),
    Column("backfill_rows", BigInteger, nullable=False, default=0),
    Column("backfill_total", BigInteger),
    Column("backfill_rate", Float),
    Column("newest_acked", UtcDateTime),
    Column("newest_at_portal", UtcDateTime),
    Column("live_waiting", BigInteger),
    Column("checked_at", UtcDateTime),
)

meta_table = Table(
    "fleet_push_meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Measurement rows the server will never take as they are. Keyed like the cursor, so a row is
# recognised when it is read again. `value` is text: SQLite stores a NaN as NULL.
quarantine_table = Table(
    "fleet_push_quarantine",
    _metadata,
    Column("received_at", UtcDateTime, primary_key=True),
    Column("device_id", BigInteger, primary_key=True, autoincrement=False),
    Column("metric", String(63), primary_key=True),
    Column("time", UtcDateTime, primary_key=True),
    Column("value", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", String(64)),
    Column("message", Text, nullable=False),
    Column("quarantined_at", UtcDateTime, nullable=False),
)

lock_table = Table(
    "fleet_push_lock",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(64), nullable=False),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)


class PushLocked(FleetClientError):
    """Another pusher holds this push state; the message says which and what to do."""


@dataclass
class ResourceState:
    """One resource's row. `cursor` is used by measurements only, `snapshot_hash` by the others."""

    resource: str
    cursor: Cursor | None = None
    snapshot_hash: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    failures: int = 0
    next_attempt: datetime | None = None
    last_error: str | None = None
    rows_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "resource": self.resource,
            "cursor": self.cursor.to_json() if self.cursor else None,
            "snapshot_hash": self.snapshot_hash,
            "last_attempt": iso(self.last_attempt),
            "last_success": iso(self.last_success),
            "failures": self.failures,
            "next_attempt": iso(self.next_attempt),
            "last_error": self.last_error,
            "rows_sent": self.rows_sent,
        }


@dataclass(frozen=True)
class QuarantinedRow:
    """A measurement row the server refused, and what it said (status, reason, message)."""

    row: MeasurementRow
    status: str
    reason: str | None
    message: str
    quarantined_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.row.device_id,
            "metric": self.row.metric,
            "time": self.row.time.isoformat(),
            "value": repr(self.row.value),
            "received_at": self.row.received_at.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "quarantined_at": self.quarantined_at.isoformat(),
        }


@dataclass(frozen=True)
class LockHolder:
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class AuthBlock:
    """The server refused this token (by fingerprint); pushing waits for a different one."""

    fingerprint: str
    message: str
    at: datetime


def _sqlite_parent(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_state_engine(url: str) -> Engine:
    """An engine for the state URL; SQLite files get their folder created and a busy timeout."""
    _sqlite_parent(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@dataclass
class PushState:
    """The persisted push state of one portal."""

    engine: Engine
    clock: Clock = field(default_factory=SystemClock)
    stale_after_s: float = 300.0
    _owner: str | None = None

    @classmethod
    def open(
        cls, url: str = DEFAULT_STATE_URL, clock: Clock | None = None, stale_after_s: float = 300.0
    ) -> PushState:
        """Open (and create, when missing) the state at `url`."""
        state = cls(make_state_engine(url), clock or SystemClock(), stale_after_s)
        _metadata.create_all(state.engine)
        return state

    def close(self) -> None:
        self.engine.dispose()

    # -- reading -------------------------------------------------------------------------------

    def load(self, resource: str) -> ResourceState:
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r}")
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(state_table).where(state_table.c.resource == resource)).mappings().first()
            )
        return _from_row(row) if row is not None else ResourceState(resource)

    def load_all(self) -> list[ResourceState]:
        """Every resource in push order (never-pushed resources as empty rows)."""
        with self.engine.connect() as conn:
            rows = {r["resource"]: _from_row(r) for r in conn.execute(select(state_table)).mappings()}
        return [rows.get(name, ResourceState(name)) for name in RESOURCES]

    def load_lanes(self) -> LaneState:
        """The measurement lanes (one lane when never saved)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(lanes_table).where(lanes_table.c.resource == MEASUREMENTS))
                .mappings()
                .first()
            )
        return _lanes_from_row(row) if row is not None else LaneState()

    def auth_block(self) -> AuthBlock | None:
        with self.engine.connect() as conn:
            raw = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == _AUTH_BLOCK))
        if raw is None:
            return None
        data = json.loads(raw)
        return AuthBlock(data["fingerprint"], data["message"], datetime.fromisoformat(data["at"]))

    def lock_holder(self) -> LockHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(lock_table).where(lock_table.c.id == 1)).mappings().first()
        return _holder(row) if row is not None else None

    def quarantined_keys(self, after: Cursor | None) -> set[Cursor]:
        """Keys of quarantined rows the pusher may still read (those not before `after`'s time)."""
        query = select(
            quarantine_table.c.received_at,
            quarantine_table.c.device_id,
            quarantine_table.c.metric,
            quarantine_table.c.time,
        )
        if after is not None:
            query = query.where(quarantine_table.c.received_at >= after.received_at)
        with self.engine.connect() as conn:
            return {Cursor(r, d, m, t) for r, d, m, t in conn.execute(query)}

    def quarantine_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(quarantine_table)) or 0)

    def quarantined(self, limit: int = 100) -> list[QuarantinedRow]:
        """The most recently quarantined rows, newest first."""
        query = (
            select(quarantine_table)
            .order_by(quarantine_table.c.quarantined_at.desc(), quarantine_table.c.received_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                QuarantinedRow(
                    MeasurementRow(
                        r["device_id"], r["metric"], r["time"], float(r["value"]), r["received_at"]
                    ),
                    r["status"],
                    r["reason"],
                    r["message"],
                    r["quarantined_at"],
                )
                for r in conn.execute(query).mappings()
            ]

    # -- the lock ------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock row, or raise `PushLocked` naming the pusher that holds it."""
        owner = uuid.uuid4().hex
        now = self.clock.now()
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        with self.engine.begin() as conn:
            row = conn.execute(select(lock_table).where(lock_table.c.id == 1)).mappings().first()
            if row is None:
                try:
                    conn.execute(
                        insert(lock_table).values(id=1, owner=owner, acquired_at=now, heartbeat_at=now, **me)
                    )
                except IntegrityError:
                    raise PushLocked(
                        "another fleet-push took the push-state lock at the same moment"
                    ) from None
            else:
                holder = _holder(row)
                if not self._abandoned(holder, now):
                    raise PushLocked(_locked_message(holder, now, self.stale_after_s))
                _LOGGER.warning(
                    "taking over the push-state lock of pid %d on %s (last heartbeat %s): it is gone",
                    holder.pid,
                    holder.host,
                    holder.heartbeat_at.isoformat(timespec="seconds"),
                )
                taken = conn.execute(
                    update(lock_table)
                    .where(lock_table.c.id == 1, lock_table.c.owner == holder.owner)
                    .values(owner=owner, acquired_at=now, heartbeat_at=now, **me)
                )
                if taken.rowcount != 1:
                    raise PushLocked("another fleet-push took over the push-state lock at the same moment")
        self._owner = owner

    def _abandoned(self, holder: LockHolder, now: datetime) -> bool:
        if (now - holder.heartbeat_at).total_seconds() > self.stale_after_s:
            return True
        same_host = holder.host == socket.gethostname()
        return same_host and holder.pid != os.getpid() and not _pid_alive(holder.pid)

    def release(self) -> None:
        if self._owner is None:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(lock_table).where(lock_table.c.owner == self._owner))
        self._owner = None

    def _fence(self, conn: Connection) -> None:
        """Heartbeat, and prove in the writing transaction that the lock is still ours."""
        if self._owner is None:
            raise PushLocked("the push state is written only by the pusher holding its lock (call acquire())")
        done = conn.execute(
            update(lock_table).where(lock_table.c.owner == self._owner).values(heartbeat_at=self.clock.now())
        )
        if done.rowcount != 1:
            self._owner = None
            raise PushLocked("another fleet-push took over this push state; this one stops")

    def heartbeat(self) -> None:
        with self.engine.begin() as conn:
            self._fence(conn)

    # -- writing -------------------------------------------------------------------------------

    def save(self, state: ResourceState, lanes: LaneState | None = None) -> None:
        """Write `state` (and the measurement `lanes`, when given) in one transaction."""
        values = {
            "cursor": json.dumps(state.cursor.to_json()) if state.cursor else None,
            "snapshot_hash": state.snapshot_hash,
            "last_attempt": state.last_attempt,
            "last_success": state.last_success,
            "failures": state.failures,
            "next_attempt": state.next_attempt,
            "last_error": state.last_error,
            "rows_sent": state.rows_sent,
        }
        with self.engine.begin() as conn:
            self._fence(conn)
            done = conn.execute(
                update(state_table).where(state_table.c.resource == state.resource).values(**values)
            )
            if done.rowcount == 0:
                conn.execute(insert(state_table).values(resource=state.resource, **values))
            if lanes is not None:
                _save_lanes(conn, state.resource, lanes)

    def quarantine(
        self,
        rows: Sequence[MeasurementRow],
        *,
        status: str,
        reason: str | None,
        message: str,
    ) -> None:
        """Set `rows` aside with what the server said; the pusher skips them from now on."""
        now = self.clock.now()
        keys = {Cursor.of(row): row for row in rows}
        with self.engine.begin() as conn:
            self._fence(conn)
            for key, row in keys.items():
                conn.execute(
                    delete(quarantine_table).where(
                        quarantine_table.c.received_at == key.received_at,
                        quarantine_table.c.device_id == key.device_id,
                        quarantine_table.c.metric == key.metric,
                        quarantine_table.c.time == key.time,
                    )
                )
                conn.execute(
                    insert(quarantine_table).values(
                        received_at=row.received_at,
                        device_id=row.device_id,
                        metric=row.metric,
                        time=row.time,
                        value=repr(float(row.value)),
                        status=status,
                        reason=reason,
                        message=message,
                        quarantined_at=now,
                    )
                )

    def release_quarantine(self) -> int:
        """Forget every quarantined row and read them again: the measurement cursor moves back to
        just before the first of them (one lane: a back-fill in progress is read again from there,
        what was sent already counting as duplicates at the server); the number released."""
        with self.engine.begin() as conn:
            self._fence(conn)
            released = int(conn.scalar(select(func.count()).select_from(quarantine_table)) or 0)
            earliest = conn.scalar(select(func.min(quarantine_table.c.received_at)))
            if not released or earliest is None:
                return 0
            conn.execute(delete(quarantine_table))
            raw = conn.execute(
                select(state_table.c.cursor).where(state_table.c.resource == MEASUREMENTS)
            ).scalar()
            current = Cursor.from_json(json.loads(raw)) if raw else None
            if current is not None and before(earliest).received_at < current.received_at:
                conn.execute(
                    update(state_table)
                    .where(state_table.c.resource == MEASUREMENTS)
                    .values(cursor=json.dumps(before(earliest).to_json()))
                )
            query = select(lanes_table).where(lanes_table.c.resource == MEASUREMENTS)
            lanes_row = conn.execute(query).mappings().first()
            if lanes_row is not None and lanes_row["split"] is not None:
                lanes = _lanes_from_row(lanes_row)
                lanes.split = lanes.live_cursor = None
                _save_lanes(conn, MEASUREMENTS, lanes)
        return released

    def block_auth(self, fingerprint: str, message: str) -> None:
        value = json.dumps(
            {"fingerprint": fingerprint, "message": message, "at": self.clock.now().isoformat()}
        )
        with self.engine.begin() as conn:
            self._fence(conn)
            conn.execute(delete(meta_table).where(meta_table.c.key == _AUTH_BLOCK))
            conn.execute(insert(meta_table).values(key=_AUTH_BLOCK, value=value))

    def retarget(self, target: str) -> bool:
        """Record `target` (`PushSettings.push_target`); when it differs from the last one, clear
        every resource's failure streak and back-off, and say so (True).

        Failures against another address or with another token (a placeholder pasted by mistake)
        predict nothing about this one, so the corrected settings are tried at once. The cursor and
        the acknowledged snapshot hashes stay: a new address of the same server and a rotated
        token of the same customer change nothing the server holds.
        """
        with self.engine.begin() as conn:
            self._fence(conn)
            before = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == _PUSH_TARGET))
            if before == target:
                return False
            conn.execute(delete(meta_table).where(meta_table.c.key == _PUSH_TARGET))
            conn.execute(insert(meta_table).values(key=_PUSH_TARGET, value=target))
            reset = conn.execute(
                update(state_table)
                .where((state_table.c.failures > 0) | state_table.c.next_attempt.is_not(None))
                .values(failures=0, next_attempt=None)
            )
        return before is not None and reset.rowcount > 0

    def clear_auth_block(self) -> None:
        with self.engine.begin() as conn:
            self._fence(conn)
            conn.execute(delete(meta_table).where(meta_table.c.key == _AUTH_BLOCK))


def _from_row(row: Any) -> ResourceState:
    cursor = Cursor.from_json(json.loads(row["cursor"])) if row["cursor"] else None
    return ResourceState(
        resource=row["resource"],
        cursor=cursor,
        snapshot_hash=row["snapshot_hash"],
        last_attempt=row["last_attempt"],
        last_success=row["last_success"],
        failures=row["failures"] or 0,
        next_attempt=row["next_attempt"],
        last_error=row["last_error"],
        rows_sent=row["rows_sent"] or 0,
    )


def _key(cursor: Cursor | None) -> str | None:
    return json.dumps(cursor.to_json()) if cursor else None


def _cursor(raw: str | None) -> Cursor | None:
    return Cursor.from_json(json.loads(raw)) if raw else None


def before(moment: datetime) -> Cursor:
    """A cursor just before every reading received at `moment`, whatever its other key parts.

    Only `received_at` is compared in Python: the rest of the key order is the portal database's
    (a collation may sort metric names differently), and one microsecond earlier with the
    largest device id precedes every reading of `moment` in any order.
    """
    return Cursor(moment - timedelta(microseconds=1), 2**63 - 1, "~", datetime.max.replace(tzinfo=UTC))


def _save_lanes(conn: Connection, resource: str, lanes: LaneState) -> None:
    values = {
        "split": _key(lanes.split),
        "live_cursor": _key(lanes.live_cursor),
        "backfill_started": lanes.backfill_started,
        "backfill_finished": lanes.backfill_finished,
        "backfill_rows": lanes.backfill_rows,
        "backfill_total": lanes.backfill_total,
        "backfill_rate": lanes.backfill_rate,
        "newest_acked": lanes.newest_acked,
        "newest_at_portal": lanes.newest_at_portal,
        "live_waiting": lanes.live_waiting,
        "checked_at": lanes.checked_at,
    }
    done = conn.execute(update(lanes_table).where(lanes_table.c.resource == resource).values(**values))
    if done.rowcount == 0:
        conn.execute(insert(lanes_table).values(resource=resource, **values))


def _lanes_from_row(row: Any) -> LaneState:
    return LaneState(
        split=_cursor(row["split"]),
        live_cursor=_cursor(row["live_cursor"]),
        backfill_started=row["backfill_started"],
        backfill_finished=row["backfill_finished"],
        backfill_rows=row["backfill_rows"] or 0,
        backfill_total=row["backfill_total"],
        backfill_rate=row["backfill_rate"],
        newest_acked=row["newest_acked"],
        newest_at_portal=row["newest_at_portal"],
        live_waiting=row["live_waiting"],
        checked_at=row["checked_at"],
    )


def _holder(row: Any) -> LockHolder:
    return LockHolder(row["owner"], row["host"], row["pid"], row["acquired_at"], row["heartbeat_at"])


def _locked_message(holder: LockHolder, now: datetime, stale_after_s: float) -> str:
    age = max(0, int((now - holder.heartbeat_at).total_seconds()))
    return (
        f"another fleet-push is already pushing from this state (pid {holder.pid} on {holder.host}, "
        f"last heartbeat {age}s ago). Stop it first; a lock whose holder is gone is taken over "
        f"automatically ({stale_after_s:.0f}s after its last heartbeat, or at once on the same host)."
    )
