"""The declarative base: one schema, one naming convention, timezone-aware timestamps only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import TIMESTAMP, BigInteger, MetaData, Numeric
from sqlalchemy.orm import DeclarativeBase

SCHEMA = "fleet"
# Measurement partitions live in their own schema: they are created at run time, one per
# month, and alembic (which owns `fleet`) must neither see them nor try to drop them.
PARTITION_SCHEMA = "fleet_partitions"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Every model: schema `fleet`, named constraints, `datetime` as timestamptz, ids as bigint."""

    metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: TIMESTAMP(timezone=True),
        Decimal: Numeric(),
        int: BigInteger(),
    }
