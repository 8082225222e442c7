"""Remember when a customer's previous token was last used, for fleet health.

`GetFleetHealth` says whether a portal still uses its old token in the last hour of a grace
window. The column is written at most once per few minutes per customer (see
`domain/authentication.py`), and only while an old token is in use; every rotation clears it.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "customers",
        sa.Column("previous_token_last_used_at", sa.DateTime(timezone=True), nullable=True),
        schema="fleet",
    )


def downgrade() -> None:
    op.drop_column("customers", "previous_token_last_used_at", schema="fleet")
