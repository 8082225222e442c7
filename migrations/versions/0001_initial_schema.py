"""Initial schema: customers, admin tokens, reference data, partitioned measurements, rollups.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS fleet")
    # Monthly measurement partitions are created at run time, outside alembic's schema.
    op.execute("CREATE SCHEMA IF NOT EXISTS fleet_partitions")
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_admin_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
        schema="fleet",
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_issued_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("previous_token_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_token_expires_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint("code ~ '^[A-Z0-9_-]{2,32}$'", name=op.f("ck_customers_code_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("code", name=op.f("uq_customers_code")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_customers_token_hash")),
        schema="fleet",
    )
    op.create_index(
        op.f("ix_customers_previous_token_hash"),
        "customers",
        ["previous_token_hash"],
        unique=False,
        schema="fleet",
    )
    op.create_table(
        "measurement_rollups_hourly",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("bucket", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_measurement_rollups_hourly_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "customer_id",
            "device_id",
            "metric",
            "bucket",
            name=op.f("pk_measurement_rollups_hourly"),
        ),
        schema="fleet",
    )
    op.create_table(
        "measurements",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("time", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("received_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "ingested_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_measurements_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "device_id", "metric", "time", name=op.f("pk_measurements")),
        schema="fleet",
        postgresql_partition_by="RANGE (time)",
    )
    op.create_table(
        "municipalities",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_municipalities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "id", name=op.f("pk_municipalities")),
        schema="fleet",
    )
    op.create_table(
        "sites",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("municipality_id", sa.BigInteger(), nullable=True),
        sa.Column("tariff_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_sites_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "id", name=op.f("pk_sites")),
        schema="fleet",
    )
    op.create_table(
        "sync_status",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("last_push_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("last_received", sa.BigInteger(), nullable=False),
        sa.Column("high_water_received_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "resource IN ('sites', 'devices', 'municipalities', 'tariffs', 'measurements')",
            name=op.f("ck_sync_status_resource_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_sync_status_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "resource", name=op.f("pk_sync_status")),
        schema="fleet",
    )
    op.create_table(
        "devices",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("serial_number", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id", "site_id"],
            ["fleet.sites.customer_id", "fleet.sites.id"],
            name=op.f("fk_devices_customer_id_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_devices_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "id", name=op.f("pk_devices")),
        schema="fleet",
    )
    op.create_index(
        op.f("ix_devices_customer_id_site_id"),
        "devices",
        ["customer_id", "site_id"],
        unique=False,
        schema="fleet",
    )
    op.create_table(
        "tariffs",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("municipality_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("effective_from", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("effective_to", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("default_rate", sa.Numeric(), nullable=False),
        sa.Column("fixed_charge", sa.Numeric(), nullable=False),
        sa.Column("vat_percent", sa.Numeric(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id", "municipality_id"],
            ["fleet.municipalities.customer_id", "fleet.municipalities.id"],
            name=op.f("fk_tariffs_customer_id_municipality_id_municipalities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_tariffs_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "id", name=op.f("pk_tariffs")),
        schema="fleet",
    )
    op.create_index(
        op.f("ix_tariffs_customer_id_municipality_id"),
        "tariffs",
        ["customer_id", "municipality_id"],
        unique=False,
        schema="fleet",
    )
    op.create_table(
        "tariff_periods",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("tariff_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("days_of_week", sa.SmallInteger(), nullable=False),
        sa.Column("start_minute", sa.SmallInteger(), nullable=False),
        sa.Column("end_minute", sa.SmallInteger(), nullable=False),
        sa.Column("rate", sa.Numeric(), nullable=False),
        sa.CheckConstraint(
            "days_of_week BETWEEN 1 AND 127", name=op.f("ck_tariff_periods_days_of_week_range")
        ),
        sa.CheckConstraint("end_minute BETWEEN 1 AND 1440", name=op.f("ck_tariff_periods_end_minute_range")),
        sa.CheckConstraint(
            "start_minute BETWEEN 0 AND 1439", name=op.f("ck_tariff_periods_start_minute_range")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id", "tariff_id"],
            ["fleet.tariffs.customer_id", "fleet.tariffs.id"],
            name=op.f("fk_tariff_periods_customer_id_tariff_id_tariffs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_tariff_periods_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "tariff_id", "id", name=op.f("pk_tariff_periods")),
        schema="fleet",
    )


def downgrade() -> None:
    op.drop_table("tariff_periods", schema="fleet")
    op.drop_index(op.f("ix_tariffs_customer_id_municipality_id"), table_name="tariffs", schema="fleet")
    op.drop_table("tariffs", schema="fleet")
    op.drop_index(op.f("ix_devices_customer_id_site_id"), table_name="devices", schema="fleet")
    op.drop_table("devices", schema="fleet")
    op.drop_table("sync_status", schema="fleet")
    op.drop_table("sites", schema="fleet")
    op.drop_table("municipalities", schema="fleet")
    op.drop_table("measurements", schema="fleet")
    op.drop_table("measurement_rollups_hourly", schema="fleet")
    op.drop_index(op.f("ix_customers_previous_token_hash"), table_name="customers", schema="fleet")
    op.drop_table("customers", schema="fleet")
    op.drop_table("admin_tokens", schema="fleet")
    op.execute("DROP SCHEMA IF EXISTS fleet_partitions CASCADE")
    op.execute("DROP SCHEMA IF EXISTS fleet")
