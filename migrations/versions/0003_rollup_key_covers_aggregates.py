"""The rollup primary key carries the aggregates, so bucket queries are index-only scans.

Hour and day queries read count/sum/min/max of a customer's hours in key order; with the
aggregates in the key (`INCLUDE`) they never visit the table. The price is that an update of an
hour's aggregates can no longer be HOT; measured with `make bench` before and after (see
docs/DESIGN.md, Performance).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "fleet.measurement_rollups_hourly"
_KEY = "pk_measurement_rollups_hourly"
_COLUMNS = "customer_id, device_id, metric, bucket"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_KEY}, "
        f"ADD CONSTRAINT {_KEY} PRIMARY KEY ({_COLUMNS}) INCLUDE (count, sum, min, max)"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_KEY}, ADD CONSTRAINT {_KEY} PRIMARY KEY ({_COLUMNS})")
