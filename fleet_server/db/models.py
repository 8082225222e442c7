"""The central schema: customers, admin tokens and every customer's mirrored portal data.

Every customer-owned table leads with `customer_id` and has a composite key `(customer_id, id)`;
every foreign key includes `customer_id`. Two customers' trees can never reference each other,
and the schema can be distributed by `customer_id` (Citus co-location) without change.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.db.base import SCHEMA, Base
from fleet_server.resources import Resource

_CASCADE = "CASCADE"


def _customer_fk() -> ForeignKey:
    return ForeignKey(f"{SCHEMA}.customers.id", ondelete=_CASCADE)


class Customer(Base):
    """A tenant. Tokens are stored only as SHA-256 hex digests."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("code ~ '^[A-Z0-9_-]{2,32}$'", name="code_format"),
        Index(None, "previous_token_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_issued_at: Mapped[datetime]
    previous_token_hash: Mapped[str | None] = mapped_column(String(64))
    previous_token_expires_at: Mapped[datetime | None]
    # When the previous token was last used, to within a few minutes (fleet health: has the
    # portal switched?); cleared by each rotation.
    previous_token_last_used_at: Mapped[datetime | None]
    # The latest day any of the customer's compressed units holds (None: none yet). Written by
    # the compression job in each unit's transaction; a measurement batch wholly after it cannot
    # meet a compressed reading (store/measurements.py).
    cold_through: Mapped[date | None]


class AdminToken(Base):
    """An operator credential for the admin and query services; minted with direct DB access."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class Site(Base):
    __tablename__ = "sites"

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text)
    municipality_id: Mapped[int | None]
    # A soft reference: a site may name a tariff pushed later (or never), so no foreign key.
    tariff_id: Mapped[int | None]


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        ForeignKeyConstraint(
            ["customer_id", "site_id"],
            [f"{SCHEMA}.sites.customer_id", f"{SCHEMA}.sites.id"],
            ondelete=_CASCADE,
        ),
        Index(None, "customer_id", "site_id"),
    )

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    site_id: Mapped[int]
    name: Mapped[str] = mapped_column(Text)
    serial_number: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)


class Municipality(Base):
    __tablename__ = "municipalities"

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    region: Mapped[str] = mapped_column(Text)


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["customer_id", "municipality_id"],
            [f"{SCHEMA}.municipalities.customer_id", f"{SCHEMA}.municipalities.id"],
            ondelete=_CASCADE,
        ),
        Index(None, "customer_id", "municipality_id"),
    )

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    municipality_id: Mapped[int]
    name: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool]
    effective_from: Mapped[datetime]
    effective_to: Mapped[datetime | None]
    default_rate: Mapped[Decimal]
    fixed_charge: Mapped[Decimal]
    vat_percent: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))


class TariffPeriod(Base):
    """A TOU window. Times are minutes of the local day as pushed (`23:59` stays 1439)."""

    __tablename__ = "tariff_periods"
    __table_args__ = (
        ForeignKeyConstraint(
            ["customer_id", "tariff_id"],
            [f"{SCHEMA}.tariffs.customer_id", f"{SCHEMA}.tariffs.id"],
            ondelete=_CASCADE,
        ),
        CheckConstraint("days_of_week BETWEEN 1 AND 127", name="days_of_week_range"),
        CheckConstraint("start_minute BETWEEN 0 AND 1439", name="start_minute_range"),
        CheckConstraint("end_minute BETWEEN 1 AND 1440", name="end_minute_range"),
    )

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    tariff_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    days_of_week: Mapped[int] = mapped_column(SmallInteger)
    start_minute: Mapped[int] = mapped_column(SmallInteger)
    end_minute: Mapped[int] = mapped_column(SmallInteger)
    rate: Mapped[Decimal]


class Measurement(Base):
    """Time series, range-partitioned by month on `time` (partitions in `fleet_partitions`).

    No foreign key to devices: readings of a device that arrives later are kept. No foreign key
    to customers either (migration 0002): each batch locks its customer row once instead of
    once per row, and erasure deletes these rows explicitly.
    """

    __tablename__ = "measurements"
    __table_args__ = {"postgresql_partition_by": "RANGE (time)"}

    customer_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    device_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(63), primary_key=True)
    time: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[float] = mapped_column(Double)
    received_at: Mapped[datetime]
    ingested_at: Mapped[datetime] = mapped_column(server_default=func.now())


class HourlyRollup(Base):
    """count/sum/min/max per device, metric and UTC hour, kept in step with `measurements`.

    No foreign key to customers, for the same reason as `Measurement`. The primary key carries
    the aggregates (`INCLUDE`), so an hour or day query is an index-only scan that never visits
    the table (see docs/DESIGN.md, Performance).
    """

    __tablename__ = "measurement_rollups_hourly"
    __table_args__ = (
        PrimaryKeyConstraint(
            "customer_id",
            "device_id",
            "metric",
            "bucket",
            postgresql_include=["count", "sum", "min", "max"],
        ),
    )

    customer_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    device_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(63), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int]
    sum: Mapped[float] = mapped_column(Double)
    min: Mapped[float] = mapped_column(Double)
    max: Mapped[float] = mapped_column(Double)


class CompressedMonth(Base):
    """The settled days of one device's metric in one UTC month, compressed (`store/cold_codec.py`).

    Holds every reading of the month's days up to `through_day` (inclusive) and their exact
    hourly rollups; those days have no rows left in `measurements` or the rollup table, except
    late readings pushed after the unit was written, which stay hot until the next compression
    run folds them in. The primary key mirrors the rollups' (one unit per series and month);
    `payload` is stored EXTERNAL (out of line, never pglz-compressed again: it is pcodec output).
    The foreign key to customers makes a compression run and an erasure of one customer wait
    for each other instead of racing.
    """

    __tablename__ = "measurements_compressed"

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    device_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(63), primary_key=True)
    month: Mapped[date] = mapped_column(primary_key=True)
    through_day: Mapped[date]
    readings: Mapped[int]
    first_time: Mapped[datetime]
    last_time: Mapped[datetime]
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    compressed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SyncStatus(Base):
    """The last successful push per customer and resource, for the detail view."""

    __tablename__ = "sync_status"
    __table_args__ = (
        CheckConstraint(
            f"resource IN ({', '.join(repr(str(r)) for r in Resource)})",
            name="resource_known",
        ),
    )

    customer_id: Mapped[int] = mapped_column(_customer_fk(), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_push_at: Mapped[datetime]
    last_received: Mapped[int]
    high_water_received_at: Mapped[datetime | None]
