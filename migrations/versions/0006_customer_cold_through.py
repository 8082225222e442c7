"""The customer's compression frontier: the latest day any of its units holds.

A measurement batch whose days all come after it cannot meet a compressed reading, so it is
written by one statement without the COLD locks (docs/DESIGN.md, "Writes into compressed
days"). Filled here from the units already written.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("cold_through", sa.Date(), nullable=True), schema="fleet")
    op.execute(
        "UPDATE fleet.customers AS c SET cold_through = u.through_day "
        "FROM (SELECT customer_id, max(through_day) AS through_day "
        "      FROM fleet.measurements_compressed GROUP BY customer_id) AS u "
        "WHERE u.customer_id = c.id"
    )


def downgrade() -> None:
    op.drop_column("customers", "cold_through", schema="fleet")
