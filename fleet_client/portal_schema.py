"""The documented portal schema (docs/client.md): the tables `SqlSource` reads and `demo-portal` writes.

Plain SQLAlchemy Core tables, so one definition serves SQLite, PostgreSQL or any other database a
portal runs on (`fleet_client.sqltypes` smooths over SQLite's missing timestamp and decimal types).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    true,
)

from fleet_client.sqltypes import ExactDecimal, UtcDateTime

metadata = MetaData()

municipalities = Table(
    "municipalities",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("region", Text, nullable=False, server_default=""),
)

sites = Table(
    "sites",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("address", Text, nullable=False, server_default=""),
    Column("timezone", Text, nullable=False, server_default=""),
    Column("municipality_id", BigInteger, ForeignKey("municipalities.id", ondelete="SET NULL")),
    # Soft reference, as in the contract: a site may name a tariff that arrives later.
    Column("tariff_id", BigInteger),
)

devices = Table(
    "devices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("site_id", BigInteger, ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("serial_number", Text, nullable=False, server_default=""),
    Column("kind", Text, nullable=False, server_default=""),
)

tariffs = Table(
    "tariffs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "municipality_id",
        BigInteger,
        ForeignKey("municipalities.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("effective_from", UtcDateTime, nullable=False),
    Column("effective_to", UtcDateTime),
    Column("default_rate", ExactDecimal, nullable=False),
    Column("fixed_charge", ExactDecimal, nullable=False),
    Column("vat_percent", ExactDecimal, nullable=False),
    Column("currency", String(3), nullable=False),
)

tariff_periods = Table(
    "tariff_periods",
    metadata,
    Column("tariff_id", BigInteger, ForeignKey("tariffs.id", ondelete="CASCADE"), nullable=False),
    Column("id", BigInteger, nullable=False, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("days_of_week", Integer, nullable=False),
    Column("start_time", String(5), nullable=False),
    Column("end_time", String(5), nullable=False),
    Column("rate", ExactDecimal, nullable=False),
    PrimaryKeyConstraint("tariff_id", "id"),
)

measurements = Table(
    "measurements",
    metadata,
    Column("device_id", BigInteger, nullable=False, autoincrement=False),
    Column("metric", String(63), nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("value", Double, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("device_id", "metric", "time"),
    # The pusher's keyset: without it every batch is a sort of the whole table.
    Index("ix_measurements_push_key", "received_at", "device_id", "metric", "time"),
)


def create_portal_schema(engine: Engine) -> None:
    """Create the portal tables that do not exist yet (demo portals and tests)."""
    metadata.create_all(engine)
