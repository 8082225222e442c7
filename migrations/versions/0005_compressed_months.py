"""Cold storage: settled days of each device's metric, compressed per UTC month.

See `fleet_server/store/cold_codec.py` for the encoding and docs/DESIGN.md ("Cold storage") for
why a month. `payload` is stored EXTERNAL: it is already compressed, so PostgreSQL must not
spend time trying pglz on it, but it should still live out of line in TOAST.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measurements_compressed",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("through_day", sa.Date(), nullable=False),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.Column("first_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "compressed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["fleet.customers.id"],
            name=op.f("fk_measurements_compressed_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "device_id", "metric", "month", name=op.f("pk_measurements_compressed")
        ),
        schema="fleet",
    )
    op.execute("ALTER TABLE fleet.measurements_compressed ALTER COLUMN payload SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("measurements_compressed", schema="fleet")
