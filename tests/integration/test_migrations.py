"""Alembic owns the schema: up, down and up again on a fresh database, and the models agree with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, inspect, text

from fleet_server.db import migrate
from tests.support.database import create_scratch_database, drop_database

FLEET_TABLES = {
    "admin_tokens",
    "customers",
    "sites",
    "devices",
    "municipalities",
    "tariffs",
    "tariff_periods",
    "measurements",
    "measurement_rollups_hourly",
    "measurements_compressed",
    "sync_status",
}


@pytest.fixture
def scratch(database_url: str) -> Iterator[str]:
    url = create_scratch_database(database_url, prefix="fleet_h1_mig")
    yield url
    drop_database(url)


def _fleet_tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        if "fleet" not in inspector.get_schema_names():
            return set()
        return set(inspector.get_table_names(schema="fleet"))
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text(sql))
    finally:
        engine.dispose()


def _add_partition_with_a_row(url: str) -> None:
    """What ingest does at run time: a monthly partition outside alembic's schema, holding data."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE fleet_partitions.measurements_h1_test PARTITION OF fleet.measurements "
                    "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO fleet.customers (code, name, token_hash, token_issued_at) "
                    "VALUES ('A1', 'A', 'h', now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO fleet.measurements (customer_id, device_id, metric, time, value, "
                    "received_at) SELECT id, 1, 'energy_kwh', '2024-01-05', 1.5, '2024-01-05' "
                    "FROM fleet.customers"
                )
            )
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_a_fresh_database(scratch):
    migrate.upgrade(scratch)
    assert _fleet_tables(scratch) == FLEET_TABLES
    migrate.check(scratch)
    _add_partition_with_a_row(scratch)

    migrate.downgrade(scratch, "base")
    assert _fleet_tables(scratch) == set()
    assert _scalar(scratch, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fleet%'") == 0
    assert _scalar(scratch, "SELECT count(*) FROM public.alembic_version") == 0

    migrate.upgrade(scratch)
    assert _fleet_tables(scratch) == FLEET_TABLES
    assert _scalar(scratch, "SELECT count(*) FROM fleet.measurements") == 0
    migrate.check(scratch)


def test_check_reports_a_schema_that_drifted_from_the_models(scratch):
    migrate.upgrade(scratch)
    engine = create_engine(scratch)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX fleet.ix_customers_previous_token_hash"))
    engine.dispose()
    with pytest.raises(CommandError, match="New upgrade operations detected"):
        migrate.check(scratch)


def test_every_customer_table_leads_with_customer_id(scratch):
    migrate.upgrade(scratch)
    engine = create_engine(scratch)
    try:
        inspector = inspect(engine)
        for table in FLEET_TABLES - {"admin_tokens", "customers"}:
            columns = [c["name"] for c in inspector.get_columns(table, schema="fleet")]
            primary_key = inspector.get_pk_constraint(table, schema="fleet")["constrained_columns"]
            assert columns[0] == "customer_id", table
            assert primary_key[0] == "customer_id", table
            for fk in inspector.get_foreign_keys(table, schema="fleet"):
                assert "customer_id" in fk["constrained_columns"], (table, fk["name"])
    finally:
        engine.dispose()
